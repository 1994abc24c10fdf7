"""`spacy egp fetch` (also `python -m spacy_egp.fetch`): the raw files of one dataset into assets/.

The arguments only; copying, downloading and the checks are spacy_egp.data.fetch.
"""

import argparse
import sys
from pathlib import Path
from typing import List, Optional

from ..data import fetch as library
from ..data.datasets import DATASETS
from ..data.fetch import FetchError, fetch
from ._util import with_examples

PROG = "python -m spacy_egp.fetch"
EXAMPLES = """\
  spacy egp fetch cluener --shared-data ../shared/data --assets assets --project-dir ."""


def parser(prog: str = PROG) -> argparse.ArgumentParser:
    """The command's arguments."""
    parser = argparse.ArgumentParser(prog=prog, description=library.__doc__.split("\n\n")[0],
                                     **with_examples(EXAMPLES))
    parser.add_argument("dataset", choices=sorted(DATASETS))
    parser.add_argument("--shared-data", default="../shared/data",
                        help="folder laid out like ../shared/data (used when it exists)")
    parser.add_argument("--assets", default="assets", help="the project's assets folder")
    parser.add_argument("--project-dir", default=".", help="the project folder (for weasel assets)")
    return parser


def main(argv: Optional[List[str]] = None, prog: str = PROG) -> int:
    """The command line; RETURNS (int): the exit status, 1 when the files are still missing."""
    args = parser(prog).parse_args(argv)
    try:
        fetch(args.dataset, Path(args.shared_data), Path(args.assets), Path(args.project_dir))
    except FetchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

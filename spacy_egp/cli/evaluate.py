"""`spacy egp evaluate` (also `python -m spacy_egp.evaluate`): the per-label table of a metrics file.

The arguments only; the table is spacy_egp.data.evaluate.
"""

import argparse
import sys
from typing import List, Optional

from ..data.evaluate import MetricsError, report
from ._util import with_examples

PROG = "python -m spacy_egp.evaluate"
EXAMPLES = """\
  python -m spacy evaluate training/cluener/model-best corpus/cluener/dev.spacy --output metrics/cluener.json
  spacy egp evaluate metrics/cluener.json corpus/cluener/dev.spacy --spans-key sc"""


def parser(prog: str = PROG) -> argparse.ArgumentParser:
    """The command's arguments."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Print a per-label P/R/F/gold table from the metrics JSON of `python -m spacy evaluate`.",
        **with_examples(EXAMPLES),
    )
    parser.add_argument("metrics", help="the JSON written by `python -m spacy evaluate MODEL DATA --output`")
    parser.add_argument("data", help="the .spacy file that was evaluated (gold spans in doc.spans[KEY])")
    parser.add_argument("--spans-key", default="sc")
    return parser


def main(argv: Optional[List[str]] = None, prog: str = PROG) -> int:
    """The command line; RETURNS (int): the exit status."""
    args = parser(prog).parse_args(argv)
    try:
        print(report(args.metrics, args.data, args.spans_key))
    except (MetricsError, OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

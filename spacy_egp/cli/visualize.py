"""`spacy egp visualize` (also `python -m spacy_egp.visualize`): a displaCy page of gold and predicted spans.

The arguments only; the page is spacy_egp.data.visualize.
"""

import argparse
import sys
from pathlib import Path
from typing import List, Optional

from ..data.visualize import render
from ._util import with_examples

PROG = "python -m spacy_egp.visualize"
EXAMPLES = """\
  spacy egp visualize training/cluener/model-best corpus/cluener/dev.spacy visualize/cluener.html --limit 8"""


def parser(prog: str = PROG) -> argparse.ArgumentParser:
    """The command's arguments."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Write an HTML page of gold and predicted (nested) spans, with missed and spurious "
                    "spans marked, displaCy span style.",
        **with_examples(EXAMPLES),
    )
    parser.add_argument("model", help="pipeline folder or installed package name")
    parser.add_argument("data", help=".spacy file with gold spans")
    parser.add_argument("output", help="HTML file to write")
    parser.add_argument("--spans-key", default="sc")
    parser.add_argument("--limit", type=int, default=8, help="number of docs (default 8)")
    return parser


def main(argv: Optional[List[str]] = None, prog: str = PROG) -> int:
    """The command line; RETURNS (int): the exit status."""
    args = parser(prog).parse_args(argv)
    if not Path(args.data).exists():
        print(f"error: data not found: {args.data}", file=sys.stderr)
        return 1
    path = render(args.model, args.data, args.output, spans_key=args.spans_key, limit=args.limit)
    print(f"wrote {path} (up to {args.limit} docs, gold and predicted, doc.spans[{args.spans_key!r}])")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`spacy egp teach` (also `python -m spacy_egp.teach`): a teacher's soft band, stored on the docs of a DocBin.

The arguments and the summary only; the scoring is spacy_egp.data.teach, whose
docstring is the command's description.
"""

import argparse
import sys
from typing import List, Optional

from spacy.cli._util import setup_gpu

from ..data import teach as library
from ..data.teach import DEFAULT_FLOOR, DEFAULT_TEACHER_KEY, TeachError, TeachSummary, teach
from ._util import with_examples

PROG = "python -m spacy_egp.teach"
EXAMPLES = """\
  spacy egp teach training/cluener/model-best corpus/cluener/train.spacy corpus/cluener/teacher/train.spacy
  spacy egp teach training/cluener/model-best unlabelled.jsonl corpus/cluener/teacher/unlabelled.spacy --floor 0.1
  spacy egp teach training/cluener/model-best extra.spacy corpus/cluener/teacher/extra.spacy --unlabelled"""


def parser(prog: str = PROG) -> argparse.ArgumentParser:
    """The command's arguments."""
    parser = argparse.ArgumentParser(prog=prog, description=library.__doc__,
                                     **with_examples(EXAMPLES, raw_description=True))
    add_teach_options(parser)
    parser.add_argument("teacher", help="the teacher pipeline: its folder or package name")
    parser.add_argument("input", help="a .spacy DocBin, a .jsonl file of records with a text field, or a .txt file")
    parser.add_argument("output", help="the .spacy DocBin to write")
    parser.add_argument("--unlabelled", action="store_true",
                        help="drop the gold group of a DocBin's docs: they count as unlabelled (texts always do)")
    parser.add_argument("--spans-key", default=None, help="the gold key (default: the teacher component's spans_key)")
    parser.add_argument("--text-field", default="text", help="the text field of .jsonl records")
    parser.add_argument("--max-docs", type=int, default=None,
                        help="teach only INPUT's first N docs, a slice of a large corpus (default: all)")
    return parser


def add_teach_options(parser: argparse.ArgumentParser) -> None:
    """The options that `spacy egp distill` shares."""
    parser.add_argument("--floor", type=float, default=DEFAULT_FLOOR,
                        help="store the cells with teacher probability >= this (default %(default)s)")
    parser.add_argument("--key", default=DEFAULT_TEACHER_KEY,
                        help="doc.spans key of the teacher's group: the student's distill_key (default %(default)s)")
    parser.add_argument("--component", default=None, help="the teacher's span component (default: its only one)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-cells-per-token", type=float, default=None,
                        help="keep at most ceil(this * tokens) cells per doc, the most probable (default: no cap)")
    parser.add_argument("--gpu-id", type=int, default=-1)


def describe(summary: TeachSummary, output: str) -> str:
    """One line on what a run wrote."""
    line = (f"{summary.docs:,} docs ({summary.labelled_docs:,} with a gold group, {summary.tokens:,} tokens): "
            f"{summary.cells:,} teacher cells ({summary.cells / max(1, summary.docs):.1f} per doc) -> {output}, "
            f"{summary.output_bytes:,} bytes ({summary.bytes_per_doc:,.0f} per doc), {summary.seconds:.1f} s")
    if summary.misaligned_cells:
        line += f"; {summary.misaligned_cells:,} cells misaligned with the docs' tokens, dropped"
    if summary.capped_docs:
        line += f"; {summary.capped_docs:,} docs capped at --max-cells-per-token"
    return line


def main(argv: Optional[List[str]] = None, prog: str = PROG) -> int:
    """The command line; RETURNS (int): 0, or 2 on an unusable argument or input."""
    args = parser(prog).parse_args(argv)
    setup_gpu(args.gpu_id, silent=True)
    try:
        summary = teach(args.teacher, args.input, args.output, floor=args.floor, key=args.key,
                        unlabelled=args.unlabelled, spans_key=args.spans_key, component=args.component,
                        batch_size=args.batch_size, max_cells_per_token=args.max_cells_per_token,
                        text_field=args.text_field, max_docs=args.max_docs)
    except TeachError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(describe(summary, args.output), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`spacy egp annotate` (also `python -m spacy_egp.annotate`): annotate a JSONL or Parquet corpus.

The arguments and the summary only; the engines and writers are spacy_egp.data.annotate,
whose docstring is the command's description.
"""

import argparse
import sys
from pathlib import Path
from typing import List, Optional

from ..data import annotate as library
from ..data.annotate import DEFAULT_MAX_CHARS, AnnotateError, Settings, Summary, annotate
from ._util import with_examples

PROG = "python -m spacy_egp.annotate"
EXAMPLES = """\
  spacy egp annotate training/model-best corpus.jsonl annotated.jsonl
  spacy egp annotate training/model-best corpus.parquet annotated.parquet --engine ray --n-process 8
  spacy egp annotate training/model-best corpus.jsonl annotated.jsonl --n-process 4 --resume"""


def parser(prog: str = PROG) -> argparse.ArgumentParser:
    """The command's arguments."""
    parser = argparse.ArgumentParser(prog=prog, description=library.__doc__,
                                     **with_examples(EXAMPLES, raw_description=True))
    parser.add_argument("model", help="a trained pipeline: its folder or package name")
    parser.add_argument("input", type=Path, help="JSONL or Parquet file of records")
    parser.add_argument("output", type=Path, help="JSONL or Parquet file to write (by extension)")
    parser.add_argument("--engine", choices=["local", "ray"], default="local")
    parser.add_argument("--n-process", type=int, default=1, help="local: processes; ray: actors")
    parser.add_argument("--batch-size", type=int, default=256, help="docs per nlp.pipe batch (and Ray batch)")
    parser.add_argument("--address", default=None, help="ray: the address of a running cluster, e.g. auto or HOST:6379")
    parser.add_argument("--text-field", default="text")
    parser.add_argument("--id-field", default="id")
    parser.add_argument("--spans-field", default="spans", help="with several spans keys: FIELD_KEY")
    parser.add_argument("--relations-field", default="relations")
    parser.add_argument("--max-chars", type=int, default=DEFAULT_MAX_CHARS, help="longer texts go to the errors")
    parser.add_argument("--errors", type=Path, default=None, help="default: OUTPUT.errors.jsonl")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing OUTPUT and errors file")
    parser.add_argument("--resume", action="store_true",
                        help="continue an interrupted run (same INPUT and options): records it wrote are kept, "
                             "not annotated again")
    parser.add_argument("--no-progress", action="store_true")
    return parser


def print_summary(summary: Summary, output: Path, errors: Path) -> None:
    """What the run did, on stderr (stdout may be the data)."""
    if summary.resumed or summary.torn_lines:
        print(f"resumed: {summary.resumed:,} records and errors of the interrupted run kept, "
              f"{summary.torn_lines} torn last line(s) cut off and redone", file=sys.stderr)
    if summary.workers_lost:
        print(f"{summary.workers_lost} worker process(es) died; their batches were annotated again", file=sys.stderr)
    print(f"{summary.records:,} records ({summary.words:,} words) in {summary.seconds:.1f} s "
          f"({summary.docs_per_second:,.0f} docs/s) -> {output}; {summary.errors:,} errors -> {errors}",
          file=sys.stderr)


def main(argv: Optional[List[str]] = None, prog: str = PROG) -> int:
    """RETURNS 0 when the run finished (bad records are in the errors file), 2 on an unusable argument."""
    args = parser(prog).parse_args(argv)
    if args.n_process < 1 or args.batch_size < 1 or args.max_chars < 1:
        print("error: --n-process, --batch-size and --max-chars must be at least 1.", file=sys.stderr)
        return 2
    settings = Settings(text_field=args.text_field, id_field=args.id_field, spans_field=args.spans_field,
                        relations_field=args.relations_field, max_chars=args.max_chars, batch_size=args.batch_size)
    try:
        summary = annotate(args.model, args.input, args.output, engine=args.engine, settings=settings,
                           n_process=args.n_process, address=args.address, errors=args.errors,
                           overwrite=args.overwrite, resume=args.resume, progress=not args.no_progress)
    except AnnotateError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if summary.finished_before:
        print(f"{args.output} is complete (a finished run): nothing to do.", file=sys.stderr)
        return 0
    print_summary(summary, args.output, args.errors or args.output.with_name(args.output.name + ".errors.jsonl"))
    return 0


if __name__ == "__main__":
    sys.exit(main())

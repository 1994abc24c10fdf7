"""`spacy egp convert` (also `python -m spacy_egp.convert`): dataset formats → DocBin.

The arguments only; the converters are spacy_egp.data.convert.
"""

import argparse
import sys
from typing import List, Optional

from ..data.convert import (
    FORMATS,
    SCHEMES,
    ConversionError,
    convert,
    convert_dataset,
    format_report,
    write_docbin,
)
from ..data.datasets import DATASETS, RELATION_DATASETS
from ._util import with_examples

PROG = "python -m spacy_egp.convert"
EXAMPLES = """\
  spacy egp convert cluener assets/cluener/train.json corpus/train.spacy --lang zh --select "i % 5 in 2,3,4"
  spacy egp convert bio ../shared/data/msra/peopledaily.zip:dev.txt corpus/dev.spacy --lang zh
  spacy egp convert conll04 train.json corpus/train.spacy --lang en
  spacy egp convert dataset cluener ../shared/data corpus/cluener --lang zh --limit 200"""
DATASET_EXAMPLES = """\
  spacy egp convert dataset cluener ../shared/data corpus/cluener --lang zh
  spacy egp convert dataset conll04 assets corpus/conll04 --splits train,dev"""


def parser(prog: str = PROG) -> argparse.ArgumentParser:
    """The arguments of the first form: FORMAT INPUT OUTPUT."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Convert an NER dataset to a .spacy DocBin with the gold spans (nested kept) in "
                    f"doc.spans[KEY]. Second form: '{prog} dataset NAME DATA_DIR "
                    "OUTPUT_DIR' writes train/dev/test.spacy of a dataset of SPLITS.md.",
        **with_examples(EXAMPLES),
    )
    parser.add_argument("format", choices=FORMATS, help="input format")
    parser.add_argument("input", help="input file, or ARCHIVE.zip:MEMBER for a member of a zip archive")
    parser.add_argument("output", help="the .spacy file to write")
    parser.add_argument("--lang", required=True, help="spaCy language of the blank pipeline (zh: one token per character)")
    parser.add_argument("--spans-key", default="sc", help="key of doc.spans for the gold spans (default: sc)")
    parser.add_argument("--select", default=None,
                        help="keep records by number (from 0, file order): 'i %% 5 in 2,3,4', 'i %% 10 != 0', "
                             "'i %% 10 == 0'; for bio the sentences are the records")
    parser.add_argument("--limit", type=int, default=0, help="keep only the first N selected records (0 = all)")
    parser.add_argument("--scheme", choices=SCHEMES, default="bio",
                        help="bio: tagging scheme of a bio file (bio or iob1; decoding is the same, "
                             "only the irregularities reported differ)")
    parser.add_argument("--examples", type=int, default=5, help="how many misaligned spans to show")
    return parser


def dataset_parser(prog: str = PROG) -> argparse.ArgumentParser:
    """The arguments of the second form: dataset NAME DATA_DIR OUTPUT_DIR."""
    parser = argparse.ArgumentParser(
        prog=f"{prog} dataset",
        description="Write OUTPUT_DIR/{train,dev,test}.spacy of a dataset of ../shared/data/SPLITS.md.",
        **with_examples(DATASET_EXAMPLES),
    )
    parser.add_argument("name", help=f"one of {', '.join({**DATASETS, **RELATION_DATASETS})} (genia-small = genia_small)")
    parser.add_argument("data_dir", help="folder with the raw files: DATA_DIR/NAME/FILE or DATA_DIR/FOLDER/FILE "
                                         "(the layout of ../shared/data)")
    parser.add_argument("output_dir", help="folder for train.spacy, dev.spacy, test.spacy")
    parser.add_argument("--spans-key", default="sc")
    parser.add_argument("--limit", type=int, default=0, help="first N records of each split (0 = all)")
    parser.add_argument("--lang", default=None, help="if given, must be the dataset's language (a check)")
    parser.add_argument("--splits", default="train,dev,test", help="comma-separated subset of train,dev,test")
    return parser


def _splits(text: str) -> List[str]:
    """--splits as a list; unknown names are a ConversionError."""
    splits = [s.strip() for s in text.split(",") if s.strip()]
    bad = [s for s in splits if s not in ("train", "dev", "test")]
    if bad:
        raise ConversionError(f"unknown split(s) {', '.join(bad)}; choose from train, dev, test")
    return splits


def _run(argv: List[str], prog: str) -> None:
    """Parse argv (either form) and convert."""
    if argv and argv[0] == "dataset":
        args = dataset_parser(prog).parse_args(argv[1:])
        convert_dataset(args.name, args.data_dir, args.output_dir, spans_key=args.spans_key,
                        limit=args.limit, lang=args.lang, splits=_splits(args.splits))
        return
    args = parser(prog).parse_args(argv)
    docs, stats = convert(args.format, args.input, lang=args.lang, spans_key=args.spans_key,
                          select=args.select, limit=args.limit, scheme=args.scheme, examples=args.examples)
    output = write_docbin(docs, args.output)
    print(format_report(stats, fmt=args.format, spans_key=args.spans_key, selection=args.select or "all",
                        limit=args.limit, output=str(output), scheme=args.scheme))


def main(argv: Optional[List[str]] = None, prog: str = PROG) -> int:
    """The command line. RETURNS (int): the exit status, 1 on a malformed record or an unwritable output."""
    try:
        _run(list(sys.argv[1:] if argv is None else argv), prog)
    except (ConversionError, OSError) as err:  # OSError: e.g. an output folder that cannot be written
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

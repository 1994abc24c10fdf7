"""`spacy egp tune` (also `python -m spacy_egp.tune`): per-label thresholds tuned on dev data.

The arguments only; the search is spacy_egp.pipeline.thresholds (`tune_thresholds`,
`tune_relation_thresholds`, `tune_model` for the first form); the second form's
before/after table is spacy_egp.data.evaluate.compare.
"""

import argparse
import sys
from typing import List, Optional

from ..data.evaluate import compare
from ..pipeline.thresholds import FACTORIES, TuneError, tune_model
from ._util import with_examples

PROG = "python -m spacy_egp.tune"
EXAMPLES = """\
  spacy egp tune training/cluener/model-best corpus/cluener/dev.spacy --output training/cluener/model-tuned
  spacy egp tune training/conll04/model-best corpus/conll04/dev.spacy -o training/conll04/model-tuned --grid=0.1:0.9:0.05
  spacy egp tune compare metrics/test.json metrics/test-tuned.json --tuning-data dev.spacy --test-data test.spacy"""
COMPARE_EXAMPLES = """\
  spacy egp tune compare metrics/cluener-test.json metrics/cluener-test-tuned.json \\
      --tuning-data corpus/cluener/dev.spacy --test-data corpus/cluener/test.spacy"""


def tune_parser(prog: str = PROG) -> argparse.ArgumentParser:
    """The arguments of the first form: MODEL DEV_DATA --output OUT."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Tune an efficient_globalpointer's or gplinker's per-label thresholds (and a gplinker's "
                    "per-relation-type thresholds) for the best F1 on dev data and save the pipeline with them. "
                    f"(`{prog} compare -h`: test F1 before/after.)",
        **with_examples(EXAMPLES),
    )
    parser.add_argument("model", help="pipeline folder or installed package, e.g. training/cluener/model-best")
    parser.add_argument("data", help="DEV .spacy file with gold spans in doc.spans[KEY] (never the test split)")
    parser.add_argument("--output", "-o", required=True, help="folder to save the tuned pipeline to")
    parser.add_argument("--spans-key", default=None, help="key of the gold spans (default: the component's)")
    parser.add_argument("--component", "-c", default=None,
                        help=f"component name (default: the first of {' or '.join(FACTORIES)})")
    parser.add_argument("--gpu-id", "-g", type=int, default=-1)
    parser.add_argument("--grid", default=None,
                        help="probability thresholds to choose from: --grid=START:STOP:STEP or --grid=0.2,0.35,0.5 "
                             "(default: exact search over all candidate scores)")
    parser.add_argument("--batch-size", type=int, default=64, help="docs per predict call")
    return parser


def compare_parser(prog: str = PROG) -> argparse.ArgumentParser:
    """The arguments of the second form: compare BEFORE.json AFTER.json."""
    parser = argparse.ArgumentParser(
        prog=f"{prog} compare",
        description="Print test F1 before and after threshold tuning; warn when the test data are the tuning data.",
        **with_examples(COMPARE_EXAMPLES),
    )
    parser.add_argument("before", help="metrics JSON of the untuned model on test (spacy evaluate --output)")
    parser.add_argument("after", help="metrics JSON of the tuned model on test")
    parser.add_argument("--tuning-data", required=True, help="the .spacy file the thresholds were tuned on")
    parser.add_argument("--test-data", required=True, help="the .spacy file both metrics were computed on")
    parser.add_argument("--spans-key", default="sc")
    return parser


def parse_grid(text: Optional[str]) -> Optional[List[float]]:
    """Probabilities: '0.1:0.9:0.05' (start:stop:step, stop included) or '0.2,0.5'; None for the exact search."""
    if not text:
        return None
    try:
        if ":" in text:
            start, stop, step = (float(part) for part in text.split(":"))
            if step <= 0 or stop < start:
                raise ValueError("step must be > 0 and stop >= start")
            grid = [round(start + i * step, 6) for i in range(int(round((stop - start) / step)) + 1)]
        else:
            grid = sorted(float(part) for part in text.split(","))
        if not all(0.0 <= value <= 1.0 for value in grid):
            raise ValueError("thresholds are probabilities, between 0 and 1")
        return grid
    except ValueError as error:
        raise TuneError(f"bad --grid {text!r} ({error}): write START:STOP:STEP or a comma-separated list, "
                        "of probabilities: --grid=0.1:0.9:0.05") from None


def _run(argv: List[str], prog: str) -> None:
    """Parse argv (either form) and run it."""
    if argv[:1] == ["compare"]:
        args = compare_parser(prog).parse_args(argv[1:])
        compare(args.before, args.after, args.tuning_data, args.test_data, args.spans_key)
        return
    args = tune_parser(prog).parse_args(argv)
    tune_model(args.model, args.data, args.output, spans_key=args.spans_key, component=args.component,
               gpu_id=args.gpu_id, grid=parse_grid(args.grid), batch_size=args.batch_size)


def main(argv: Optional[List[str]] = None, prog: str = PROG) -> int:
    """The command line; RETURNS (int): the exit status, 1 on a TuneError."""
    try:
        _run(sys.argv[1:] if argv is None else list(argv), prog)
    except TuneError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

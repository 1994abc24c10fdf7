"""`spacy egp distill` (also `python -m spacy_egp.distill`): teach, then train a student on the teacher's targets.

    spacy egp distill TEACHER STUDENT_CONFIG OUTPUT_DIR --paths.train T --paths.dev D [--paths.unlabelled U]

1. The teacher scores T (and U, as unlabelled docs) into OUTPUT_DIR/teacher/
   (train.spacy, unlabelled.spacy), as `spacy egp teach` does.
2. `spacy egp train STUDENT_CONFIG --output OUTPUT_DIR` (spacy train, resumable)
   trains the student on that folder (spaCy's corpus reader reads every .spacy file in it), with
   distill_key and distill_weight set on the config's efficient_globalpointer
   component. Any other --section.key value is passed to spacy train as an override.
"""

import argparse
import sys
from pathlib import Path
from typing import Dict, List, Optional

from spacy.cli._util import parse_config_overrides, setup_gpu, show_validation_error
from spacy.util import load_config

from ..data.teach import TeachError, load_teacher, teach
from ._util import with_examples
from .teach import add_teach_options, describe

PROG = "python -m spacy_egp.distill"
EXAMPLES = """\
  spacy egp distill training/cluener/model-best configs/cluener_cnn.cfg training/cluener-student \\
      --paths.train corpus/cluener/train.spacy --paths.dev corpus/cluener/dev.spacy --paths.unlabelled texts.jsonl
  spacy egp distill teacher/ configs/cluener_cnn.cfg student/ --paths.train train.spacy --paths.dev dev.spacy \\
      --weight 1.0 --training.max_steps 2000"""
STUDENT_FACTORY = "efficient_globalpointer"


def parser(prog: str = PROG) -> argparse.ArgumentParser:
    """The command's own arguments (the rest are spacy train overrides)."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n", 1)[1],
                                     **with_examples(EXAMPLES, raw_description=True))
    parser.add_argument("teacher", help="the teacher pipeline: its folder or package name")
    parser.add_argument("student_config", type=Path, help="the student's training config (any EGP config)")
    parser.add_argument("output", type=Path, help="folder for teacher/*.spacy and the student's model-best/-last")
    parser.add_argument("--paths.train", dest="train", type=Path, required=True, help="gold training DocBin")
    parser.add_argument("--paths.dev", dest="dev", type=Path, required=True, help="gold dev DocBin (model selection)")
    parser.add_argument("--paths.unlabelled", dest="unlabelled", type=Path, default=None,
                        help="unlabelled text: .jsonl, .txt or .spacy (its gold group is dropped)")
    parser.add_argument("--unlabelled-max-docs", type=int, default=None,
                        help="teach only the first N docs of --paths.unlabelled (default: all)")
    parser.add_argument("--weight", type=float, default=0.5,
                        help="distill_weight: target = (1 - w) * gold + w * teacher on labelled docs (default 0.5)")
    parser.add_argument("--student-component", default=None,
                        help="the student config's efficient_globalpointer component (default: its only one)")
    add_teach_options(parser)
    return parser


def student_component(config_path: Path, name: Optional[str]) -> str:
    """The name of the student config's efficient_globalpointer component."""
    components = load_config(config_path, interpolate=False).get("components", {})
    found = [n for n, block in components.items() if block.get("factory") == STUDENT_FACTORY]
    if name is not None:
        if name not in found:
            raise TeachError(f"{config_path} has no {STUDENT_FACTORY} component {name!r} (it has {found}).")
        return name
    if len(found) != 1:
        raise TeachError(f"{config_path} must have exactly one {STUDENT_FACTORY} component, or pass "
                         f"--student-component: it has {found or 'none'}.")
    return found[0]


def student_overrides(args: argparse.Namespace, component: str, corpus: Path, extra: List[str]) -> Dict[str, object]:
    """The spacy train overrides: the taught corpus, the dev data, the distillation settings, then the user's."""
    overrides: Dict[str, object] = {
        "paths.train": str(corpus),
        "paths.dev": str(args.dev),
        f"components.{component}.distill_key": args.key,
        f"components.{component}.distill_weight": args.weight,
    }
    overrides.update(parse_config_overrides(extra))
    return overrides


def main(argv: Optional[List[str]] = None, prog: str = PROG) -> int:
    """The command line; RETURNS (int): 0, or 2 on an unusable argument or input."""
    args, extra = parser(prog).parse_known_args(argv)
    setup_gpu(args.gpu_id, silent=True)
    corpus = args.output / "teacher"
    try:
        component = student_component(args.student_config, args.student_component)
        overrides = student_overrides(args, component, corpus, extra)
        inputs = [(args.train, corpus / "train.spacy", False)]
        if args.unlabelled is not None:
            inputs.append((args.unlabelled, corpus / "unlabelled.spacy", True))
        teacher = load_teacher(args.teacher)
        for source, target, unlabelled in inputs:
            summary = teach(teacher, source, target, floor=args.floor, key=args.key, unlabelled=unlabelled,
                            component=args.component, batch_size=args.batch_size,
                            max_cells_per_token=args.max_cells_per_token,
                            max_docs=args.unlabelled_max_docs if unlabelled else None)
            print(describe(summary, str(target)), file=sys.stderr)
    except TeachError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    del teacher  # the student trains without it
    from ..training.resumable import train  # imported here: spacy train's imports are slow

    with show_validation_error(args.student_config):
        config = load_config(args.student_config, overrides=overrides, interpolate=False)
    with show_validation_error(args.student_config, hint_fill=False):
        train(config, args.output, use_gpu=args.gpu_id)
    return 0


if __name__ == "__main__":
    sys.exit(main())

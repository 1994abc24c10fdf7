"""`spacy egp train` (also `python -m spacy_egp.train`): `spacy train` that can stop and resume.

    spacy egp train CONFIG --output DIR [--paths.train T --paths.dev D ...] [--checkpoint-every N]

It trains exactly as `spacy train` does, and also writes DIR/checkpoint.pkl
every N steps (default: the config's eval_frequency). Run the same command
again after the process was stopped, and training goes on from the last
checkpoint; a finished run deletes it. DIR/training-sessions.json lists the
steps and wall time of each call. The library is spacy_egp.training.resumable.
"""

import argparse
import sys
from pathlib import Path
from typing import List, Optional

from spacy.cli._util import import_code, parse_config_overrides, setup_gpu, show_validation_error
from spacy.util import load_config

from ..training.resumable import CHECKPOINT, CheckpointError, train
from ._util import with_examples

PROG = "python -m spacy_egp.train"
EXAMPLES = """\
  spacy egp train configs/cluener_trf_offline.cfg --output training/cluener-trf \\
      --paths.train corpus/cluener/train.spacy --paths.dev corpus/cluener/dev.spacy
  spacy egp train configs/cluener_cnn.cfg --output training/cluener --stop-after-steps 500   # pause, resume later
  spacy egp train configs/cluener_cnn.cfg --output training/cluener --restart   # ignore the checkpoint"""


def parser(prog: str = PROG) -> argparse.ArgumentParser:
    """The command's own arguments (the rest are config overrides, as for spacy train)."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n", 1)[1],
                                     **with_examples(EXAMPLES, raw_description=True))
    parser.add_argument("config_path", type=Path, help="the training config")
    parser.add_argument("--output", "-o", type=Path, required=True,
                        help="folder for model-best, model-last and the checkpoint")
    parser.add_argument("--gpu-id", "-g", type=int, default=-1, help="GPU id, -1 for CPU (default)")
    parser.add_argument("--code", "-c", type=Path, default=None, help="Python file with registered functions")
    parser.add_argument("--checkpoint-every", type=int, default=None,
                        help="steps between checkpoints (default: the config's eval_frequency)")
    parser.add_argument("--stop-after-steps", type=int, default=None,
                        help="pause after this many steps of this call (the checkpoint is written); run again to go on")
    parser.add_argument("--restart", action="store_true", help="ignore an existing checkpoint: train from step 0")
    return parser


def main(argv: Optional[List[str]] = None, prog: str = PROG) -> int:
    """The command line; RETURNS (int): 0 when finished or paused, 2 on an unusable argument or checkpoint."""
    args, extra = parser(prog).parse_known_args(argv)
    for name in ("checkpoint_every", "stop_after_steps"):
        value = getattr(args, name)
        if value is not None and value < 1:
            print(f"error: --{name.replace('_', '-')} must be a positive number of steps, not {value}",
                  file=sys.stderr)
            return 2
    if not args.config_path.exists():
        print(f"error: config file not found: {args.config_path}", file=sys.stderr)
        return 2
    import_code(args.code)
    setup_gpu(args.gpu_id, silent=True)
    with show_validation_error(args.config_path):
        config = load_config(args.config_path, overrides=parse_config_overrides(extra), interpolate=False)
    try:
        with show_validation_error(args.config_path, hint_fill=False):
            outcome = train(config, args.output, use_gpu=args.gpu_id, checkpoint_every=args.checkpoint_every,
                            stop_after_steps=args.stop_after_steps, restart=args.restart)
    except CheckpointError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if outcome.finished:
        print(f"Finished at step {outcome.last_step}: {outcome.model_last}", file=sys.stderr)
    else:
        print(f"Paused after step {outcome.last_step}: {args.output / CHECKPOINT}; run the same command again "
              f"to go on", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

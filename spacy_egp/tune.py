"""`python -m spacy_egp.tune`, kept working: the command is spacy_egp.cli.tune (also `spacy egp tune`).

`spacy_egp.tune.tune_thresholds` (README, 0.2.0) stays importable; the search lives in
spacy_egp.pipeline.thresholds.
"""

import sys

from .cli.tune import main
from .pipeline.thresholds import tune_relation_thresholds, tune_thresholds

__all__ = ["main", "tune_relation_thresholds", "tune_thresholds"]

if __name__ == "__main__":
    sys.exit(main())

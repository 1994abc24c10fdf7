"""`python -m spacy_egp.tune`, kept working: the command itself is spacy_egp.pipeline.thresholds."""

import sys

from .pipeline.thresholds import main

if __name__ == "__main__":
    sys.exit(main())

"""`python -m spacy_egp.tune`, kept working: the command is spacy_egp.cli.tune (also `spacy egp tune`)."""

import sys

from .cli.tune import main

if __name__ == "__main__":
    sys.exit(main())

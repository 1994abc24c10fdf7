"""`python -m spacy_egp.train`: the command is spacy_egp.cli.train (also `spacy egp train`)."""

import sys

from .cli.train import main

if __name__ == "__main__":
    sys.exit(main())

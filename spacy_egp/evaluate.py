"""`python -m spacy_egp.evaluate`, kept working: the command is spacy_egp.cli.evaluate (also `spacy egp evaluate`)."""

import sys

from .cli.evaluate import main

if __name__ == "__main__":
    sys.exit(main())

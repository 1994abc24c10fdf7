"""`python -m spacy_egp.annotate`, kept working: the command is spacy_egp.cli.annotate (also `spacy egp annotate`)."""

import sys

from .cli.annotate import main

if __name__ == "__main__":
    sys.exit(main())

"""`python -m spacy_egp.annotate`, kept working: the command itself is spacy_egp.data.annotate."""

import sys

from .data.annotate import main

if __name__ == "__main__":
    sys.exit(main())

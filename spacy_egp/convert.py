"""`python -m spacy_egp.convert`, kept working: the command itself is spacy_egp.data.convert."""

import sys

from .data.convert import main

if __name__ == "__main__":
    sys.exit(main())

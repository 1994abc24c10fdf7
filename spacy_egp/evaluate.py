"""`python -m spacy_egp.evaluate`, kept working: the command itself is spacy_egp.data.evaluate."""

import sys

from .data.evaluate import main

if __name__ == "__main__":
    sys.exit(main())

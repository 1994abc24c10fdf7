"""`python -m spacy_egp.fetch`, kept working: the command itself is spacy_egp.data.fetch."""

import sys

from .data.fetch import main

if __name__ == "__main__":
    sys.exit(main())

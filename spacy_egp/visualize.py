"""`python -m spacy_egp.visualize`, kept working: the command itself is spacy_egp.data.visualize."""

import sys

from .data.visualize import main

if __name__ == "__main__":
    sys.exit(main())

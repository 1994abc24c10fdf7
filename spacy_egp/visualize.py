"""`python -m spacy_egp.visualize`, kept working: the command is spacy_egp.cli.visualize (also `spacy egp visualize`)."""

import sys

from .cli.visualize import main

if __name__ == "__main__":
    sys.exit(main())

"""`python -m spacy_egp.fetch`, kept working: the command is spacy_egp.cli.fetch (also `spacy egp fetch`)."""

import sys

from .cli.fetch import main

if __name__ == "__main__":
    sys.exit(main())

"""`python -m spacy_egp.teach`: the command is spacy_egp.cli.teach (also `spacy egp teach`)."""

import sys

from .cli.teach import main

if __name__ == "__main__":
    sys.exit(main())

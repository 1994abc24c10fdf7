"""`python -m spacy_egp.convert`, kept working: the command is spacy_egp.cli.convert (also `spacy egp convert`)."""

import sys

from .cli.convert import main

if __name__ == "__main__":
    sys.exit(main())

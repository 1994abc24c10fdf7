"""`python -m spacy_egp.distill`: the command is spacy_egp.cli.distill (also `spacy egp distill`)."""

import sys

from .cli.distill import main

if __name__ == "__main__":
    sys.exit(main())

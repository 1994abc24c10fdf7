"""Benchmarks that print figures and write them under results/ (never timed tests).

    python -m spacy_egp.benchmark compare DATASET ...   # EGP, GP, spancat, ner side by side
    python -m spacy_egp.benchmark long-docs ...         # time and memory against doc length
    python -m spacy_egp.benchmark params                # EGP vs GP head parameters
    python -m spacy_egp.benchmark report                # results/README.md, plots, README table

See `python -m spacy_egp.benchmark COMMAND --help`.
"""

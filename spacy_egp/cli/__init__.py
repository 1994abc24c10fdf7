"""The command line: thin argparse wrappers over the library, one module per command.

Each command runs as `spacy egp COMMAND …` (the typer group of spacy_egp.cli.app,
registered through spaCy's `spacy_cli` entry point) and as
`python -m spacy_egp.COMMAND …`; both call the command module's `main(argv)`,
the one parser of its arguments.
"""

# command -> one line for `spacy egp --help` (the module spacy_egp.cli.COMMAND has the rest)
COMMANDS = {
    "fetch": "Put the raw files of a dataset into assets/ (copied from ../shared/data, else downloaded).",
    "convert": "Convert a dataset (CLUENER, CMeEE, spans-jsonl, BIO, CoNLL04) to a .spacy DocBin, nested spans kept.",
    "evaluate": "Per-label P/R/F table, with gold counts, from the metrics JSON of `spacy evaluate`.",
    "tune": "Tune per-label (and per-relation-type) thresholds on dev data and save the pipeline with them.",
    "visualize": "HTML page of gold and predicted (nested) spans, displaCy span style.",
    "annotate": "Annotate a JSONL or Parquet corpus, locally or on Ray Data.",
    "teach": "Score a corpus with a teacher: its spans above a floor probability, stored on the docs of a DocBin.",
    "distill": "Teach, then train a student config on a mix of gold and teacher targets.",
    "train": "spacy train that writes checkpoints and resumes from them when run again.",
}

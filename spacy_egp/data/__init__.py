"""Library code for the data around a pipeline; the commands in spacy_egp.cli call it.

datasets (the one table of SPLITS.md datasets), convert (dataset formats →
DocBin), fetch (raw files), evaluate (per-label metrics table), visualize
(displaCy page of gold and predicted spans), annotate (batch annotation of
JSONL/Parquet, locally or on Ray Data), teach (a teacher's scored cells stored
on the docs of a DocBin, for distillation).
"""

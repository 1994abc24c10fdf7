"""Training that can stop and resume: spaCy's training loop with checkpoints (spacy_egp.training.resumable)."""

"""The pipeline components and what they share with threshold tuning.

efficient_globalpointer (the component, `GlobalPointerPipe`, the spans scorer),
gplinker (the relation component and its scorer), gold (gold spans and
relations → band cells), distill (soft targets: a teacher's spans and label smoothing), decoding (band cells → spans and relations, with the
cap), relations (the `doc._.relations` storage format), nesting (how spans
overlap), thresholds (per-label thresholds tuned on dev data).
"""

# The names `from spacy_egp.pipeline import …` gave when pipeline was one module (0.2.0), and the other component's.
from .efficient_globalpointer import (
    EfficientGlobalPointer,
    GlobalPointerPipe,
    make_efficient_globalpointer,
    make_spans_scorer,
    spans_score,
)
from .gplinker import GPLinker, make_gplinker, make_relations_scorer, relations_score
from .relations import Relation

__all__ = [
    "EfficientGlobalPointer",
    "GPLinker",
    "GlobalPointerPipe",
    "Relation",
    "make_efficient_globalpointer",
    "make_gplinker",
    "make_relations_scorer",
    "make_spans_scorer",
    "relations_score",
    "spans_score",
]

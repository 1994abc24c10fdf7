"""Efficient GlobalPointer for spaCy: nested named-entity recognition in doc.spans.

Everything is registered through entry points (setup.cfg), so spaCy finds the
component, architectures and scorer without `import spacy_egp`.
"""

from .ml.models import build_efficient_globalpointer, build_globalpointer
from .pipeline.efficient_globalpointer import EfficientGlobalPointer, make_efficient_globalpointer

__version__ = "0.2.0"

__all__ = [
    "EfficientGlobalPointer",
    "build_efficient_globalpointer",
    "build_globalpointer",
    "make_efficient_globalpointer",
]

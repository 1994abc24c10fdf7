"""Efficient GlobalPointer for spaCy: nested named-entity recognition in doc.spans.

Everything is registered through entry points (setup.cfg), so spaCy finds the
component, architectures and scorer without `import spacy_egp`. Importing the
package (which importing any of its modules does first) registers the Doc
extensions, doc._.relations.
"""

from .ml.models import build_efficient_globalpointer, build_globalpointer
from .pipeline.efficient_globalpointer import EfficientGlobalPointer, make_efficient_globalpointer
from .pipeline.relations import register_extensions

register_extensions()

__version__ = "0.3.0"

__all__ = [
    "EfficientGlobalPointer",
    "build_efficient_globalpointer",
    "build_globalpointer",
    "make_efficient_globalpointer",
]

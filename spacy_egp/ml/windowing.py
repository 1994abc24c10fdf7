"""Inference on docs longer than the encoder's window: the tok2vec run window by window.

Thinc keeps every layer's intermediate arrays until a forward pass returns, so
a 100k-token doc through spaCy's CNN tok2vec needs about 1.4 GB at once; with a
window encoder whose receptive field is known, overlapping windows give the
same vectors in a fraction of the memory.
"""

from typing import List, Optional

import numpy
from spacy.tokens import Doc
from thinc.api import Model
from thinc.types import Floats2d

# Docs longer than this are encoded in windows at inference (see predict_token_vectors).
LONG_DOC_WINDOW = 4096


def encoder_context(tok2vec: Model) -> Optional[int]:
    """How many tokens each side a tok2vec's output depends on, when it says so.

    spaCy's Tok2Vec architectures chain a per-token `embed` with an `encode`
    layer; the window encoders (MaxoutWindowEncoder, MishWindowEncoder) are a
    `with_array` whose `pad` is their receptive field. Anything else (a
    listener, an LSTM, a transformer) gives None: its context is unknown.
    """
    if not (tok2vec.has_ref("embed") and tok2vec.has_ref("encode")):
        return None
    encode = tok2vec.get_ref("encode")
    pad = encode.attrs.get("pad") if encode.name.startswith("with_array") else None
    return pad if isinstance(pad, int) and pad > 0 else None


def predict_token_vectors(
    tok2vec: Model[List[Doc], List[Floats2d]], docs: List[Doc], window: int = LONG_DOC_WINDOW
) -> List[Floats2d]:
    """`tok2vec.predict(docs)`, with long docs encoded window by window.

    Thinc keeps every layer's intermediate arrays until a forward pass returns,
    about 14 kB per token for spaCy's CNN tok2vec (1.4 GB for a 100k-token
    doc). When the tok2vec's context is known (`encoder_context`), a doc longer
    than `window` is encoded in windows that overlap by that context, so each
    token sees exactly the neighbours it would see in the whole doc and the
    vectors are the same (up to float rounding) at a fraction of the memory.
    """
    context = encoder_context(tok2vec)
    if context is None or all(len(doc) <= window for doc in docs):
        return tok2vec.predict(docs)
    short = [doc for doc in docs if len(doc) <= window]
    short_vectors = iter(tok2vec.predict(short) if short else [])
    return [
        _windowed_vectors(tok2vec, doc, window, context) if len(doc) > window else next(short_vectors)
        for doc in docs
    ]


def _windowed_vectors(tok2vec: Model, doc: Doc, window: int, context: int) -> Floats2d:
    attrs = doc._get_array_attrs()
    array = doc.to_array(attrs)  # once: Span.as_doc would export the whole doc for every window
    pieces = []
    for start in range(0, len(doc), window):
        end = min(start + window, len(doc))
        left, right = max(0, start - context), min(len(doc), end + context)
        vectors = tok2vec.predict([_window_doc(doc, left, right, attrs, array)])[0]
        pieces.append(vectors[start - left : end - left])
    return tok2vec.ops.xp.concatenate(pieces)


def _window_doc(doc: Doc, left: int, right: int, attrs: List[int], array: numpy.ndarray) -> Doc:
    """doc[left:right] as a Doc, from the doc's exported attributes.

    Span.as_doc reads only rows left..right of the array it is given and
    edits them in place; it gets a fresh copy of those rows in an array of the
    doc's height (numpy.empty leaves the other rows untouched, so this costs
    the window only).
    """
    rows = numpy.empty((right, array.shape[1]), dtype=array.dtype)
    rows[left:right] = array[left:right]
    return doc[left:right].as_doc(array_head=attrs, array=rows)

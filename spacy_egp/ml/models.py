"""Registered model builders: tok2vec → span head → band of span logits.

The output is a Ragged whose data is the (T, W, K) band of `spacy_egp.ml.heads`
for the batch's docs concatenated, and whose lengths are the docs' token
counts. The label count K (dim "nO" of the ref "head") is left unset here and
inferred when the component initializes, as spaCy's spancat does.
"""

from typing import List, Optional

import numpy
from spacy.tokens import Doc
from spacy.util import registry
from thinc.api import Model, chain, list2ragged
from thinc.types import Floats2d, Ragged

from .heads import build_egp_head, build_gp_head

DEFAULT_MAX_SPAN_LENGTH = 128
# An untrained head gives every cell about this probability (see span_prior).
DEFAULT_SPAN_PRIOR = 0.01
# Docs longer than this are encoded in windows at inference (see predict_token_vectors).
LONG_DOC_WINDOW = 4096


def _validate_head_config(
    head_size: int, use_rope: bool, max_span_length: Optional[int], span_prior: Optional[float]
) -> None:
    if not isinstance(head_size, int) or head_size <= 0:
        raise ValueError(f"head_size must be a positive integer, got {head_size!r}.")
    if max_span_length is not None and (
        isinstance(max_span_length, bool) or not isinstance(max_span_length, int) or max_span_length <= 0
    ):
        raise ValueError(
            f"max_span_length must be a positive number of tokens (or null for no limit), got {max_span_length!r}."
        )
    if span_prior is not None and (isinstance(span_prior, bool) or not 0.0 < span_prior < 1.0):
        raise ValueError(
            f"span_prior must be a probability strictly between 0 and 1 (e.g. 0.01), or null for "
            f"zero-initialised biases, got {span_prior!r}."
        )
    if use_rope and head_size % 2:
        raise ValueError(
            f"head_size must be even when use_rope = true (RoPE rotates pairs of "
            f"dimensions), got {head_size}. Use an even head_size such as "
            f"{head_size + 1}, or set use_rope = false."
        )


def _with_tok2vec(
    tok2vec: Model[List[Doc], List[Floats2d]], head: Model, context: Optional[Model] = None
) -> Model[List[Doc], Ragged]:
    layers = [tok2vec] + ([context] if context is not None else []) + [list2ragged(), head]
    model = chain(*layers)
    model.set_ref("tok2vec", tok2vec)
    model.set_ref("head", head)
    if context is not None:
        model.set_ref("context", context)
    return model


@registry.architectures("spacy_egp.EfficientGlobalPointer.v2")
def build_efficient_globalpointer_v2(
    tok2vec: Model[List[Doc], List[Floats2d]],
    head_size: int = 64,
    use_rope: bool = True,
    max_span_length: Optional[int] = DEFAULT_MAX_SPAN_LENGTH,
    span_prior: Optional[float] = DEFAULT_SPAN_PRIOR,
    context: Optional[Model[List[Floats2d], List[Floats2d]]] = None,
    nO: Optional[int] = None,
) -> Model[List[Doc], Ragged]:
    """Efficient GlobalPointer: one shared q/k projection, per-label start/end terms.

    tok2vec (Model[List[Doc], List[Floats2d]]): The token-to-vector layer.
    head_size (int): d, the width of q and k (the projection is 2d wide).
    use_rope (bool): Rotary position encoding (base 10000, positions from 0
        in each doc) on q and k before their product.
    max_span_length (Optional[int]): The longest span scored, in tokens; None
        scores every span of a doc (memory quadratic in its length). The one
        source of this limit: the component's loss and decoding read it here.
    span_prior (Optional[float]): The probability that the untrained head
        gives a cell: the label term's biases start at its logit, so an
        untrained pipe predicts almost nothing (spans are rare) instead of
        half of all cells. None: biases start at 0, as in v1.
    context (Optional[Model[List[Floats2d], List[Floats2d]]]): A context
        layer of the head's own between the tok2vec and the head, e.g.
        spacy.TorchBiLSTMEncoder.v1: EGP judges a span by its two end tokens
        only, so what they know of the tokens between them is all it knows of
        the span. Width in = width out. None: the tok2vec's vectors as they are.
    nO (Optional[int]): The number of labels; inferred at initialize if None.
    RETURNS (Model[List[Doc], Ragged]): The band of span logits, (T, W, nO).
    """
    _validate_head_config(head_size, use_rope, max_span_length, span_prior)
    head = build_egp_head(head_size, use_rope, max_span_length, nO, span_prior=span_prior)
    return _with_tok2vec(tok2vec, head, context)


@registry.architectures("spacy_egp.GlobalPointer.v2")
def build_globalpointer_v2(
    tok2vec: Model[List[Doc], List[Floats2d]],
    head_size: int = 64,
    use_rope: bool = True,
    max_span_length: Optional[int] = DEFAULT_MAX_SPAN_LENGTH,
    context: Optional[Model[List[Floats2d], List[Floats2d]]] = None,
    nO: Optional[int] = None,
) -> Model[List[Doc], Ragged]:
    """The original GlobalPointer: one q/k projection per label, for comparison.

    Same arguments and output as spacy_egp.EfficientGlobalPointer.v2, but no
    label term and so no span_prior.
    """
    _validate_head_config(head_size, use_rope, max_span_length, None)
    head = build_gp_head(head_size, use_rope, max_span_length, nO)
    return _with_tok2vec(tok2vec, head, context)


@registry.architectures("spacy_egp.EfficientGlobalPointer.v1")
def build_efficient_globalpointer(
    tok2vec: Model[List[Doc], List[Floats2d]],
    head_size: int = 64,
    use_rope: bool = True,
    nO: Optional[int] = None,
) -> Model[List[Doc], Ragged]:
    """Version 1 of spacy_egp.EfficientGlobalPointer: max_span_length 128, no span prior."""
    return build_efficient_globalpointer_v2(tok2vec, head_size, use_rope, DEFAULT_MAX_SPAN_LENGTH, None, None, nO)


@registry.architectures("spacy_egp.GlobalPointer.v1")
def build_globalpointer(
    tok2vec: Model[List[Doc], List[Floats2d]],
    head_size: int = 64,
    use_rope: bool = True,
    nO: Optional[int] = None,
) -> Model[List[Doc], Ragged]:
    """Version 1 of spacy_egp.GlobalPointer: max_span_length 128."""
    return build_globalpointer_v2(tok2vec, head_size, use_rope, DEFAULT_MAX_SPAN_LENGTH, None, nO)


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

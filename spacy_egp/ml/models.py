"""Registered model builders: tok2vec → span head → band of span logits.

The output is a Ragged whose data is the (T, W, K) band of `spacy_egp.ml.heads`
for the batch's docs concatenated, and whose lengths are the docs' token
counts. The label count K (dim "nO" of the ref "head") is left unset here and
inferred when the component initializes, as spaCy's spancat does.
"""

from typing import Any, Callable, List, Optional, Tuple

from spacy.tokens import Doc
from spacy.util import registry
from thinc.api import Model, chain, list2ragged
from thinc.layers.chain import forward as chain_forward
from thinc.types import Floats2d, Ragged

from .heads import build_egp_head, build_gp_head
from .windowing import predict_token_vectors

# The builders' defaults, and through them the components' default configs
DEFAULT_HEAD_SIZE = 64
DEFAULT_MAX_SPAN_LENGTH = 128
# An untrained head gives every cell about this probability (see span_prior).
DEFAULT_SPAN_PRIOR = 0.01
# The attr of a node whose weights learn at that times the rate (spacy_egp.LearnRateScaled.v1)
LR_SCALE_ATTR = "spacy_egp_lr_scale"


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
    # Thinc's chain, with a prediction of its own (_score_forward); the same nodes in the same
    # order, so pipelines saved with a plain chain load unchanged
    chained = chain(*layers)
    model = Model(chained.name, _score_forward, init=chained.init, layers=layers, dims={"nO": None, "nI": None})
    model.set_ref("tok2vec", tok2vec)
    model.set_ref("head", head)
    if context is not None:
        model.set_ref("context", context)
    return model


def _score_forward(model: Model[List[Doc], Any], docs: List[Doc], is_train: bool) -> Tuple[Any, Callable]:
    """Training: Thinc's chain. Prediction: the layers one by one, each with `predict`.

    A chain keeps every layer's intermediate arrays until it returns; predicting
    layer by layer frees the tok2vec's before the (larger) band is built, and
    encodes long docs in windows (predict_token_vectors).
    """
    if is_train:
        return chain_forward(model, docs, is_train)
    vectors = predict_token_vectors(model.get_ref("tok2vec"), docs)
    if model.has_ref("context"):
        vectors = model.get_ref("context").predict(vectors)
    lengths = model.ops.asarray1i([len(doc) for doc in docs])
    scores = model.get_ref("head").predict(Ragged(model.ops.flatten(vectors), lengths))

    def backprop(d_scores: Any) -> List[Doc]:
        raise ValueError("The span scorer was run for prediction (is_train=False): there is no gradient to pass back.")

    return scores, backprop


@registry.architectures("spacy_egp.EfficientGlobalPointer.v2")
def build_efficient_globalpointer_v2(
    tok2vec: Model[List[Doc], List[Floats2d]],
    head_size: int = DEFAULT_HEAD_SIZE,
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
    head_size: int = DEFAULT_HEAD_SIZE,
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
    head_size: int = DEFAULT_HEAD_SIZE,
    use_rope: bool = True,
    nO: Optional[int] = None,
) -> Model[List[Doc], Ragged]:
    """Version 1 of spacy_egp.EfficientGlobalPointer: max_span_length DEFAULT_MAX_SPAN_LENGTH, no span prior."""
    return build_efficient_globalpointer_v2(tok2vec, head_size, use_rope, DEFAULT_MAX_SPAN_LENGTH, None, None, nO)


@registry.architectures("spacy_egp.GlobalPointer.v1")
def build_globalpointer(
    tok2vec: Model[List[Doc], List[Floats2d]],
    head_size: int = DEFAULT_HEAD_SIZE,
    use_rope: bool = True,
    nO: Optional[int] = None,
) -> Model[List[Doc], Ragged]:
    """Version 1 of spacy_egp.GlobalPointer: max_span_length DEFAULT_MAX_SPAN_LENGTH."""
    return build_globalpointer_v2(tok2vec, head_size, use_rope, DEFAULT_MAX_SPAN_LENGTH, None, nO)


@registry.architectures("spacy_egp.LearnRateScaled.v1")
def build_learn_rate_scaled(layer: Model, lr_scale: float) -> Model:
    """Mark every node of `layer` to learn at `lr_scale` times the optimizer's rate.

    For a freshly initialised part beside a pretrained one, e.g. a CNN tok2vec
    concatenated with a transformer listener: the recipe's rate suits the
    transformer but leaves the CNN nearly still. The scale multiplies any scale
    of the node already (nested wrappers compose) and the component's
    head_lr_scale outside its tok2vec; efficient_globalpointer and gplinker apply
    it when they update (a torch-wrapped node's whole shim gets its scale).

    layer (Model): The layer, returned with its nodes marked.
    lr_scale (float): A positive factor on the learning rate.
    """
    if isinstance(lr_scale, bool) or not isinstance(lr_scale, (int, float)) or not lr_scale > 0:
        raise ValueError(f"lr_scale must be a positive number (e.g. 40 for a CNN at 2e-3 beside a "
                         f"transformer at 5e-5), got {lr_scale!r}.")
    for node in layer.walk():
        node.attrs[LR_SCALE_ATTR] = node.attrs.get(LR_SCALE_ATTR, 1.0) * float(lr_scale)
    return layer

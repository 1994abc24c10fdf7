"""Registered model builders: tok2vec → span head → band of span logits.

The output is a Ragged whose data is the (T, W, K) band of `spacy_egp.heads`
for the batch's docs concatenated, and whose lengths are the docs' token
counts. The label count K (dim "nO" of the ref "head") is left unset here and
inferred when the component initializes, as spaCy's spancat does.
"""

from typing import List, Optional

from spacy.tokens import Doc
from spacy.util import registry
from thinc.api import Model, chain, list2ragged
from thinc.types import Floats2d, Ragged

from .heads import build_egp_head, build_gp_head

DEFAULT_MAX_SPAN_LENGTH = 128


def _validate_head_config(head_size: int, use_rope: bool) -> None:
    if not isinstance(head_size, int) or head_size <= 0:
        raise ValueError(f"head_size must be a positive integer, got {head_size!r}.")
    if use_rope and head_size % 2:
        raise ValueError(
            f"head_size must be even when use_rope = true (RoPE rotates pairs of "
            f"dimensions), got {head_size}. Use an even head_size such as "
            f"{head_size + 1}, or set use_rope = false."
        )


def _with_tok2vec(tok2vec: Model[List[Doc], List[Floats2d]], head: Model) -> Model[List[Doc], Ragged]:
    model = chain(tok2vec, list2ragged(), head)
    model.set_ref("tok2vec", tok2vec)
    model.set_ref("head", head)
    return model


@registry.architectures("spacy_egp.EfficientGlobalPointer.v1")
def build_efficient_globalpointer(
    tok2vec: Model[List[Doc], List[Floats2d]],
    head_size: int = 64,
    use_rope: bool = True,
    nO: Optional[int] = None,
) -> Model[List[Doc], Ragged]:
    """Efficient GlobalPointer: one shared q/k projection, per-label start/end terms.

    tok2vec (Model[List[Doc], List[Floats2d]]): The token-to-vector layer.
    head_size (int): d, the width of q and k (the projection is 2d wide).
    use_rope (bool): Rotary position encoding (base 10000, positions from 0
        in each doc) on q and k before their product.
    nO (Optional[int]): The number of labels; inferred at initialize if None.
    RETURNS (Model[List[Doc], Ragged]): The band of span logits, (T, W, nO).
    """
    _validate_head_config(head_size, use_rope)
    head = build_egp_head(head_size, use_rope, DEFAULT_MAX_SPAN_LENGTH, nO)
    return _with_tok2vec(tok2vec, head)


@registry.architectures("spacy_egp.GlobalPointer.v1")
def build_globalpointer(
    tok2vec: Model[List[Doc], List[Floats2d]],
    head_size: int = 64,
    use_rope: bool = True,
    nO: Optional[int] = None,
) -> Model[List[Doc], Ragged]:
    """The original GlobalPointer: one q/k projection per label, for comparison.

    Same arguments and output as spacy_egp.EfficientGlobalPointer.v1.
    """
    _validate_head_config(head_size, use_rope)
    head = build_gp_head(head_size, use_rope, DEFAULT_MAX_SPAN_LENGTH, nO)
    return _with_tok2vec(tok2vec, head)

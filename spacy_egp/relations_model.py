"""The GPLinker model: tok2vec → (entity span band, relation pair band).

GPLinker (Su Jianlin, 2022, https://kexue.fm/archives/8888; reference code
bojone/GPLinker `duie_v1.py`) extracts (head entity, relation, tail entity)
triples with three pointers over the same token vectors:

- an EGP entity head (spacy_egp.heads.build_egp_head), here with the entity
  types as its labels, giving the band of span logits (T, W, K);
- per relation type, a head-head pointer scoring (head start, tail start)
  and a tail-tail pointer scoring (head end, tail end): GP-style q/k
  projections without RoPE or tril mask (spacy_egp.heads.build_pair_head),
  giving the pair band (T, 2P, 2R), P = min(max_pair_distance + 1, longest
  doc), channels [0, R) the head pairs and [R, 2R) the tail pairs of the R
  relation types.

The model's ref "head" is the pair of heads (one layer), so that the
component's head_lr_scale covers both; "entity_head" and "pair_head" name them
one by one. The label counts are set when the component initializes.
"""

from typing import Callable, List, Optional, Tuple

from spacy.tokens import Doc
from spacy.util import registry
from thinc.api import Model
from thinc.types import Floats2d, Ragged

from .heads import build_egp_head, build_pair_head
from .model import DEFAULT_MAX_SPAN_LENGTH, DEFAULT_SPAN_PRIOR, _validate_head_config, _with_tok2vec

# Covers every relation of CoNLL04 (its farthest arguments: 82 tokens apart, in train).
DEFAULT_MAX_PAIR_DISTANCE = 96

GPLinkerScores = Tuple[Ragged, Ragged]


@registry.architectures("spacy_egp.GPLinker.v1")
def build_gplinker(
    tok2vec: Model[List[Doc], List[Floats2d]],
    head_size: int = 64,
    use_rope: bool = True,
    max_span_length: Optional[int] = DEFAULT_MAX_SPAN_LENGTH,
    span_prior: Optional[float] = DEFAULT_SPAN_PRIOR,
    pair_head_size: int = 64,
    max_pair_distance: int = DEFAULT_MAX_PAIR_DISTANCE,
    context: Optional[Model[List[Floats2d], List[Floats2d]]] = None,
) -> Model[List[Doc], GPLinkerScores]:
    """GPLinker: an EGP entity head and per-relation head-head / tail-tail pair pointers.

    tok2vec (Model[List[Doc], List[Floats2d]]): The token-to-vector layer, shared by the three pointers.
    head_size, use_rope, max_span_length, span_prior: The entity head's, as in
        spacy_egp.EfficientGlobalPointer.v2.
    pair_head_size (int): d of each relation pointer's q and k (the reference's 64).
    max_pair_distance (int): The farthest apart two arguments' starts (and
        ends) may be, in tokens; pairs farther apart are not scored, so the
        pair band takes T * (2 * max_pair_distance + 2) cells per channel, linear in
        document length. A gold relation farther apart is skipped with a warning.
    context (Optional[Model[List[Floats2d], List[Floats2d]]]): A context layer
        of the heads' own between the tok2vec and the heads, as in
        spacy_egp.EfficientGlobalPointer.v2 (e.g. spacy.TorchBiLSTMEncoder.v1):
        a pair pointer sees only the two tokens it links, so with a CNN
        tok2vec (a few tokens of context) it cannot see the words between
        distant arguments. Width in = width out. None: the tok2vec's vectors.
    RETURNS (Model[List[Doc], Tuple[Ragged, Ragged]]): The entity band (T, W, K)
        and the pair band (T, 2P, 2R), see spacy_egp.heads.
    """
    _validate_head_config(head_size, use_rope, max_span_length, span_prior)
    _validate_head_config(pair_head_size, False, None, None)
    if isinstance(max_pair_distance, bool) or not isinstance(max_pair_distance, int) or max_pair_distance < 0:
        raise ValueError(
            f"max_pair_distance must be a number of tokens >= 0 (e.g. {DEFAULT_MAX_PAIR_DISTANCE}), "
            f"got {max_pair_distance!r}."
        )
    entity_head = build_egp_head(head_size, use_rope, max_span_length, span_prior=span_prior)
    pair_head = build_pair_head(pair_head_size, max_pair_distance)
    model = _with_tok2vec(tok2vec, build_gplinker_heads(entity_head, pair_head), context)
    model.set_ref("entity_head", entity_head)
    model.set_ref("pair_head", pair_head)
    return model


def build_gplinker_heads(entity_head: Model, pair_head: Model) -> Model[Ragged, GPLinkerScores]:
    """Both heads on the same token vectors, as one layer. Its dim nO is the entity head's."""
    return Model(
        "gplinker_heads",
        _heads_forward,
        init=_init_heads,
        layers=[entity_head, pair_head],
        refs={"entity_head": entity_head, "pair_head": pair_head},
        dims={"nO": None, "nI": None},
    )


def _init_heads(model: Model, X: Optional[Ragged] = None, Y: Optional[GPLinkerScores] = None) -> None:
    entity_head, pair_head = model.layers
    if model.has_dim("nO") and not entity_head.has_dim("nO"):
        entity_head.set_dim("nO", model.get_dim("nO"))
    for head in model.layers:
        if model.has_dim("nI") and not head.has_dim("nI"):
            head.set_dim("nI", model.get_dim("nI"))
        head.initialize(X=X)


def _heads_forward(model: Model, X: Ragged, is_train: bool) -> Tuple[GPLinkerScores, Callable]:
    entity_head, pair_head = model.layers
    entities, bp_entities = entity_head(X, is_train)
    pairs, bp_pairs = pair_head(X, is_train)

    def backprop(dY: GPLinkerScores) -> Ragged:
        d_entities, d_pairs = dY
        return Ragged(bp_entities(d_entities).data + bp_pairs(d_pairs).data, X.lengths)

    return (entities, pairs), backprop

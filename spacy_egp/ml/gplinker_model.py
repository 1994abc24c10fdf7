"""The GPLinker model: tok2vec → (entity span band, relation pair band).

GPLinker (Su Jianlin, 2022, https://kexue.fm/archives/8888; reference code
bojone/GPLinker `duie_v1.py`) extracts (head entity, relation, tail entity)
triples with three pointers over the same token vectors:

- an EGP entity head (spacy_egp.ml.heads.build_egp_head), here with the entity
  types (or, with the component's entity_roles, the two roles subject and
  object) as its labels, giving the band of span logits (T, W, K);
- per relation type, a head-head pointer scoring (head start, tail start)
  and a tail-tail pointer scoring (head end, tail end), without RoPE or tril
  mask, giving the pair band (T, 2P, 2R), P = min(max_pair_distance + 1,
  longest doc), channels [0, R) the head pairs and [R, 2R) the tail pairs of
  the R relation types.

spacy_egp.GPLinker.v2 builds the pair pointers as the reference does (it
imports bert4keras's EfficientGlobalPointer as GlobalPointer for all three):
each of the two pointers is an EGP pair pointer, one q/k projection shared by
the R relation types plus a 4d + 2 label term per type
(spacy_egp.ml.heads.build_egp_pair_head); pair_pointer = "gp" gives each channel
its own q/k projection instead (spacy_egp.ml.heads.build_pair_head), the only
pointer of spacy_egp.GPLinker.v1. In v2 the span prior starts the pair
pointers too, so an untrained model predicts (almost) no relations.

The model's ref "head" is the pair of heads (one layer), so that the
component's head_lr_scale covers both; "entity_head" and "pair_head" name them
one by one. The label counts are set when the component initializes.
"""

from typing import Callable, List, NamedTuple, Optional, Tuple

from spacy.tokens import Doc
from spacy.util import registry
from thinc.api import Model
from thinc.types import Floats2d, Ragged

from .heads import build_egp_head, build_egp_pair_head, build_pair_head, build_pair_heads, init_side_by_side
from .models import DEFAULT_HEAD_SIZE, DEFAULT_MAX_SPAN_LENGTH, DEFAULT_SPAN_PRIOR, _validate_head_config, _with_tok2vec

# Covers every relation of CoNLL04 (its farthest arguments: 82 tokens apart, in train).
DEFAULT_MAX_PAIR_DISTANCE = 96

# The pair pointers of spacy_egp.GPLinker.v2 (pair_pointer)
PAIR_POINTERS = ("egp", "gp")


class GPLinkerScores(NamedTuple):
    """GPLinker's output: the entity band (T, W, K) and the pair band (T, 2P, 2R)."""

    entities: Ragged
    pairs: Ragged


@registry.architectures("spacy_egp.GPLinker.v2")
def build_gplinker_v2(
    tok2vec: Model[List[Doc], List[Floats2d]],
    head_size: int = DEFAULT_HEAD_SIZE,
    use_rope: bool = True,
    max_span_length: Optional[int] = DEFAULT_MAX_SPAN_LENGTH,
    span_prior: Optional[float] = DEFAULT_SPAN_PRIOR,
    pair_head_size: int = DEFAULT_HEAD_SIZE,
    max_pair_distance: int = DEFAULT_MAX_PAIR_DISTANCE,
    pair_pointer: str = "egp",
    context: Optional[Model[List[Floats2d], List[Floats2d]]] = None,
) -> Model[List[Doc], GPLinkerScores]:
    """GPLinker as the reference builds it: an EGP entity head and EGP head-head / tail-tail pair pointers.

    tok2vec (Model[List[Doc], List[Floats2d]]): The token-to-vector layer, shared by the three pointers.
    head_size, use_rope, max_span_length: The entity head's, as in
        spacy_egp.EfficientGlobalPointer.v2.
    span_prior (Optional[float]): The probability an untrained pointer gives
        a cell, for the entity head AND the pair pointers (v1: the entity head
        only); None: biases start at 0.
    pair_head_size (int): d of the pair pointers' q and k (the reference's 64).
    max_pair_distance (int): The farthest apart two arguments' starts (and
        ends) may be, in tokens, as in spacy_egp.GPLinker.v1.
    pair_pointer (str): "egp" (the reference's): each pointer has one q/k
        projection shared by all relation types and a label term per type;
        "gp": one q/k projection per relation type and pointer (v1's).
    context (Optional[Model[List[Floats2d], List[Floats2d]]]): A context layer
        of the heads' own, as in spacy_egp.GPLinker.v1.
    RETURNS (Model[List[Doc], GPLinkerScores]): The entity band (T, W, K) and
        the pair band (T, 2P, 2R).
    """
    if pair_pointer not in PAIR_POINTERS:
        raise ValueError(
            f"pair_pointer must be one of {list(PAIR_POINTERS)} (\"egp\": the reference's shared projection "
            f"with a label term per relation type; \"gp\": a projection per relation type), got {pair_pointer!r}."
        )
    _validate_gplinker_config(head_size, use_rope, max_span_length, span_prior, pair_head_size, max_pair_distance)
    entity_head = build_egp_head(head_size, use_rope, max_span_length, span_prior=span_prior)
    build_pointer = build_egp_pair_head if pair_pointer == "egp" else build_pair_head
    pair_head = build_pair_heads(
        build_pointer(pair_head_size, max_pair_distance, span_prior=span_prior),
        build_pointer(pair_head_size, max_pair_distance, span_prior=span_prior),
    )
    return _assemble(tok2vec, entity_head, pair_head, context)


def _validate_gplinker_config(
    head_size: int,
    use_rope: bool,
    max_span_length: Optional[int],
    span_prior: Optional[float],
    pair_head_size: int,
    max_pair_distance: int,
) -> None:
    _validate_head_config(head_size, use_rope, max_span_length, span_prior)
    _validate_head_config(pair_head_size, False, None, None)
    if isinstance(max_pair_distance, bool) or not isinstance(max_pair_distance, int) or max_pair_distance < 0:
        raise ValueError(
            f"max_pair_distance must be a number of tokens >= 0 (e.g. {DEFAULT_MAX_PAIR_DISTANCE}), "
            f"got {max_pair_distance!r}."
        )


def _assemble(
    tok2vec: Model, entity_head: Model, pair_head: Model, context: Optional[Model]
) -> Model[List[Doc], GPLinkerScores]:
    model = _with_tok2vec(tok2vec, build_gplinker_heads(entity_head, pair_head), context)
    model.set_ref("entity_head", entity_head)
    model.set_ref("pair_head", pair_head)
    return model


@registry.architectures("spacy_egp.GPLinker.v1")
def build_gplinker(
    tok2vec: Model[List[Doc], List[Floats2d]],
    head_size: int = DEFAULT_HEAD_SIZE,
    use_rope: bool = True,
    max_span_length: Optional[int] = DEFAULT_MAX_SPAN_LENGTH,
    span_prior: Optional[float] = DEFAULT_SPAN_PRIOR,
    pair_head_size: int = DEFAULT_HEAD_SIZE,
    max_pair_distance: int = DEFAULT_MAX_PAIR_DISTANCE,
    context: Optional[Model[List[Floats2d], List[Floats2d]]] = None,
) -> Model[List[Doc], GPLinkerScores]:
    """Version 1 of spacy_egp.GPLinker: GP-style pair pointers (a q/k projection per channel), no pair prior.

    Arguments as spacy_egp.GPLinker.v2, whose pair_pointer = "gp" has the same
    pointers plus, with span_prior, a per-channel bias that starts them at the prior.
    """
    _validate_gplinker_config(head_size, use_rope, max_span_length, span_prior, pair_head_size, max_pair_distance)
    entity_head = build_egp_head(head_size, use_rope, max_span_length, span_prior=span_prior)
    pair_head = build_pair_head(pair_head_size, max_pair_distance)
    return _assemble(tok2vec, entity_head, pair_head, context)


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
    init_side_by_side(model, X)


def _heads_forward(model: Model, X: Ragged, is_train: bool) -> Tuple[GPLinkerScores, Callable]:
    entity_head, pair_head = model.layers
    entities, bp_entities = entity_head(X, is_train)
    pairs, bp_pairs = pair_head(X, is_train)

    def backprop(dY: GPLinkerScores) -> Ragged:
        d_entities, d_pairs = dY
        return Ragged(bp_entities(d_entities).data + bp_pairs(d_pairs).data, X.lengths)

    return GPLinkerScores(entities, pairs), backprop

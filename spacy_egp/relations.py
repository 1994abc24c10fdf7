"""The `gplinker` pipeline component: entities in doc.spans and relations in doc._.relations.

GPLinker (spacy_egp.relations_model) scores entity spans with an EGP head and,
for every relation type, the pairs (head start, tail start) and (head end,
tail end) with two pair pointers. `set_annotations` writes the entities (typed,
possibly nested) to doc.spans[spans_key] exactly as the efficient_globalpointer
component does, then keeps a relation (s, r, o) between two predicted entities
when both its head pair and its tail pair reach the relation threshold.
`get_loss` is ZLPR (spacy_egp.loss) on the three pointers, summed as in the
reference: the entity band's mean over (doc, entity type) rows plus the head
and tail pair bands' means over (doc, relation type) rows.

Relations live in doc.user_data as plain token offsets (spacy_egp.gold.
RelationOffsets), so Doc.to_bytes and DocBin(store_user_data=True) keep them,
gold ones included; `doc._.relations` reads them as Relation records of Spans.

Scores and thresholds are probabilities, as in the efficient_globalpointer
component: a relation's score is the lower of its two pairs' probabilities.
"""

import copy
import dataclasses
from collections import defaultdict
from typing import Any, Callable, Dict, Iterable, List, NamedTuple, Optional, Tuple

import numpy
from spacy.language import Language
from spacy.scorer import PRFScore
from spacy.tokens import Doc, Span
from spacy.training import Example, validate_get_examples
from spacy.util import registry
from spacy.vocab import Vocab
from thinc.api import Config, Model
from thinc.types import Ragged

from .gold import (
    RELATIONS_KEY,
    RelationOffsets,
    cells_above,
    decode_relations,
    gold_pair_cells,
    pair_of_cells,
    relation_offsets,
    store_relation_offsets,
)
from .heads import pair_mask
from .loss import sparse_zlpr_loss
from .model import DEFAULT_MAX_SPAN_LENGTH, DEFAULT_SPAN_PRIOR
from .pipeline import (
    DEFAULT_EGP_MODEL,
    DEFAULT_MAX_SPANS_PER_TOKEN,
    DEFAULT_SPANS_KEY,
    EfficientGlobalPointer,
    _check_threshold,
    probability_to_logit,
    sigmoid,
    spans_score,
)
from .relations_model import DEFAULT_MAX_PAIR_DISTANCE, GPLinkerScores

# The efficient_globalpointer component's default tok2vec, with GPLinker's heads
DEFAULT_GPLINKER_MODEL = Config(
    {
        "@architectures": "spacy_egp.GPLinker.v1",
        "head_size": 64,
        "use_rope": True,
        "max_span_length": DEFAULT_MAX_SPAN_LENGTH,
        "span_prior": DEFAULT_SPAN_PRIOR,
        "pair_head_size": 64,
        "max_pair_distance": DEFAULT_MAX_PAIR_DISTANCE,
        "tok2vec": copy.deepcopy(DEFAULT_EGP_MODEL["tok2vec"]),
    }
)
RELATION_SCORE_WEIGHTS = {"relations_f": 1.0, "relations_p": 0.0, "relations_r": 0.0}


# --------------------------------------------------------------------------
# doc._.relations
# --------------------------------------------------------------------------


class Relation(NamedTuple):
    """A relation of doc._.relations: head entity, relation label, tail entity, score (None for gold)."""

    head: Span
    label: str
    tail: Span
    score: Optional[float] = None


def get_relations(doc: Doc) -> List[Relation]:
    """doc._.relations: the doc's relations, their arguments as labelled Spans."""
    return [
        Relation(
            Span(doc, record.head_start, record.head_end, label=record.head_label),
            record.label,
            Span(doc, record.tail_start, record.tail_end, label=record.tail_label),
            record.score,
        )
        for record in relation_offsets(doc)
    ]


def set_relations(doc: Doc, relations: Iterable[Tuple]) -> None:
    """doc._.relations = [(head Span, label, tail Span[, score]), ...]: store them as token offsets."""
    records = []
    for relation in relations:
        head, label, tail, score = (tuple(relation) + (None,))[:4]
        for argument in (head, tail):
            if not isinstance(argument, Span) or argument.doc is not doc:
                raise ValueError(f"A relation's arguments must be Spans of this doc, got {argument!r} in {relation!r}.")
        if not isinstance(label, str) or not label:
            raise ValueError(f"A relation's label must be a non-empty string, got {label!r} in {relation!r}.")
        records.append(
            RelationOffsets(head.start, head.end, head.label_, label, tail.start, tail.end, tail.label_, score)
        )
    store_relation_offsets(doc, records)


if not Doc.has_extension("relations"):
    Doc.set_extension("relations", getter=get_relations, setter=set_relations)


# --------------------------------------------------------------------------
# Scorer
# --------------------------------------------------------------------------


def _relation_keys(doc: Doc, typed: bool) -> List[Tuple]:
    """The doc's relations as comparable keys: character offsets, so that tokenization does not matter."""
    keys = []
    for relation in get_relations(doc):
        head, tail = relation.head, relation.tail
        head_key = (head.start_char, head.end_char) + ((head.label_,) if typed else ())
        tail_key = (tail.start_char, tail.end_char) + ((tail.label_,) if typed else ())
        keys.append((head_key, relation.label, tail_key))
    return keys


def _prf(score: PRFScore, prefix: str) -> Dict[str, Optional[float]]:
    # as spaCy's Scorer.score_spans: None when there is nothing to score
    if len(score) == 0:
        return {f"{prefix}_p": None, f"{prefix}_r": None, f"{prefix}_f": None}
    return {f"{prefix}_p": score.precision, f"{prefix}_r": score.recall, f"{prefix}_f": score.fscore}


def relations_score(
    examples: Iterable[Example], *, spans_key: str = DEFAULT_SPANS_KEY, **kwargs: Any
) -> Dict[str, Any]:
    """Micro P/R/F of the relations of doc._.relations, and of the entities in doc.spans[spans_key].

    relations_p/_r/_f are strict: a predicted relation is right when its
    label, both arguments' boundaries AND both arguments' entity types equal a
    gold relation's. relations_untyped_p/_r/_f ignore the entity types
    (arguments' boundaries and relation label only, the "boundaries" variant).
    relations_per_type: strict P/R/F per relation label. Arguments are
    compared by character offsets, so predicted and gold tokenization may
    differ. Examples whose reference doc has no relations stored at all
    (not even an empty list) are left out of the relation figures. The entity scores are those of the efficient_globalpointer
    component (spans_{key}_p/_r/_f, spans_{key}_per_type).

    RETURNS (Dict[str, Any]): The scores.
    """
    examples = list(examples)
    strict, untyped = PRFScore(), PRFScore()
    per_type: Dict[str, PRFScore] = defaultdict(PRFScore)
    # as spaCy's has_annotation: a reference doc that never had relations set is not scored
    for eg in (eg for eg in examples if RELATIONS_KEY in eg.reference.user_data):
        untyped.score_set(set(_relation_keys(eg.predicted, False)), set(_relation_keys(eg.reference, False)))
        predicted, gold = set(_relation_keys(eg.predicted, True)), set(_relation_keys(eg.reference, True))
        strict.score_set(predicted, gold)
        for label in {key[1] for key in predicted | gold}:
            per_type[label].score_set({k for k in predicted if k[1] == label}, {k for k in gold if k[1] == label})
    scores = spans_score(examples, spans_key=spans_key, **kwargs)
    scores.update(_prf(strict, "relations"))
    scores.update(_prf(untyped, "relations_untyped"))
    scores["relations_per_type"] = {label: score.to_dict() for label, score in sorted(per_type.items())}
    return scores


@registry.scorers("spacy_egp.relations_scorer.v1")
def make_relations_scorer() -> Callable[..., Dict[str, Any]]:
    """spacy_egp.relations_scorer.v1: relations_score."""
    return relations_score


# --------------------------------------------------------------------------
# The component
# --------------------------------------------------------------------------


@Language.factory(
    "gplinker",
    assigns=["doc.spans", "doc._.relations"],
    default_config={
        "model": DEFAULT_GPLINKER_MODEL,
        "spans_key": DEFAULT_SPANS_KEY,
        "threshold": 0.5,
        "thresholds": {},
        "relation_threshold": 0.5,
        "max_spans_per_token": DEFAULT_MAX_SPANS_PER_TOKEN,
        "head_lr_scale": 1.0,
        "ents_mode": False,
        "scorer": {"@scorers": "spacy_egp.relations_scorer.v1"},
    },
    default_score_weights=RELATION_SCORE_WEIGHTS,
)
def make_gplinker(
    nlp: Language,
    name: str,
    model: Model[List[Doc], GPLinkerScores],
    spans_key: str,
    threshold: float,
    thresholds: Dict[str, float],
    relation_threshold: float,
    max_spans_per_token: Optional[float],
    head_lr_scale: float,
    ents_mode: bool,
    scorer: Optional[Callable],
) -> "GPLinker":
    """Create a gplinker component (see GPLinker)."""
    return GPLinker(
        nlp.vocab,
        model,
        name,
        spans_key=spans_key,
        threshold=threshold,
        thresholds=thresholds,
        relation_threshold=relation_threshold,
        max_spans_per_token=max_spans_per_token,
        head_lr_scale=head_lr_scale,
        ents_mode=ents_mode,
        scorer=scorer,
    )


class GPLinker(EfficientGlobalPointer):
    """Joint entity and relation extraction with GPLinker.

    The entity part is the efficient_globalpointer component's (labels,
    thresholds, the span cap, head_lr_scale, serialization); this class adds
    the relation labels, the pair pointers' loss and the relation decoding.
    """

    def __init__(
        self,
        vocab: Vocab,
        model: Model[List[Doc], GPLinkerScores],
        name: str = "gplinker",
        *,
        spans_key: str = DEFAULT_SPANS_KEY,
        threshold: float = 0.5,
        thresholds: Optional[Dict[str, float]] = None,
        relation_threshold: float = 0.5,
        max_spans_per_token: Optional[float] = DEFAULT_MAX_SPANS_PER_TOKEN,
        head_lr_scale: float = 1.0,
        ents_mode: bool = False,
        scorer: Optional[Callable] = relations_score,
    ) -> None:
        """Initialize the component.

        vocab (Vocab): The shared vocabulary.
        model (Model[List[Doc], Tuple[Ragged, Ragged]]): spacy_egp.GPLinker.v1.
        name (str): The component instance name, used as the key in losses.
        spans_key (str): Key of doc.spans for the entities, predicted and
            gold; relation arguments must be gold entities under this key.
        threshold (float): The probability at or above which a span is an entity.
        thresholds (Dict[str, float]): Per-entity-type thresholds that override `threshold`.
        relation_threshold (float): The probability that both a relation's
            head pair and its tail pair must reach (0.5: the reference's logit 0).
        max_spans_per_token (Optional[float]): At most ceil(this * len(doc))
            entities per doc, and as many pairs per doc and relation type (the
            highest-scoring ones); None: no cap.
        head_lr_scale (float): All three pointers learn at the optimizer's
            rate times this; the tok2vec at the rate itself.
        ents_mode (bool): Also write a non-overlapping selection of the entities to doc.ents.
        scorer (Optional[Callable]): The scoring method (spacy_egp.relations_scorer.v1).
        """
        super().__init__(
            vocab,
            model,
            name,
            spans_key=spans_key,
            threshold=threshold,
            thresholds=thresholds,
            max_spans_per_token=max_spans_per_token,
            head_lr_scale=head_lr_scale,
            sparse_loss=True,
            ents_mode=ents_mode,
            scorer=scorer,
        )
        self.cfg["relation_labels"] = []
        self.cfg["relation_threshold"] = _check_threshold("relation_threshold", relation_threshold)

    @property
    def max_span_length(self) -> Optional[int]:
        """The longest entity scored, in tokens (the entity head's)."""
        return self.model.get_ref("entity_head").attrs["max_span_length"]

    @property
    def max_pair_distance(self) -> int:
        """The farthest apart (in tokens) two arguments' starts, and ends, may be (the pair head's)."""
        return self.model.get_ref("pair_head").attrs["max_pair_distance"]

    @property
    def relation_labels(self) -> Tuple[str, ...]:
        """The relation labels, in the order of the pair band's channels."""
        return tuple(self.cfg["relation_labels"])

    def add_relation_label(self, label: str) -> int:
        """Add a relation label before initialization. RETURNS (int): 1 if new, else 0."""
        return self._add_to_labels(label, "relation_labels", "pair_head", "Relation labels")

    def predict(self, docs: Iterable[Doc]) -> GPLinkerScores:
        """Score every candidate entity and argument pair of the docs, without modifying them.

        RETURNS (Tuple[Ragged, Ragged]): The entity band (T, W, K) and the pair band (T, 2P, 2R).
        """
        docs = list(docs)
        if any(len(doc) for doc in docs):
            return super().predict(docs)
        lengths = self.model.ops.asarray1i([len(doc) for doc in docs])
        empty_entities = Ragged(self.model.ops.alloc3f(0, 0, len(self.labels)), lengths)
        return empty_entities, Ragged(self.model.ops.alloc3f(0, 0, 2 * len(self.relation_labels)), lengths)

    def set_annotations(self, docs: Iterable[Doc], scores: GPLinkerScores) -> None:
        """Write the entities to doc.spans[spans_key] and the relations to doc._.relations.

        A relation r from entity s to entity o is kept when its head pair
        (s.start, o.start) and tail pair (s.end - 1, o.end - 1) both reach
        relation_threshold; both arguments must be predicted entities.
        """
        docs = list(docs)
        entity_scores, pair_scores = scores
        super().set_annotations(docs, entity_scores)
        for doc, (head_pairs, tail_pairs) in zip(docs, self._pairs_above_threshold(pair_scores)):
            entities = [(span.start, span.end, span.label_) for span in doc.spans[self.key]]
            relations = decode_relations(entities, head_pairs, tail_pairs)
            store_relation_offsets(
                doc,
                [RelationOffsets(*head, self.relation_labels[r], *tail, score) for head, r, tail, score in relations],
            )

    def _pairs_above_threshold(self, pair_scores: Ragged) -> List[Tuple[Dict, Dict]]:
        """Per doc, the head and tail pairs at or above threshold: {(relation, first, second): probability}."""
        ops, n_relations = self.model.ops, len(self.relation_labels)
        lengths = ops.to_numpy(pair_scores.lengths)
        band = ops.to_numpy(pair_scores.dataXd)
        thresholds = numpy.full(band.shape[2], probability_to_logit(self.cfg["relation_threshold"]))
        caps = self.span_caps(lengths) * max(1, n_relations)
        # no warning when the cap bites: an untrained pair pointer puts about half of all pairs
        # above threshold (it has no prior, as in the reference); the cap only bounds memory here
        cells = cells_above(band, lengths, thresholds, caps)
        first, second = pair_of_cells(cells.token, cells.width, band.shape[1] // 2)
        doc_starts = numpy.cumsum(lengths) - lengths
        doc_of = numpy.searchsorted(doc_starts, cells.token, side="right") - 1
        pairs: List[Tuple[Dict, Dict]] = [({}, {}) for _ in lengths]
        for doc, a, b, channel, probability in zip(
            doc_of.tolist(), first.tolist(), second.tolist(), cells.label.tolist(), sigmoid(cells.logit).tolist()
        ):
            start = int(doc_starts[doc])
            target = pairs[doc][0] if channel < n_relations else pairs[doc][1]
            target[(channel % n_relations, a - start, b - start)] = probability
        return pairs

    def get_loss(self, examples: Iterable[Example], scores: GPLinkerScores) -> Tuple[float, GPLinkerScores]:
        """ZLPR of the entity band and of the pair band against the gold entities and relations.

        RETURNS (Tuple[float, Tuple[Ragged, Ragged]]): The loss and its gradient for both bands.
        """
        examples = list(examples)
        entity_scores, pair_scores = scores
        entity_loss, d_entities = super().get_loss(examples, entity_scores)
        ops, band = self.model.ops, pair_scores.dataXd
        width = band.shape[1] // 2
        cells = gold_pair_cells(examples, self.key, self.relation_labels, width, self.gold_span_problems)
        valid = pair_mask(ops, pair_scores.lengths, width)
        pair_loss, d_pairs = sparse_zlpr_loss(ops, band, valid, ops.asarray(cells, dtype="int64"), pair_scores.lengths)
        # sparse_zlpr_loss averages over (doc, channel) rows, i.e. over head AND tail pointers;
        # the reference sums the two pointers' means: twice that.
        return entity_loss + 2 * pair_loss, (d_entities, Ragged(2 * d_pairs, pair_scores.lengths))

    def initialize(
        self,
        get_examples: Callable[[], Iterable[Example]],
        *,
        nlp: Optional[Language] = None,
        labels: Optional[List[str]] = None,
        relation_labels: Optional[List[str]] = None,
    ) -> None:
        """Set the entity and relation labels and size the model, from examples or lists of labels.

        get_examples (Callable[[], Iterable[Example]]): Representative examples;
            their reference doc.spans[spans_key] give the entity types and
            their gold relations (doc._.relations) the relation labels.
        nlp (Optional[Language]): The pipeline; its score weights are set.
        labels (Optional[List[str]]): The entity types.
        relation_labels (Optional[List[str]]): The relation labels.
        """
        validate_get_examples(get_examples, "GPLinker.initialize")
        if relation_labels is None:
            relation_labels = {record.label for eg in get_examples() for record in relation_offsets(eg.reference)}
        for label in sorted(relation_labels):
            self.add_relation_label(label)
        if not self.relation_labels:
            raise ValueError(
                f"[{self.name}] No relation labels to learn: no reference doc has relations in "
                f"doc._.relations. Check that the training data keeps them (DocBin(store_user_data=True), "
                f"as spacy_egp.convert writes), or pass `relation_labels`."
            )
        self.model.get_ref("pair_head").set_dim("nO", 2 * len(self.relation_labels))
        super().initialize(get_examples, nlp=nlp, labels=labels)

    def _set_score_weights(self, nlp: Language) -> None:
        # the relation F selects the model; the entity figures are shown beside it
        weights = RELATION_SCORE_WEIGHTS | {f"spans_{self.key}_f": 0.0}
        meta = nlp.get_pipe_meta(self.name)
        nlp._pipe_meta[self.name] = dataclasses.replace(meta, default_score_weights=weights, scores=list(weights))

"""The `gplinker` pipeline component: entities in doc.spans and relations in doc._.relations.

GPLinker (spacy_egp.ml.gplinker_model) scores entity spans with an EGP head and,
for every relation type, the pairs (head start, tail start) and (head end,
tail end) with two pair pointers. `set_annotations` writes the entities (typed,
possibly nested) to doc.spans[spans_key] exactly as the efficient_globalpointer
component does (both are a spacy_egp.pipeline.efficient_globalpointer.GlobalPointerPipe), then keeps a
relation (s, r, o) between two predicted entities when both its head pair and
its tail pair reach the relation's threshold.

`get_loss` is ZLPR (spacy_egp.ml.loss) weighted as the reference's
`globalpointer_crossentropy` (`K.mean(K.sum(loss, axis=1))` for each of the
three outputs, added by Keras): per doc, the SUM of the ZLPR of every row
(entity type, head-pointer relation type, tail-pointer relation type),
averaged over the batch's docs. So a doc's entity rows and pair rows weigh
K : R : R (K entity types, R relation types). `loss_weighting = "per_pointer"`
weighs the three pointers 1 : 1 : 1 instead (each one's mean over its rows),
the ablation that README's relation section measures.

With entity_roles, the entity head has the reference's two untyped channels
(ROLE_LABELS: relation heads and relation tails), learned from the relation
arguments only, for data whose entities carry no types.

Relations live in doc.user_data as plain token offsets (spacy_egp.pipeline.
relations.RelationOffsets), so Doc.to_bytes and DocBin(store_user_data=True)
keep them, gold ones included; `doc._.relations` reads them as Relation records
of Spans.

Scores and thresholds are probabilities, as in the efficient_globalpointer
component: a relation's score is the lower of its two pairs' probabilities.
"""

import copy
import warnings
from collections import defaultdict
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

import numpy
from spacy.language import Language
from spacy.scorer import PRFScore
from spacy.tokens import Doc
from spacy.training import Example, validate_get_examples
from spacy.util import registry
from spacy.vocab import Vocab
from thinc.api import Config, Model
from thinc.types import Ragged

from ..ml.gplinker_model import DEFAULT_MAX_PAIR_DISTANCE, GPLinkerScores
from ..ml.heads import pair_mask
from ..ml.loss import sparse_zlpr_loss
from ..ml.util import doc_starts
from ..ml.models import DEFAULT_HEAD_SIZE, DEFAULT_MAX_SPAN_LENGTH, DEFAULT_SPAN_PRIOR
from .decoding import cells_above, decode_relations
from .efficient_globalpointer import (
    DEFAULT_MAX_SPANS_PER_TOKEN,
    DEFAULT_TOK2VEC,
    POINTER_PIPE_DEFAULTS,
    DEFAULT_SPANS_KEY,
    GlobalPointerPipe,
    _check_positive,
    _check_threshold,
    probability_to_logit,
    sigmoid,
    spans_score,
)
from .gold import gold_pair_cells, pair_of_cells, role_gold_spans
from .nesting import Span3
from .relations import RELATIONS_KEY, RelationOffsets, relation_offsets, store_relation_offsets

# The efficient_globalpointer component's default tok2vec, with GPLinker's heads
DEFAULT_GPLINKER_MODEL = Config(
    {
        "@architectures": "spacy_egp.GPLinker.v2",
        "head_size": DEFAULT_HEAD_SIZE,
        "use_rope": True,
        "max_span_length": DEFAULT_MAX_SPAN_LENGTH,
        "span_prior": DEFAULT_SPAN_PRIOR,
        "pair_head_size": DEFAULT_HEAD_SIZE,
        "max_pair_distance": DEFAULT_MAX_PAIR_DISTANCE,
        "pair_pointer": "egp",
        "tok2vec": copy.deepcopy(DEFAULT_TOK2VEC),
    }
)
RELATION_SCORE_WEIGHTS = {"relations_f": 1.0, "relations_p": 0.0, "relations_r": 0.0}
# At most this many head pairs, and as many tail pairs, per token of a doc above
# threshold (CoNLL04 has ~0.05 relations per token); bounds decoding's memory.
DEFAULT_MAX_PAIRS_PER_TOKEN = 4.0
# The entity channels of entity_roles: the relations' heads (the reference's subjects) and tails (objects).
ROLE_LABELS = ("HEAD", "TAIL")
# How get_loss weighs the three pointers: bojone/GPLinker's sum of rows (K : R : R), or 1 : 1 : 1.
LOSS_WEIGHTINGS = ("reference", "per_pointer")


# --------------------------------------------------------------------------
# Scorer
# --------------------------------------------------------------------------


def relation_score_weights(spans_key: str) -> Dict[str, float]:
    """The score weights of a gplinker whose entities go to doc.spans[spans_key].

    The relation F selects the model; the entity F is shown beside it (weight 0).
    """
    return RELATION_SCORE_WEIGHTS | {f"spans_{spans_key}_f": 0.0}


def relation_key(doc: Doc, record: RelationOffsets, typed: bool = True) -> Tuple:
    """A relation as a comparable key: character offsets, so that tokenization does not matter.

    typed: the arguments' entity types are part of the key (the strict score).
    """
    head, tail = doc[record.head_start : record.head_end], doc[record.tail_start : record.tail_end]
    head_key = (head.start_char, head.end_char) + ((record.head_label,) if typed else ())
    tail_key = (tail.start_char, tail.end_char) + ((record.tail_label,) if typed else ())
    return (head_key, record.label, tail_key)


def relation_keys(doc: Doc, typed: bool) -> List[Tuple]:
    """The doc's relations as comparable keys (relation_key)."""
    return [relation_key(doc, record, typed) for record in relation_offsets(doc)]


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
    relations_args_found: the share of gold relations whose two arguments are
    both predicted entities (boundaries and types, doc.spans[spans_key]): the
    recall that linking could reach. relations_linked_given_args: the share
    of those that are predicted (strict). The two separate entity errors
    from linking errors. relations_per_type: strict P/R/F per relation label. Arguments are
    compared by character offsets, so predicted and gold tokenization may
    differ. Examples whose reference doc has no relations stored at all
    (not even an empty list) are left out of the relation figures. The entity scores are those of the efficient_globalpointer
    component (spans_{key}_p/_r/_f, spans_{key}_per_type).

    RETURNS (Dict[str, Any]): The scores.
    """
    examples = list(examples)
    strict, untyped = PRFScore(), PRFScore()
    with_args = linked = 0
    per_type: Dict[str, PRFScore] = defaultdict(PRFScore)
    # as spaCy's has_annotation: a reference doc that never had relations set is not scored
    for eg in (eg for eg in examples if RELATIONS_KEY in eg.reference.user_data):
        untyped.score_set(set(relation_keys(eg.predicted, False)), set(relation_keys(eg.reference, False)))
        predicted, gold = set(relation_keys(eg.predicted, True)), set(relation_keys(eg.reference, True))
        strict.score_set(predicted, gold)
        entities = {(s.start_char, s.end_char, s.label_) for s in eg.predicted.spans.get(spans_key, [])}
        args_found = {key for key in gold if key[0] in entities and key[2] in entities}
        with_args, linked = with_args + len(args_found), linked + len(args_found & predicted)
        for label in {key[1] for key in predicted | gold}:
            per_type[label].score_set({k for k in predicted if k[1] == label}, {k for k in gold if k[1] == label})
    scores = spans_score(examples, spans_key=spans_key, **kwargs)
    scores.update(_prf(strict, "relations"))
    scores.update(_prf(untyped, "relations_untyped"))
    n_gold = strict.tp + strict.fn
    scores["relations_args_found"] = with_args / n_gold if n_gold else None
    scores["relations_linked_given_args"] = linked / with_args if with_args else None
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
        **POINTER_PIPE_DEFAULTS,
        "relation_threshold": 0.5,
        "relation_thresholds": {},
        "max_pairs_per_token": DEFAULT_MAX_PAIRS_PER_TOKEN,
        "entity_roles": False,
        "loss_weighting": "reference",
        "scorer": {"@scorers": "spacy_egp.relations_scorer.v1"},
    },
    # Fixed for the default key, as spaCy's spancat (see efficient_globalpointer)
    default_score_weights=relation_score_weights(DEFAULT_SPANS_KEY),
)
def make_gplinker(
    nlp: Language,
    name: str,
    model: Model[List[Doc], GPLinkerScores],
    spans_key: str,
    threshold: float,
    thresholds: Dict[str, float],
    relation_threshold: float,
    relation_thresholds: Dict[str, float],
    max_spans_per_token: Optional[float],
    max_pairs_per_token: Optional[float],
    head_lr_scale: float,
    entity_roles: bool,
    loss_weighting: str,
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
        relation_thresholds=relation_thresholds,
        max_spans_per_token=max_spans_per_token,
        max_pairs_per_token=max_pairs_per_token,
        head_lr_scale=head_lr_scale,
        entity_roles=entity_roles,
        loss_weighting=loss_weighting,
        ents_mode=ents_mode,
        scorer=scorer,
    )


class GPLinker(GlobalPointerPipe[GPLinkerScores]):
    """Joint entity and relation extraction with GPLinker.

    The entity part is the efficient_globalpointer component's (the common
    base GlobalPointerPipe: labels, thresholds, the span cap, the span loss
    and decoding, head_lr_scale, serialization); this class adds the relation
    labels and thresholds, the pair pointers' loss and the relation decoding.
    Its model (spacy_egp.GPLinker.v2) returns GPLinkerScores: the entity band
    and the pair band.
    """

    entity_head_ref = "entity_head"

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
        relation_thresholds: Optional[Dict[str, float]] = None,
        max_spans_per_token: Optional[float] = DEFAULT_MAX_SPANS_PER_TOKEN,
        max_pairs_per_token: Optional[float] = DEFAULT_MAX_PAIRS_PER_TOKEN,
        head_lr_scale: float = 1.0,
        entity_roles: bool = False,
        loss_weighting: str = "reference",
        ents_mode: bool = False,
        scorer: Optional[Callable] = relations_score,
    ) -> None:
        """Initialize the component.

        vocab (Vocab): The shared vocabulary.
        model (Model[List[Doc], GPLinkerScores]): spacy_egp.GPLinker.v2 (or v1).
        name (str): The component instance name, used as the key in losses.
        spans_key (str): Key of doc.spans for the entities, predicted and
            gold; relation arguments must be gold entities under this key
            (unless entity_roles).
        threshold (float): The probability at or above which a span is an entity.
        thresholds (Dict[str, float]): Per-entity-type thresholds that override `threshold`.
        relation_threshold (float): The probability that both a relation's
            head pair and its tail pair must reach (0.5: the reference's logit 0).
        relation_thresholds (Dict[str, float]): Per-relation-type thresholds
            that override `relation_threshold` (python -m spacy_egp.tune sets them).
        max_spans_per_token (Optional[float]): At most ceil(this * len(doc))
            entities per doc (the highest-scoring ones); None: no cap.
        max_pairs_per_token (Optional[float]): At most ceil(this * len(doc))
            head pairs, and as many tail pairs, per doc above threshold, over
            all relation types (the highest-scoring ones, with a warning when
            the cap bites); None: no cap at all.
        head_lr_scale (float): All three pointers learn at the optimizer's
            rate times this; the tok2vec at the rate itself.
        entity_roles (bool): The reference's untyped entity channels: the
            entity labels are ROLE_LABELS (relation heads, relation tails),
            learned from the relation arguments only, and a relation links a
            predicted HEAD span to a predicted TAIL span; its arguments carry
            no entity type (label ""). For data whose entities have no types.
            False: the entities of doc.spans[spans_key] with their types.
        loss_weighting (str): "reference": per doc the sum of the ZLPR of every
            row (entity types, then each pair pointer's relation types), as
            bojone/GPLinker; "per_pointer": the entity pointer, the head-pair
            pointer and the tail-pair pointer each contribute the mean of its
            rows (1 : 1 : 1).
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
        self.cfg["relation_thresholds"] = {
            str(label): _check_threshold(f"relation_thresholds[{label!r}]", value)
            for label, value in (relation_thresholds or {}).items()
        }
        self.cfg["max_pairs_per_token"] = (
            None if max_pairs_per_token is None
            else _check_positive("max_pairs_per_token", max_pairs_per_token, " (or null for no cap)")
        )
        self.cfg["entity_roles"] = bool(entity_roles)
        if loss_weighting not in LOSS_WEIGHTINGS:
            raise ValueError(f"gplinker: loss_weighting = {loss_weighting!r} is not one of "
                             f"{', '.join(map(repr, LOSS_WEIGHTINGS))}: set one of them in the config")
        self.cfg["loss_weighting"] = loss_weighting

    @property
    def max_pair_distance(self) -> int:
        """The farthest apart (in tokens) two arguments' starts, and ends, may be (the pair head's)."""
        return self.model.get_ref("pair_head").attrs["max_pair_distance"]

    @property
    def relation_labels(self) -> Tuple[str, ...]:
        """The relation labels, in the order of the pair band's channels."""
        return tuple(self.cfg["relation_labels"])

    @property
    def entity_roles(self) -> bool:
        """Whether the entity labels are the untyped roles (ROLE_LABELS) rather than entity types."""
        return bool(self.cfg.get("entity_roles", False))

    def add_relation_label(self, label: str) -> int:
        """Add a relation label before initialization. RETURNS (int): 1 if new, else 0."""
        return self._add_to_labels(label, "relation_labels", "pair_head", kind="relation label")

    def relation_label_thresholds(self) -> Dict[str, float]:
        """The probability threshold of each relation label."""
        per_label = self.cfg.get("relation_thresholds", {})
        return {label: float(per_label.get(label, self.cfg["relation_threshold"])) for label in self.relation_labels}

    def relation_logit_thresholds(self) -> numpy.ndarray:
        """The relation thresholds as float64 logits, in relation label order."""
        thresholds = self.relation_label_thresholds()
        return numpy.asarray([probability_to_logit(thresholds[label]) for label in self.relation_labels])

    def pair_caps(self, lengths: Iterable[int], n_cells_per_doc_token: int) -> numpy.ndarray:
        """The most head pairs (and tail pairs) each doc may keep; no cap: every cell of the doc."""
        per_token = self.cfg.get("max_pairs_per_token", DEFAULT_MAX_PAIRS_PER_TOKEN)
        lengths = numpy.asarray(list(lengths), dtype="int64")
        if per_token is None:
            return lengths * max(1, n_cells_per_doc_token)
        return numpy.ceil(lengths * per_token).astype("int64")

    def predict(self, docs: Iterable[Doc]) -> GPLinkerScores:
        """Score every candidate entity and argument pair of the docs, without modifying them.

        RETURNS (GPLinkerScores): The entity band (T, W, K) and the pair band (T, 2P, 2R).
        """
        return self._predict_scores(list(docs))

    def span_band(self, scores: GPLinkerScores) -> Ragged:
        """The entity band of the scores."""
        return scores.entities

    def _empty_scores(self, lengths: numpy.ndarray) -> GPLinkerScores:
        empty_pairs = Ragged(self.model.ops.alloc3f(0, 0, 2 * len(self.relation_labels)), lengths)
        return GPLinkerScores(self._empty_span_band(lengths), empty_pairs)

    def set_annotations(self, docs: Iterable[Doc], scores: GPLinkerScores) -> None:
        """Write the entities to doc.spans[spans_key] and the relations to doc._.relations.

        A relation r from entity s to entity o is kept when its head pair
        (s.start, o.start) and tail pair (s.end - 1, o.end - 1) both reach
        r's threshold; both arguments must be predicted entities, each boundary
        once, with its highest-scoring type (see decode_relations).
        """
        docs = list(docs)
        self._write_spans(docs, scores.entities)
        pairs = self.pairs_above(scores.pairs, self.relation_logit_thresholds())
        for doc, (head_pairs, tail_pairs) in zip(docs, pairs):
            store_relation_offsets(doc, self.decode(doc, head_pairs, tail_pairs))

    def decode(self, doc: Doc, head_pairs: Dict, tail_pairs: Dict) -> List[RelationOffsets]:
        """The relations of a doc whose entities are set, from its kept pairs.

        head_pairs, tail_pairs (Dict): {(relation, first token, second token): probability}.
        """
        group = doc.spans[self.key]
        scores = group.attrs.get("scores")
        entities = [(span.start, span.end, span.label_) for span in group]
        entity_scores = None if scores is None else [float(score) for score in scores]
        if self.entity_roles:
            head_role, tail_role = ROLE_LABELS
            heads = [(s, e, "") for s, e, label in entities if label == head_role]
            tails = [(s, e, "") for s, e, label in entities if label == tail_role]
            relations = decode_relations(heads, head_pairs, tail_pairs, tails=tails)
        else:
            relations = decode_relations(entities, head_pairs, tail_pairs, entity_scores=entity_scores)
        return [RelationOffsets(*head, self.relation_labels[r], *tail, score) for head, r, tail, score in relations]

    def pairs_above(
        self, pair_scores: Ragged, logit_thresholds: numpy.ndarray, *, capped: bool = True, logits: bool = False
    ) -> List[Tuple[Dict, Dict]]:
        """Per doc, the head and tail pairs at or above their relation's threshold (logits, in label order).

        RETURNS (List[Tuple[Dict, Dict]]): {(relation, first, second): probability} of the head pairs and
            of the tail pairs. capped: at most max_pairs_per_token of each per token of a doc.
            logits: the pairs' logits instead of their probabilities (threshold tuning).
        """
        ops, n_relations = self.model.ops, len(self.relation_labels)
        lengths = ops.to_numpy(pair_scores.lengths)
        band = ops.to_numpy(pair_scores.dataXd)
        pairs: List[Tuple[Dict, Dict]] = [({}, {}) for _ in lengths]
        starts = doc_starts(numpy, lengths)
        all_cells = lengths * band.shape[1] * max(1, n_relations)
        caps = self.pair_caps(lengths, band.shape[1] * max(1, n_relations)) if capped else all_cells
        for pointer in (0, 1):
            channels = slice(pointer * n_relations, (pointer + 1) * n_relations)
            cells = cells_above(band[:, :, channels], lengths, logit_thresholds, caps)
            if cells.capped_docs:
                self._warn_pairs_capped(cells.capped_docs, lengths)
            first, second = pair_of_cells(cells.token, cells.width, band.shape[1] // 2)
            doc_of = numpy.searchsorted(starts, cells.token, side="right") - 1
            for doc, a, b, relation, probability in zip(
                doc_of.tolist(), first.tolist(), second.tolist(), cells.label.tolist(),
                (cells.logit if logits else sigmoid(cells.logit)).tolist(),
            ):
                start = int(starts[doc])
                pairs[doc][pointer][(relation, a - start, b - start)] = probability
        return pairs

    def _warn_pairs_capped(self, capped: List[int], lengths: numpy.ndarray) -> None:
        warnings.warn(
            f"[{self.name}] {len(capped)} doc(s) had more argument pairs above threshold than the cap "
            f"max_pairs_per_token={self.cfg['max_pairs_per_token']} allows and kept their highest-scoring "
            f"ones (the first: {int(lengths[capped[0]])} tokens). The relation threshold is probably too "
            f"low for this model; raise it, or raise or null the cap.",
            stacklevel=4,
        )

    def gold_spans(self, eg: Example) -> List[Span3]:
        """The entity head's gold spans: doc.spans[spans_key]'s, or with entity_roles the relation arguments."""
        if self.entity_roles:
            return role_gold_spans(eg, ROLE_LABELS, self.gold_span_problems)
        return super().gold_spans(eg)

    def get_loss(self, examples: Iterable[Example], scores: GPLinkerScores) -> Tuple[float, GPLinkerScores]:
        """ZLPR of the entity band and of the pair band against the gold entities and relations.

        Weighted as the reference (loss_weighting "reference"): per doc the sum
        over all rows (entity labels, then head and tail pointers' relation
        types), averaged over the batch's docs; or, "per_pointer", each of the
        three pointers' mean over its rows.

        RETURNS (Tuple[float, GPLinkerScores]): The loss and its gradient for both bands.
        """
        examples = list(examples)
        entity_loss, d_entities = self._span_loss(examples, scores.entities)
        ops, pair_scores = self.model.ops, scores.pairs
        band = pair_scores.dataXd
        width = band.shape[1] // 2
        cells = gold_pair_cells(
            examples, self.key, self.relation_labels, width, self.gold_span_problems,
            check_arguments=not self.entity_roles,
        )
        valid = pair_mask(ops, pair_scores.lengths, width)
        pair_loss, d_pairs = sparse_zlpr_loss(ops, band, valid, ops.asarray(cells, dtype="int64"), pair_scores.lengths)
        entity_weight, pair_weight = self._loss_weights(band.shape[2])
        loss = entity_loss * entity_weight + pair_loss * pair_weight
        d_scores = GPLinkerScores(
            Ragged(d_entities * entity_weight, scores.entities.lengths),
            Ragged(d_pairs * pair_weight, pair_scores.lengths),
        )
        return loss, d_scores

    def _loss_weights(self, n_pair_rows: int) -> Tuple[int, int]:
        """The factors of the entity loss and of the pair loss, each a mean over its (doc, row) pairs."""
        if self.cfg.get("loss_weighting", "reference") == "per_pointer":
            # the pair band holds the head pointer's rows and the tail pointer's: its mean is half their sum
            return 1, 2
        # the reference sums the rows of a doc and averages over docs: each mean times its rows per doc
        return len(self.labels), n_pair_rows

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
        labels (Optional[List[str]]): The entity types (with entity_roles: ROLE_LABELS, fixed).
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
        if self.entity_roles:
            if labels is not None and sorted(labels) != sorted(ROLE_LABELS):
                raise ValueError(
                    f"[{self.name}] With entity_roles the entity labels are {list(ROLE_LABELS)} (relation "
                    f"heads and tails), got labels={list(labels)}. Drop `labels`, or set entity_roles = false "
                    f"to learn entity types."
                )
            labels = list(ROLE_LABELS)
        self.model.get_ref("pair_head").set_dim("nO", 2 * len(self.relation_labels))
        super().initialize(get_examples, nlp=nlp, labels=labels)

    def score_weights(self) -> Dict[str, float]:
        """The score weights for this component's spans_key (the factory's default_score_weights for "sc")."""
        return relation_score_weights(self.key)

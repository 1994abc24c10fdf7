"""The relation baseline a spaCy user can build today: spaCy `ner`, then a pairwise relation classifier.

This is the benchmark's point of comparison for `gplinker`, not one of the
package's components. The classifier is built the way explosion's
rel_component tutorial (explosion/projects, tutorials/rel_component) builds
one:

- candidate instances: every ordered pair of distinct entities of doc.ents
  whose starts lie at most `max_pair_distance` tokens apart;
- each entity's token vectors from the shared tok2vec (a listener) pooled to
  one vector (`reduce_mean.v1`), head and tail vectors concatenated;
- a classification layer (an optional ReLU hidden layer, then a linear layer)
  with a sigmoid per relation type, so a pair may carry several relations.

Two departures from the tutorial, both in the baseline's favour: the loss is
binary cross-entropy on the logits (the tutorial backpropagates a squared
error through the sigmoid, which vanishes on confident mistakes), and the
gradient of an entity's pooled vector is summed into its tokens rather than
averaged over the instances that share them. As in the tutorial, the classifier
learns from the gold entities (aligned to the predicted tokens) and predicts
from the entities `ner` wrote to doc.ents.

Relations are written to doc._.relations in gplinker's format (see
spacy_egp.pipeline.relations), and the entities they were drawn from to
doc.spans[spans_key], so that spacy_egp.relations_scorer.v1 scores both
pipelines alike.
"""

from itertools import islice
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy
from spacy.language import Language
from spacy.pipeline import TrainablePipe
from spacy.tokens import Doc, Span
from spacy.training import Example, validate_examples, validate_get_examples
from spacy.util import registry
from spacy.vocab import Vocab
from thinc.api import Linear, Model, Optimizer, Relu, chain, reduce_mean, set_dropout_rate
from thinc.types import Floats2d, Ints2d, Ragged

from ..ml.util import doc_starts
from ..pipeline.efficient_globalpointer import finish_update_after_tok2vec
from ..pipeline.gplinker import RELATION_SCORE_WEIGHTS
from ..pipeline.relations import RelationOffsets, relation_offsets, store_relation_offsets

FACTORY = "bench_relation_classifier"
ARCHITECTURE = "spacy_egp.bench_rel_classifier.v1"
# Each row of a doc's instance array: head start, head end, tail start, tail end (token offsets, end exclusive)
PairArrays = List[Ints2d]
EntityPair = Tuple[Span, Span]
CharKey = Tuple[int, int, int, int]


# --------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------


@registry.architectures(ARCHITECTURE)
def build_relation_classifier(
    tok2vec: Model[List[Doc], List[Floats2d]],
    pooling: Optional[Model[Ragged, Floats2d]] = None,
    hidden_width: int = 0,
    nO: Optional[int] = None,
) -> Model[Tuple[List[Doc], PairArrays], Floats2d]:
    """The rel_component tutorial's pair classifier: pooled entity vectors, concatenated, classified.

    tok2vec (Model[List[Doc], List[Floats2d]]): The token vectors, usually a
        listener of the pipeline's shared tok2vec or transformer.
    pooling (Optional[Model[Ragged, Floats2d]]): Pools an entity's token
        vectors into one; None: reduce_mean, as in the tutorial.
    hidden_width (int): Width of a ReLU hidden layer before the output layer;
        0: the tutorial's single linear layer.
    nO (Optional[int]): The number of relation types; set by the component.
    RETURNS (Model[Tuple[List[Doc], List[Ints2d]], Floats2d]): One row of
        logits (one per relation type) per candidate pair, in the order of the
        pair arrays.
    """
    if isinstance(hidden_width, bool) or not isinstance(hidden_width, int) or hidden_width < 0:
        raise ValueError(f"hidden_width must be a width >= 0 (0: no hidden layer), got {hidden_width!r}.")
    pooling = pooling if pooling is not None else reduce_mean()
    pair_vectors = Model(
        "bench_rel_pair_vectors",
        _pair_vectors_forward,
        init=_pair_vectors_init,
        layers=[tok2vec, pooling],
        refs={"tok2vec": tok2vec, "pooling": pooling},
    )
    output_layer = Linear(nO=nO)
    classifier = chain(Relu(nO=hidden_width), output_layer) if hidden_width else output_layer
    model = chain(pair_vectors, classifier)
    model.set_ref("tok2vec", tok2vec)
    model.set_ref("classifier", classifier)
    model.set_ref("output_layer", output_layer)
    return model


def _pair_vectors_init(model: Model, X: Optional[Tuple[List[Doc], PairArrays]] = None, Y: Any = None) -> None:
    if X is not None:
        model.get_ref("tok2vec").initialize(X=X[0])


def _pair_vectors_forward(
    model: Model, inputs: Tuple[List[Doc], PairArrays], is_train: bool
) -> Tuple[Floats2d, Callable]:
    """(docs, pair arrays) -> (n_pairs, 2 * width): head and tail entity vectors side by side."""
    docs, pairs = inputs
    ops = model.ops
    tokvecs, backprop_tokvecs = model.get_ref("tok2vec")(docs, is_train)
    doc_lengths = [len(vectors) for vectors in tokvecs]
    tokens = ops.flatten(tokvecs) if tokvecs else ops.alloc2f(0, 0)
    width = tokens.shape[1]
    # Every pair contributes two segments, head then tail, so that consecutive pooled rows concatenate.
    starts = doc_starts(numpy, doc_lengths)
    segments = [
        (offset + start, offset + end)
        for offset, doc_pairs in zip(starts, pairs)
        for row in ops.to_numpy(doc_pairs).reshape(-1, 4)
        for start, end in ((row[0], row[1]), (row[2], row[3]))
    ]
    indices = ops.asarray1i([i for start, end in segments for i in range(start, end)])
    lengths = ops.asarray1i([end - start for start, end in segments])
    if len(segments):
        pooled, backprop_pooled = model.get_ref("pooling")(Ragged(tokens[indices], lengths), is_train)
    else:
        pooled, backprop_pooled = ops.alloc2f(0, width), None
    pair_vectors = ops.reshape2f(pooled, -1, 2 * width)

    def backprop(d_pair_vectors: Floats2d) -> Any:
        d_tokens = ops.alloc2f(*tokens.shape)
        if backprop_pooled is not None:
            d_rows = backprop_pooled(ops.reshape2f(d_pair_vectors, -1, width)).dataXd
            # summed: a token in several instances gets each instance's gradient
            ops.scatter_add(d_tokens, indices, d_rows)
        return backprop_tokvecs(ops.unflatten(d_tokens, ops.asarray1i(doc_lengths)))

    return pair_vectors, backprop


# --------------------------------------------------------------------------
# Candidate pairs and gold labels
# --------------------------------------------------------------------------


def candidate_pairs(entities: Sequence[Span], max_pair_distance: int) -> List[EntityPair]:
    """The tutorial's instances: ordered pairs of distinct entities, starts at most max_pair_distance apart."""
    return [
        (head, tail)
        for head in entities
        for tail in entities
        if head is not tail and abs(head.start - tail.start) <= max_pair_distance
    ]


def pair_array(pairs: Sequence[EntityPair]) -> numpy.ndarray:
    """The pairs as rows (head start, head end, tail start, tail end)."""
    rows = [(head.start, head.end, tail.start, tail.end) for head, tail in pairs]
    return numpy.asarray(rows, dtype="int32").reshape(-1, 4)


def _char_key(head: Span, tail: Span) -> CharKey:
    # character offsets: the predicted and the reference doc may be tokenized differently
    return head.start_char, head.end_char, tail.start_char, tail.end_char


def gold_relation_labels(reference: Doc) -> Dict[CharKey, set]:
    """The gold relation labels of each (head, tail) argument pair, by character offsets."""
    labels: Dict[CharKey, set] = {}
    for record in relation_offsets(reference):
        head, tail = reference[record.head_start : record.head_end], reference[record.tail_start : record.tail_end]
        labels.setdefault(_char_key(head, tail), set()).add(record.label)
    return labels


# --------------------------------------------------------------------------
# The component
# --------------------------------------------------------------------------


@Language.factory(
    FACTORY,
    requires=["doc.ents"],
    assigns=["doc._.relations", "doc.spans"],
    default_config={
        "model": {
            "@architectures": ARCHITECTURE,
            "tok2vec": {"@architectures": "spacy.Tok2VecListener.v1", "width": 96, "upstream": "*"},
            "hidden_width": 0,
        },
        "threshold": 0.5,
        "max_pair_distance": 100,
        "spans_key": "sc",
        "head_lr_scale": 1.0,
        "scorer": {"@scorers": "spacy_egp.relations_scorer.v1"},
    },
    default_score_weights=RELATION_SCORE_WEIGHTS,
)
def make_relation_classifier(
    nlp: Language,
    name: str,
    model: Model[Tuple[List[Doc], PairArrays], Floats2d],
    threshold: float,
    max_pair_distance: int,
    spans_key: Optional[str],
    head_lr_scale: float,
    scorer: Optional[Callable],
) -> "RelationClassifier":
    """Create the benchmark's relation classifier (see RelationClassifier)."""
    return RelationClassifier(
        nlp.vocab, model, name, threshold=threshold, max_pair_distance=max_pair_distance,
        spans_key=spans_key, head_lr_scale=head_lr_scale, scorer=scorer,
    )


class RelationClassifier(TrainablePipe):
    """A sigmoid per relation type over candidate pairs of doc.ents (the rel_component tutorial's design)."""

    def __init__(
        self,
        vocab: Vocab,
        model: Model[Tuple[List[Doc], PairArrays], Floats2d],
        name: str = FACTORY,
        *,
        threshold: float = 0.5,
        max_pair_distance: int = 100,
        spans_key: Optional[str] = "sc",
        head_lr_scale: float = 1.0,
        scorer: Optional[Callable] = None,
    ) -> None:
        """Initialize the component.

        vocab (Vocab): The shared vocabulary.
        model (Model): spacy_egp.bench_rel_classifier.v1.
        name (str): The component instance name, used as the key in losses.
        threshold (float): The probability at or above which a pair holds a relation type.
        max_pair_distance (int): Candidate pairs' starts are at most this many tokens apart.
        spans_key (Optional[str]): Also write doc.ents to doc.spans[spans_key],
            where gplinker's entities are, so one scorer scores both; None: don't.
        head_lr_scale (float): The classifier's own layers learn at the
            optimizer's rate times this (the shared encoder at the rate itself),
            gplinker's setting for a pretrained encoder.
        scorer (Optional[Callable]): The scoring method (spacy_egp.relations_scorer.v1).
        """
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold must be a probability strictly between 0 and 1, got {threshold!r}.")
        if isinstance(max_pair_distance, bool) or not isinstance(max_pair_distance, int) or max_pair_distance < 0:
            raise ValueError(f"max_pair_distance must be a number of tokens >= 0, got {max_pair_distance!r}.")
        if not head_lr_scale > 0:
            raise ValueError(f"head_lr_scale must be > 0, got {head_lr_scale!r}.")
        self.vocab = vocab
        self.model = model
        self.name = name
        self.scorer = scorer
        self.cfg: Dict[str, Any] = {
            "labels": [], "threshold": float(threshold), "max_pair_distance": max_pair_distance,
            "spans_key": spans_key, "head_lr_scale": float(head_lr_scale),
        }

    @property
    def labels(self) -> Tuple[str, ...]:
        """The relation types, in the order of the output columns."""
        return tuple(self.cfg["labels"])

    def add_label(self, label: str) -> int:
        """Add a relation type before initialization. RETURNS (int): 1 if new, else 0."""
        if not isinstance(label, str) or not label:
            raise ValueError(f"A relation label must be a non-empty string, got {label!r}.")
        if label in self.labels:
            return 0
        self.cfg["labels"] = list(self.labels) + [label]
        return 1

    def _pairs(self, entities: Sequence[Span]) -> List[EntityPair]:
        return candidate_pairs(list(entities), self.cfg["max_pair_distance"])

    def predict(self, docs: Iterable[Doc]) -> Floats2d:
        """The probability of every relation type for every candidate pair of doc.ents, pairs of all docs in order."""
        docs = list(docs)
        arrays = [self.model.ops.asarray2i(pair_array(self._pairs(doc.ents))) for doc in docs]
        if not any(len(doc) for doc in docs):
            return self.model.ops.alloc2f(0, len(self.labels))
        return self.model.ops.sigmoid(self.model.predict((docs, arrays)))

    def set_annotations(self, docs: Iterable[Doc], probabilities: Floats2d) -> None:
        """Write to doc._.relations every (pair, type) at or above the threshold; doc.ents to doc.spans[spans_key]."""
        probabilities = self.model.ops.to_numpy(probabilities)
        row = 0
        for doc in docs:
            records = []
            for head, tail in self._pairs(doc.ents):
                for column in numpy.flatnonzero(probabilities[row] >= self.cfg["threshold"]):
                    records.append(RelationOffsets(head.start, head.end, head.label_, self.labels[column],
                                                   tail.start, tail.end, tail.label_, float(probabilities[row, column])))
                row += 1
            store_relation_offsets(doc, records)
            if self.cfg["spans_key"]:
                doc.spans[self.cfg["spans_key"]] = list(doc.ents)

    def _training_pairs(self, example: Example) -> List[EntityPair]:
        """Candidate pairs of the gold entities, as spans of the predicted doc (the tutorial's gold-entity training)."""
        return self._pairs(example.get_aligned_spans_y2x(example.reference.ents))

    def _truths(self, examples: Sequence[Example]) -> numpy.ndarray:
        rows = []
        for example in examples:
            gold = gold_relation_labels(example.reference)
            for head, tail in self._training_pairs(example):
                labels = gold.get(_char_key(head, tail), set())
                rows.append([label in labels for label in self.labels])
        return numpy.asarray(rows, dtype="float32").reshape(-1, len(self.labels))

    def update(
        self,
        examples: Iterable[Example],
        *,
        drop: float = 0.0,
        sgd: Optional[Optimizer] = None,
        losses: Optional[Dict[str, float]] = None,
    ) -> Dict[str, float]:
        """Learn from a batch of examples: the candidate pairs of their gold entities.

        RETURNS (Dict[str, float]): The updated losses dictionary.
        """
        losses = {} if losses is None else losses
        losses.setdefault(self.name, 0.0)
        examples = list(examples)
        validate_examples(examples, "RelationClassifier.update")
        if not any(len(eg.predicted) for eg in examples):
            return losses
        set_dropout_rate(self.model, drop)
        arrays = [self.model.ops.asarray2i(pair_array(self._training_pairs(eg))) for eg in examples]
        logits, backprop = self.model.begin_update(([eg.predicted for eg in examples], arrays))
        loss, d_logits = self.get_loss(examples, logits)
        backprop(d_logits)
        if sgd is not None:
            self.finish_update(sgd)
        losses[self.name] += loss
        return losses

    def get_loss(self, examples: Iterable[Example], logits: Floats2d) -> Tuple[float, Floats2d]:
        """Binary cross-entropy of each (pair, type), summed, and its gradient with respect to the logits."""
        truths = self.model.ops.asarray2f(self._truths(list(examples)))
        probabilities = self.model.ops.sigmoid(logits)
        eps = 1e-7
        loss = -(truths * self.model.ops.xp.log(probabilities + eps)
                 + (1 - truths) * self.model.ops.xp.log(1 - probabilities + eps)).sum()
        return float(loss), probabilities - truths

    def finish_update(self, sgd: Optimizer) -> None:
        """Update the weights: the classifier's own at head_lr_scale times the learning rate."""
        finish_update_after_tok2vec(self.model, sgd, self.cfg["head_lr_scale"])

    def initialize(
        self,
        get_examples: Callable[[], Iterable[Example]],
        *,
        nlp: Optional[Language] = None,
        labels: Optional[List[str]] = None,
    ) -> None:
        """Set the relation types (from the gold doc._.relations unless given) and size the model.

        get_examples (Callable[[], Iterable[Example]]): Representative examples
            with gold entities in reference doc.ents and gold relations.
        nlp (Optional[Language]): The pipeline.
        labels (Optional[List[str]]): The relation types.
        """
        validate_get_examples(get_examples, "RelationClassifier.initialize")
        if labels is None:
            labels = {record.label for eg in get_examples() for record in relation_offsets(eg.reference)}
        for label in sorted(labels):
            self.add_label(label)
        if not self.labels:
            raise ValueError(
                f"[{self.name}] No relation labels: no reference doc has gold relations in doc._.relations. "
                f"Convert the data with spacy_egp.convert (it keeps them in the DocBin's user_data), or pass "
                f"`labels` in [initialize.components.{self.name}]."
            )
        self.model.get_ref("output_layer").set_dim("nO", len(self.labels))
        sample = list(islice(get_examples(), 10))
        docs = [eg.reference for eg in sample]
        arrays = [self.model.ops.asarray2i(pair_array(self._pairs(doc.ents))) for doc in docs]
        self.model.initialize(X=(docs, arrays))

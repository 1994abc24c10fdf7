"""The `efficient_globalpointer` pipeline component: nested spans in doc.spans.

The model (spacy_egp.ml.models) maps a batch of docs to a band of span logits
(T, W, K): cell (t, w, a) is the span from token t to token t + w of label a.
`set_annotations` keeps every cell whose probability is at least its label's
threshold (compared once, as logits), at most `max_spans_per_token` per token
of a doc; `get_loss` maps the reference spans to band cells (spacy_egp.pipeline.gold)
and applies ZLPR (spacy_egp.ml.loss). With `distill_key` (a teacher's scored spans
on the reference docs) or `label_smoothing` it applies the soft-label ZLPR to
the targets of spacy_egp.pipeline.distill instead; both are off by default.

Scores and thresholds are probabilities, as in spaCy's spancat and span_finder:
`threshold` (default 0.5, the reference's logit 0) and the per-label
`thresholds` are in [0, 1], and attrs["scores"] holds the sigmoid of each
predicted span's logit, never below its label's threshold.
"""

import copy
import math
import warnings
from contextlib import contextmanager
from functools import partial
from itertools import islice
from pathlib import Path
from typing import Any, Callable, Dict, Generic, Iterable, Iterator, List, Optional, Tuple, TypeVar, Union

import numpy
from spacy.language import Language
from spacy.pipeline.trainable_pipe import TrainablePipe
from spacy.scorer import Scorer, get_ner_prf
from spacy.tokens import Doc, Span, SpanGroup
from spacy.training import Example, validate_examples, validate_get_examples
from spacy.util import registry
from spacy.vocab import Vocab
from thinc.api import Config, Model, Optimizer, set_dropout_rate
from thinc.types import Floats3d, Ragged

from .decoding import cells_above
from .distill import check_distill_settings, soft_targets
from .gold import GoldProblems, aligned_gold_spans, gold_cells, preview
from .heap import fix_mmap_threshold
from .nesting import Span3
from ..ml.heads import band_mask
from ..ml.models import DEFAULT_HEAD_SIZE, DEFAULT_MAX_SPAN_LENGTH, DEFAULT_SPAN_PRIOR, LR_SCALE_ATTR
from ..ml.loss import sparse_soft_zlpr_loss, sparse_zlpr_loss, zlpr_loss
from ..ml.util import doc_starts, probability_to_logit, sigmoid  # noqa: F401  (re-exported)

DEFAULT_SPANS_KEY = "sc"
# Enough for any nesting in the datasets here (at most ~0.5 gold spans per
# token); bounds decoding's memory when a threshold is too low for the model.
DEFAULT_MAX_SPANS_PER_TOKEN = 4.0

# spaCy's CNN tok2vec, narrower (spancat's default, with width 96)
default_tok2vec_config = """
[tok2vec]
@architectures = "spacy.Tok2Vec.v2"

[tok2vec.embed]
@architectures = "spacy.MultiHashEmbed.v2"
width = 96
rows = [5000, 1000, 2500, 1000]
attrs = ["NORM", "PREFIX", "SUFFIX", "SHAPE"]
include_static_vectors = false

[tok2vec.encode]
@architectures = "spacy.MaxoutWindowEncoder.v2"
width = ${tok2vec.embed.width}
window_size = 1
maxout_pieces = 3
depth = 4
"""
DEFAULT_TOK2VEC = Config().from_str(default_tok2vec_config)["tok2vec"]
# No `context` layer here, though the shipped configs have one: spaCy merges a user's model block into
# this default, so a fixed-width BiLSTM would outlive a tok2vec of another width (a transformer
# listener) and fail inside torch. Configs set it next to the tok2vec whose width it shares.
DEFAULT_EGP_MODEL = Config(
    {
        "@architectures": "spacy_egp.EfficientGlobalPointer.v2",
        "head_size": DEFAULT_HEAD_SIZE,
        "use_rope": True,
        "max_span_length": DEFAULT_MAX_SPAN_LENGTH,
        "span_prior": DEFAULT_SPAN_PRIOR,
        "tok2vec": copy.deepcopy(DEFAULT_TOK2VEC),
    }
)
# The settings efficient_globalpointer and gplinker share, with their defaults (the factories' default_config)
POINTER_PIPE_DEFAULTS = {
    "spans_key": DEFAULT_SPANS_KEY,
    "threshold": 0.5,
    "thresholds": {},
    "max_spans_per_token": DEFAULT_MAX_SPANS_PER_TOKEN,
    "head_lr_scale": 1.0,
    "ents_mode": False,
}


def spans_score(
    examples: Iterable[Example], *, spans_key: str = DEFAULT_SPANS_KEY, ents_mode: bool = False, **kwargs: Any
) -> Dict[str, Any]:
    """Micro and per-label P/R/F of the spans in doc.spans[spans_key], nested allowed.

    RETURNS (Dict[str, Any]): spans_{key}_p/_r/_f and spans_{key}_per_type;
        with ents_mode also ents_p/_r/_f and ents_per_type, scored as spaCy's ner.
    """
    examples = list(examples)
    scores = get_ner_prf(examples) if ents_mode else {}
    attr = f"spans_{spans_key}"
    return scores | Scorer.score_spans(
        examples,
        attr,
        getter=lambda doc, _: doc.spans.get(spans_key, []),
        has_annotation=lambda doc: spans_key in doc.spans,
        labeled=True,
        allow_overlap=True,
    )


@registry.scorers("spacy_egp.spans_scorer.v1")
def make_spans_scorer() -> Callable[..., Dict[str, Any]]:
    return spans_score


def score_weights_for(spans_key: str) -> Dict[str, float]:
    """The score weights of a component writing to doc.spans[spans_key]."""
    return {f"spans_{spans_key}_f": 1.0, f"spans_{spans_key}_p": 0.0, f"spans_{spans_key}_r": 0.0}


def score_weights_warning(name: str, spans_key: str, weights: Dict[str, float], configured: Dict[str, Any]) -> str:
    """What to say when [training.score_weights] lacks the weighted scores of a component's spans_key.

    name (str): The component's name.
    spans_key (str): Its spans_key.
    weights (Dict[str, float]): The score weights it needs for that key.
    configured (Dict[str, Any]): The pipeline's [training.score_weights].
    RETURNS (str): The message, with the config block that fixes it.
    """
    missing = [key for key, weight in weights.items() if weight and key not in configured]
    default_keys = [key for key in score_weights_for(DEFAULT_SPANS_KEY) if key in configured]
    lines = [f"{key} = {weight}" for key, weight in weights.items()] + [f"{key} = null" for key in default_keys]
    return (
        f"[{name}] spans_key is {spans_key!r}, but [training.score_weights] has no {', '.join(missing)}: the "
        f"component's default score weights name doc.spans[{DEFAULT_SPANS_KEY!r}] (as spaCy's spancat's), so "
        f"`spacy train` would leave this component out of the score that picks model-best (alone in the "
        f"pipeline: every checkpoint scores 0 and model-best is just the latest). Add to the config:\n\n"
        f"[training.score_weights]\n" + "\n".join(lines)
    )


@Language.factory(
    "efficient_globalpointer",
    assigns=["doc.spans", "doc.ents"],
    default_config={
        "model": DEFAULT_EGP_MODEL,
        **POINTER_PIPE_DEFAULTS,
        "max_span_length": None,
        "sparse_loss": False,
        "scorer": {"@scorers": "spacy_egp.spans_scorer.v1"},
        "distill_key": None,
        "distill_weight": 0.5,
        "label_smoothing": 0.0,
    },
    # Fixed for the default key, as spaCy's spancat: a config with another
    # spans_key sets [training.score_weights] (initialize warns when it does not).
    default_score_weights=score_weights_for(DEFAULT_SPANS_KEY),
)
def make_efficient_globalpointer(
    nlp: Language,
    name: str,
    model: Model[List[Doc], Ragged],
    spans_key: str,
    threshold: float,
    thresholds: Dict[str, float],
    max_spans_per_token: Optional[float],
    head_lr_scale: float,
    max_span_length: Optional[int],
    sparse_loss: bool,
    ents_mode: bool,
    scorer: Optional[Callable],
    distill_key: Optional[str],
    distill_weight: float,
    label_smoothing: float,
) -> "EfficientGlobalPointer":
    """Create an efficient_globalpointer component (see EfficientGlobalPointer).

    max_span_length is set on the model (spacy_egp.EfficientGlobalPointer.v2);
    here it is only accepted from configs of version 0.1 when it agrees.
    """
    _check_legacy_max_span_length(name, max_span_length, model)
    return EfficientGlobalPointer(
        nlp.vocab,
        model,
        name,
        spans_key=spans_key,
        threshold=threshold,
        thresholds=thresholds,
        max_spans_per_token=max_spans_per_token,
        head_lr_scale=head_lr_scale,
        sparse_loss=sparse_loss,
        ents_mode=ents_mode,
        scorer=scorer,
        distill_key=distill_key,
        distill_weight=distill_weight,
        label_smoothing=label_smoothing,
    )


def _check_threshold(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ValueError(
            f"{name} must be a probability between 0 and 1 (0.5 is the reference's "
            f"logit 0), got {value!r}. Thresholds were logits before spacy-egp 0.2: "
            f"convert a logit x with 1 / (1 + exp(-x))."
        )
    return float(value)


def _check_max_spans_per_token(value: Any) -> Optional[float]:
    return None if value is None else _check_positive("max_spans_per_token", value, " (or null for no cap)")


def _check_positive(name: str, value: Any, alternative: str = "") -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or not math.isfinite(value):
        raise ValueError(f"{name} must be a positive number{alternative}, got {value!r}.")
    return float(value)


def _check_legacy_max_span_length(name: str, value: Any, model: Model) -> None:
    model_value = model.get_ref("head").attrs["max_span_length"]
    if value is not None and value != model_value:
        raise ValueError(
            f"[{name}] max_span_length = {value!r} is set on the component, but the model "
            f"scores spans of up to {model_value!r} tokens. max_span_length now lives on the "
            f"model only: set it in [components.{name}.model] with "
            f'@architectures = "spacy_egp.EfficientGlobalPointer.v2" (or GlobalPointer.v2), '
            f"and remove it from [components.{name}]."
        )


def flat_selection(spans: List[Span], scores: numpy.ndarray) -> List[Span]:
    """A non-overlapping subset of spans: highest score first, ties to the longer span."""
    taken: set = set()
    selected = []
    for i in sorted(range(len(spans)), key=lambda i: (-scores[i], -len(spans[i]))):
        tokens = range(spans[i].start, spans[i].end)
        if taken.isdisjoint(tokens):
            taken.update(tokens)
            selected.append(spans[i])
    return sorted(selected, key=lambda span: span.start)


@contextmanager
def _clear_load_errors(name: str, source: str) -> Iterator[None]:
    # msgpack and Thinc fail deep inside on truncated data; say what happened instead.
    try:
        yield
    except Exception as error:
        raise ValueError(
            f"[{name}] Could not load the component from {source}: its data are truncated, "
            f"corrupt or from an incompatible version ({type(error).__name__}: {error}). "
            "Restore the saved pipeline or train it again."
        ) from error


# What a pointer component's model returns for a batch: the span band (a
# Ragged, efficient_globalpointer) or the span and pair bands (gplinker).
ScoresT = TypeVar("ScoresT")


def finish_update_after_tok2vec(model: Model, sgd: Optimizer, lr_scale: float) -> None:
    """Thinc's Model.finish_update, with `lr_scale` for every parameter outside model's ref "tok2vec".

    A node marked by spacy_egp.LearnRateScaled.v1 learns at its own scale times that.

    So a head (and a context layer of its own) on a pretrained encoder can learn
    faster than the encoder. Torch-wrapped layers (a BiLSTM context) are scaled
    too: their shim gets the optimizer with the scale bound.
    model (Model): A model with a ref "tok2vec" (a spaCy pipe's model).
    sgd (Optimizer): The optimizer.
    lr_scale (float): The factor on the learning rate outside the tok2vec.
    """
    tok2vec_ids = {node.id for node in model.get_ref("tok2vec").walk()}
    for node in model.walk():
        # a node of spacy_egp.LearnRateScaled.v1 carries a scale of its own
        scale = (1.0 if node.id in tok2vec_ids else lr_scale) * node.attrs.get(LR_SCALE_ATTR, 1.0)
        optimizer = sgd if scale == 1.0 else partial(sgd, lr_scale=scale)
        for shim in node.shims:
            shim.finish_update(optimizer)
        for name in node.param_names:
            if node.has_grad(name):
                param, _ = sgd((node.id, name), node.get_param(name), node.get_grad(name), lr_scale=scale)
                node.set_param(name, param)


class GlobalPointerPipe(TrainablePipe, Generic[ScoresT]):
    """What the efficient_globalpointer and gplinker components share: the span head's part.

    Labels, thresholds and the span cap; the span band's loss (ZLPR against
    the gold spans of `gold_spans`) and its decoding into
    doc.spans[spans_key]; head_lr_scale, update, initialize and loading. A
    subclass says what its model returns (ScoresT) through predict,
    set_annotations and get_loss, which keep their types, and gives the span
    band of its scores with `span_band`. `entity_head_ref` names the model's
    ref of the span head.
    """

    entity_head_ref = "head"

    def __init__(
        self,
        vocab: Vocab,
        model: Model[List[Doc], ScoresT],
        name: str = "efficient_globalpointer",
        *,
        spans_key: str = DEFAULT_SPANS_KEY,
        threshold: float = 0.5,
        thresholds: Optional[Dict[str, float]] = None,
        max_spans_per_token: Optional[float] = DEFAULT_MAX_SPANS_PER_TOKEN,
        head_lr_scale: float = 1.0,
        sparse_loss: bool = False,
        ents_mode: bool = False,
        scorer: Optional[Callable] = spans_score,
    ) -> None:
        """Initialize the component.

        vocab (Vocab): The shared vocabulary.
        model (Model[List[Doc], ScoresT]): A span scorer such as
            spacy_egp.EfficientGlobalPointer.v2 (or, for gplinker, spacy_egp.GPLinker.v2).
        name (str): The component instance name, used as the key in losses.
        spans_key (str): Key of doc.spans to write predictions to and to read
            gold spans from.
        threshold (float): The probability at or above which a cell is a span
            (0.5: the reference's logit 0).
        thresholds (Dict[str, float]): Per-label probability thresholds that
            override `threshold`.
        max_spans_per_token (Optional[float]): At most ceil(this * len(doc))
            spans per doc, the highest-scoring ones (a warning says when the
            cap bites); None: no cap. Bounds memory whatever the threshold.
        head_lr_scale (float): Everything after the tok2vec (the span head and
            a context layer of its own) learns at the optimizer's learning rate
            times this; the tok2vec (or the transformer behind a listener) at
            the rate itself. The shipped transformer configs use 1 (one rate,
            5e-5, measured best); a larger one gives a fresh head more speed.
        sparse_loss (bool): Compute ZLPR from the gold cells' indices instead of
            a dense gold array (same loss, less memory on long docs).
        ents_mode (bool): Also write a non-overlapping selection of the spans
            to doc.ents (highest score first, ties to the longer span), as a
            drop-in replacement for spaCy's ner.
        scorer (Optional[Callable]): The scoring method.
        """
        if not isinstance(spans_key, str) or not spans_key:
            raise ValueError(f"spans_key must be a non-empty string, got {spans_key!r}.")
        self.vocab = vocab
        self.model = model
        self.name = name
        self.scorer = scorer
        self.cfg: Dict[str, Any] = {
            "labels": [],
            "spans_key": spans_key,
            "threshold": _check_threshold("threshold", threshold),
            "thresholds": {
                str(label): _check_threshold(f"thresholds[{label!r}]", value)
                for label, value in (thresholds or {}).items()
            },
            "max_spans_per_token": _check_max_spans_per_token(max_spans_per_token),
            "head_lr_scale": _check_positive("head_lr_scale", head_lr_scale),
            "sparse_loss": bool(sparse_loss),
            "ents_mode": bool(ents_mode),
        }
        self.gold_span_problems = GoldProblems(name)

    @property
    def max_span_length(self) -> Optional[int]:
        """The longest span scored, in tokens: the model's (one source for forward, loss and decoding)."""
        return self.model.get_ref(self.entity_head_ref).attrs["max_span_length"]

    @property
    def key(self) -> str:
        """The key of doc.spans that this component writes and learns from."""
        return self.cfg["spans_key"]

    @property
    def labels(self) -> Tuple[str, ...]:
        """The labels, in the order of the model's output columns."""
        return tuple(self.cfg["labels"])

    @property
    def label_data(self) -> List[str]:
        """The labels, as saved by `spacy init labels`."""
        return list(self.labels)

    def add_label(self, label: str) -> int:
        """Add a label before initialization. RETURNS (int): 1 if new, else 0."""
        return self._add_to_labels(label, "labels", self.entity_head_ref, kind="label")

    def _add_to_labels(self, label: str, cfg_key: str, head_ref: str, *, kind: str) -> int:
        """Add a label to cfg[cfg_key] while the head `head_ref` is unsized. RETURNS (int): 1 if new, else 0.

        kind (str): What the label is, in messages ("label", "relation label").
        """
        if not isinstance(label, str) or not label:
            raise ValueError(f"A {kind} must be a non-empty string, got {label!r}.")
        if label in self.cfg[cfg_key]:
            return 0
        if self.model.get_ref(head_ref).has_dim("nO"):
            raise ValueError(
                f"Cannot add {kind} {label!r} to '{self.name}' after initialization: the "
                "model's output size is fixed. Re-initialize from scratch with all labels."
            )
        self.cfg[cfg_key].append(label)
        self.vocab.strings.add(label)
        return 1

    def label_thresholds(self) -> Dict[str, float]:
        """The probability threshold of each label."""
        per_label = self.cfg["thresholds"]
        return {label: float(per_label.get(label, self.cfg["threshold"])) for label in self.labels}

    def logit_thresholds(self) -> numpy.ndarray:
        """The thresholds as float64 logits, in label order: decoding keeps the cells >= these."""
        thresholds = self.label_thresholds()
        for label, value in thresholds.items():
            _check_threshold(f"the threshold of {label!r}", value)
        return numpy.asarray([probability_to_logit(thresholds[label]) for label in self.labels], dtype="float64")

    def span_caps(self, lengths: Iterable[int]) -> numpy.ndarray:
        """The most spans each doc of these lengths may get (max_spans_per_token)."""
        per_token = self.cfg["max_spans_per_token"]
        lengths = numpy.asarray(list(lengths), dtype="int64")
        if per_token is None:
            return lengths * max(1, self.max_span_length or int(lengths.max(initial=1))) * max(1, len(self.labels))
        return numpy.ceil(lengths * per_token).astype("int64")

    def span_band(self, scores: ScoresT) -> Ragged:
        """The band of span logits (T, W, K) in the model's output for a batch."""
        raise NotImplementedError

    def _empty_scores(self, lengths: numpy.ndarray) -> ScoresT:
        """The model's output for a batch of empty docs."""
        raise NotImplementedError

    def _predict_scores(self, docs: List[Doc]) -> ScoresT:
        """The model's output for the docs, as predict returns it."""
        if not any(len(doc) for doc in docs):
            return self._empty_scores(self.model.ops.asarray1i([len(doc) for doc in docs]))
        return self.model.predict(docs)

    def _empty_span_band(self, lengths: numpy.ndarray) -> Ragged:
        return Ragged(self.model.ops.alloc3f(0, 0, len(self.labels)), lengths)

    def _write_spans(self, docs: List[Doc], scores: Ragged) -> None:
        """Write the spans of a span band at or above threshold to doc.spans[spans_key], with their scores.

        Spans are ordered by (start, end, label); attrs["scores"] holds each
        span's probability. A doc with more such cells than its cap
        (max_spans_per_token) keeps its highest-scoring ones, with a warning.
        """
        lengths = self.model.ops.to_numpy(scores.lengths)
        cells = cells_above(
            self.model.ops.to_numpy(scores.dataXd), lengths, self.logit_thresholds(), self.span_caps(lengths)
        )
        if cells.capped_docs:
            self._warn_capped(docs, cells.capped_docs)
        probabilities = sigmoid(cells.logit)
        starts = doc_starts(numpy, lengths)
        bounds = numpy.searchsorted(cells.token, starts[1:].tolist() + [int(lengths.sum())], side="left")
        bounds = [0] + bounds.tolist()
        labels = self.labels
        for i, doc in enumerate(docs):
            found = slice(bounds[i], bounds[i + 1])
            span_starts = (cells.token[found] - starts[i]).tolist()
            span_ends = (cells.token[found] - starts[i] + cells.width[found] + 1).tolist()
            spans = [
                Span(doc, start, end, label=labels[label_i])
                for start, end, label_i in zip(span_starts, span_ends, cells.label[found].tolist())
            ]
            doc.spans[self.key] = SpanGroup(
                doc, name=self.key, spans=spans, attrs={"scores": probabilities[found]}
            )
            if self.cfg["ents_mode"]:
                doc.set_ents(flat_selection(spans, probabilities[found]), default="outside")

    def _warn_capped(self, docs: List[Doc], capped: List[int]) -> None:
        doc = docs[capped[0]]
        warnings.warn(
            f"[{self.name}] {len(capped)} doc(s) had more spans above threshold than the cap "
            f"max_spans_per_token={self.cfg['max_spans_per_token']} allows and kept their "
            f"highest-scoring ones (the first: {len(doc)} tokens, {preview(doc.text)}). The "
            f"threshold is probably too low for this model; raise it, or raise or null the cap.",
            stacklevel=4,
        )

    def update(
        self,
        examples: Iterable[Example],
        *,
        drop: float = 0.0,
        sgd: Optional[Optimizer] = None,
        losses: Optional[Dict[str, float]] = None,
    ) -> Dict[str, float]:
        """Learn from a batch of examples: predict, get the loss, backpropagate.

        RETURNS (Dict[str, float]): The losses, with this component's added.
        """
        if losses is None:
            losses = {}
        losses.setdefault(self.name, 0.0)
        examples = list(examples)
        validate_examples(examples, f"{type(self).__name__}.update")
        if not any(len(eg.predicted) for eg in examples):
            return losses
        fix_mmap_threshold()  # once: bounded RSS over thousands of band-sized allocations (see .heap)
        set_dropout_rate(self.model, drop)
        scores, backprop_scores = self.model.begin_update([eg.predicted for eg in examples])
        loss, d_scores = self.get_loss(examples, scores)
        backprop_scores(d_scores)
        if sgd is not None:
            self.finish_update(sgd)
        losses[self.name] += loss
        return losses

    def finish_update(self, sgd: Optimizer) -> None:
        """Update the weights: all after the tok2vec (context layer, heads) at head_lr_scale times the rate."""
        finish_update_after_tok2vec(self.model, sgd, self.cfg["head_lr_scale"])

    def _span_loss(self, examples: List[Example], scores: Ragged) -> Tuple[float, Floats3d]:
        """ZLPR loss of a span band against the gold spans (`gold_spans`), and its gradient.

        RETURNS (Tuple[float, Floats3d]): The loss (the mean over (doc, label)
            rows) and d(loss)/d(band).
        """
        ops = self.model.ops
        band = scores.dataXd
        cells = gold_cells(
            examples, self.key, self.labels, self.max_span_length, self.gold_span_problems, spans_of=self.gold_spans
        )
        cells = ops.asarray(cells, dtype="int64")
        valid = band_mask(ops, scores.lengths, band.shape[1])
        if self.cfg["sparse_loss"]:
            return sparse_zlpr_loss(ops, band, valid, cells, scores.lengths)
        gold = ops.xp.zeros(band.shape, dtype=bool)
        gold[cells[:, 0], cells[:, 1], cells[:, 2]] = True
        return zlpr_loss(ops, band, valid, gold, scores.lengths)

    def gold_spans(self, eg: Example) -> List[Span3]:
        """The example's gold spans on its predicted tokens, as (start, end, label): doc.spans[spans_key]'s."""
        return aligned_gold_spans(eg, self.key, self.gold_span_problems)

    def initialize(
        self,
        get_examples: Callable[[], Iterable[Example]],
        *,
        nlp: Optional[Language] = None,
        labels: Optional[List[str]] = None,
    ) -> None:
        """Set the labels and size the model, from examples or a list of labels.

        get_examples (Callable[[], Iterable[Example]]): Returns representative
            examples; their reference doc.spans[spans_key] give the labels.
        nlp (Optional[Language]): The pipeline; its score weights are set to
            this component's spans_key.
        labels (Optional[List[str]]): The labels, e.g. from `spacy init labels`.
        """
        validate_get_examples(get_examples, f"{type(self).__name__}.initialize")
        if labels is None:
            labels = {span.label_ for eg in get_examples() for key in self._label_keys()
                      for span in eg.reference.spans.get(key, [])}
        for label in sorted(labels):
            self.add_label(label)
        if not self.labels:
            raise ValueError(
                f"[{self.name}] No labels to learn: no reference doc has spans in "
                f"doc.spans[{self.key!r}]. Check that the training data stores its gold "
                f"spans under that key (spans_key = {self.key!r}), or pass `labels`."
            )
        head, tok2vec = self.model.get_ref(self.entity_head_ref), self.model.get_ref("tok2vec")
        head.set_dim("nO", len(self.labels))
        if not head.has_dim("nI") and tok2vec.has_dim("nO"):
            head.set_dim("nI", tok2vec.get_dim("nO"))
        docs = [eg.predicted for eg in islice(get_examples(), 10)]
        self.model.initialize(X=docs if any(len(doc) for doc in docs) else None)
        if nlp is not None:
            self._check_score_weights(nlp)

    def _label_keys(self) -> Tuple[str, ...]:
        """The keys of the reference doc.spans whose labels `initialize` collects."""
        return (self.key,)

    def from_bytes(self, bytes_data: bytes, *, exclude: Iterable[str] = tuple()) -> "GlobalPointerPipe":
        """Load the component from bytes; damaged data give one clear error."""
        with _clear_load_errors(self.name, "bytes"):
            return super().from_bytes(bytes_data, exclude=exclude)

    def from_disk(self, path: Union[str, Path], *, exclude: Iterable[str] = tuple()) -> "GlobalPointerPipe":
        """Load the component from a directory; damaged files give one clear error."""
        with _clear_load_errors(self.name, str(path)):
            return super().from_disk(path, exclude=exclude)

    def score_weights(self) -> Dict[str, float]:
        """The score weights for this component's spans_key (the factory's default_score_weights for "sc")."""
        return score_weights_for(self.key)

    def _check_score_weights(self, nlp: Language) -> None:
        # spaCy scores a checkpoint 0 when no weighted score is reported (it
        # drops the missing keys); with another spans_key than the default, say so.
        configured = nlp.config["training"]["score_weights"]
        weights = self.score_weights()
        if any(weight and key not in configured for key, weight in weights.items()):
            warnings.warn(score_weights_warning(self.name, self.key, weights, configured))


class EfficientGlobalPointer(GlobalPointerPipe[Ragged]):
    """Predict nested, labelled spans with Efficient GlobalPointer.

    Every token pair (i, j), i <= j, j - i < max_span_length, is scored for
    every label; the cells above threshold become spans in doc.spans[spans_key].
    The model (e.g. spacy_egp.EfficientGlobalPointer.v2) returns the band of
    span logits, a Ragged (T, W, K).

    Soft targets (spacy_egp.pipeline.distill), off by default: with
    `distill_key` it learns from a teacher's scored spans in the reference
    doc.spans[distill_key] (`spacy egp teach`) mixed with the gold; with
    `label_smoothing` eps a gold cell's target is 1 - eps.
    """

    def __init__(
        self,
        vocab: Vocab,
        model: Model[List[Doc], Ragged],
        name: str = "efficient_globalpointer",
        *,
        distill_key: Optional[str] = None,
        distill_weight: float = 0.5,
        label_smoothing: float = 0.0,
        **settings: Any,
    ) -> None:
        """Initialize the component; `settings` are GlobalPointerPipe's.

        distill_key (Optional[str]): Key of the reference doc.spans holding a
            teacher's spans, their probabilities in attrs["scores"]; None: no
            distillation. Every training doc must have that group. A doc
            without a gold group doc.spans[spans_key] is unlabelled: it
            learns the teacher's targets alone.
        distill_weight (float): w in [0, 1]: on labelled docs the target is
            (1 - w) * gold + w * teacher.
        label_smoothing (float): eps in [0, 0.5): gold cells get target
            1 - eps; the other cells stay 0 (one-sided: see
            spacy_egp.pipeline.distill).
        """
        super().__init__(vocab, model, name, **settings)
        self.cfg.update(check_distill_settings(distill_key, distill_weight, label_smoothing, self.key))

    @property
    def uses_soft_targets(self) -> bool:
        """Whether the loss uses soft targets (distillation or label smoothing)."""
        return self.cfg.get("distill_key") is not None or self.cfg.get("label_smoothing", 0.0) > 0

    def _label_keys(self) -> Tuple[str, ...]:
        """The gold key's labels, and the teacher's when distilling (unlabelled docs have only the teacher's)."""
        distill_key = self.cfg.get("distill_key")
        return (self.key,) if distill_key is None else (self.key, distill_key)

    def predict(self, docs: Iterable[Doc]) -> Ragged:
        """Score every candidate span of the docs, without modifying them.

        docs (Iterable[Doc]): The documents to predict.
        RETURNS (Ragged): The (T, W, K) band of logits and the docs' lengths.
        """
        return self._predict_scores(list(docs))

    def set_annotations(self, docs: Iterable[Doc], scores: Ragged) -> None:
        """Write the spans at or above threshold to doc.spans[spans_key], with their scores.

        Spans are ordered by (start, end, label); attrs["scores"] holds each
        span's probability. A doc with more such cells than its cap
        (max_spans_per_token) keeps its highest-scoring ones, with a warning.
        """
        self._write_spans(list(docs), scores)

    def get_loss(self, examples: Iterable[Example], scores: Ragged) -> Tuple[float, Ragged]:
        """ZLPR loss of the predicted band against the gold spans, and its gradient.

        RETURNS (Tuple[float, Ragged]): The loss and d(loss)/d(scores).
        """
        examples = list(examples)
        if self.uses_soft_targets:
            loss, d_band = self._soft_span_loss(examples, scores)
        else:
            loss, d_band = self._span_loss(examples, scores)
        return loss, Ragged(d_band, scores.lengths)

    def _soft_span_loss(self, examples: List[Example], scores: Ragged) -> Tuple[float, Floats3d]:
        """Soft ZLPR against the targets of spacy_egp.pipeline.distill, and its gradient.

        Sparse: only the listed cells (gold and teacher) carry target mass.
        """
        ops, band = self.model.ops, scores.dataXd
        targets = soft_targets(
            examples, self.key, self.labels, self.max_span_length, self.gold_span_problems,
            distill_key=self.cfg["distill_key"], distill_weight=self.cfg["distill_weight"],
            label_smoothing=self.cfg["label_smoothing"], gold_spans=self.gold_spans,
        )
        valid = band_mask(ops, scores.lengths, band.shape[1])
        return sparse_soft_zlpr_loss(ops, band, valid, ops.asarray(targets.cells, dtype="int64"),
                                     ops.asarray(targets.values), scores.lengths)

    def span_band(self, scores: Ragged) -> Ragged:
        """The band of span logits: the scores themselves."""
        return scores

    def _empty_scores(self, lengths: numpy.ndarray) -> Ragged:
        return self._empty_span_band(lengths)

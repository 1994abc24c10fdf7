"""The `efficient_globalpointer` pipeline component: nested spans in doc.spans.

The model (spacy_egp.model) maps a batch of docs to a band of span logits
(T, W, K): cell (t, w, a) is the span from token t to token t + w of label a.
`set_annotations` keeps every cell whose logit is above its label's threshold,
`get_loss` builds the gold band from the reference spans and applies ZLPR
(spacy_egp.loss).
"""

import dataclasses
import math
import warnings
from collections import Counter
from contextlib import contextmanager
from itertools import islice
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple, Union

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

from .heads import band_mask
from .loss import sparse_zlpr_loss, zlpr_loss
from .model import DEFAULT_MAX_SPAN_LENGTH, predict_token_vectors

DEFAULT_SPANS_KEY = "sc"

default_model_config = """
[model]
@architectures = "spacy_egp.EfficientGlobalPointer.v1"
head_size = 64
use_rope = true

[model.tok2vec]
@architectures = "spacy.Tok2Vec.v2"

[model.tok2vec.embed]
@architectures = "spacy.MultiHashEmbed.v2"
width = 96
rows = [5000, 1000, 2500, 1000]
attrs = ["NORM", "PREFIX", "SUFFIX", "SHAPE"]
include_static_vectors = false

[model.tok2vec.encode]
@architectures = "spacy.MaxoutWindowEncoder.v2"
width = ${model.tok2vec.embed.width}
window_size = 1
maxout_pieces = 3
depth = 4
"""
DEFAULT_EGP_MODEL = Config().from_str(default_model_config)["model"]


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


@Language.factory(
    "efficient_globalpointer",
    assigns=["doc.spans", "doc.ents"],
    default_config={
        "model": DEFAULT_EGP_MODEL,
        "spans_key": DEFAULT_SPANS_KEY,
        "threshold": 0.0,
        "thresholds": {},
        "max_span_length": DEFAULT_MAX_SPAN_LENGTH,
        "sparse_loss": False,
        "ents_mode": False,
        "scorer": {"@scorers": "spacy_egp.spans_scorer.v1"},
    },
    # Left empty on purpose: the weights must name the configured spans_key
    # (spaCy's spancat hard-codes "sc", spaCy#13090); `initialize` sets them.
    default_score_weights={},
)
def make_efficient_globalpointer(
    nlp: Language,
    name: str,
    model: Model[List[Doc], Ragged],
    spans_key: str,
    threshold: float,
    thresholds: Dict[str, float],
    max_span_length: Optional[int],
    sparse_loss: bool,
    ents_mode: bool,
    scorer: Optional[Callable],
) -> "EfficientGlobalPointer":
    """Create an efficient_globalpointer component (see EfficientGlobalPointer)."""
    return EfficientGlobalPointer(
        nlp.vocab,
        model,
        name,
        spans_key=spans_key,
        threshold=threshold,
        thresholds=thresholds,
        max_span_length=max_span_length,
        sparse_loss=sparse_loss,
        ents_mode=ents_mode,
        scorer=scorer,
    )


def _check_threshold(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(
            f"{name} must be a finite number (a logit; 0.0 is the reference's "
            f"threshold, i.e. probability 0.5), got {value!r}."
        )
    return float(value)


def _check_max_span_length(value: Any) -> Optional[int]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(
            f"max_span_length must be a positive number of tokens (or null for no "
            f"limit), got {value!r}."
        )
    return value


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


def _preview(text: str) -> str:
    return repr(text if len(text) <= 60 else text[:57] + "...")


def _describe(doc: Doc, start: int, end: int, label: str) -> str:
    return f"span [{start}:{end}] {doc[start:end].text!r} ({label}) in doc {_preview(doc.text)}"


class EfficientGlobalPointer(TrainablePipe):
    """Predict nested, labelled spans with Efficient GlobalPointer.

    Every token pair (i, j), i <= j, j - i < max_span_length, is scored for
    every label; the cells above threshold become spans in doc.spans[spans_key].
    """

    def __init__(
        self,
        vocab: Vocab,
        model: Model[List[Doc], Ragged],
        name: str = "efficient_globalpointer",
        *,
        spans_key: str = DEFAULT_SPANS_KEY,
        threshold: float = 0.0,
        thresholds: Optional[Dict[str, float]] = None,
        max_span_length: Optional[int] = DEFAULT_MAX_SPAN_LENGTH,
        sparse_loss: bool = False,
        ents_mode: bool = False,
        scorer: Optional[Callable] = spans_score,
    ) -> None:
        """Initialize the component.

        vocab (Vocab): The shared vocabulary.
        model (Model[List[Doc], Ragged]): A span scorer such as
            spacy_egp.EfficientGlobalPointer.v1.
        name (str): The component instance name, used as the key in losses.
        spans_key (str): Key of doc.spans to write predictions to and to read
            gold spans from.
        threshold (float): Logit above which a cell is a span (0.0 = probability 0.5).
        thresholds (Dict[str, float]): Per-label logit thresholds that
            override `threshold`.
        max_span_length (Optional[int]): Spans longer than this many tokens are
            neither scored nor predicted; None scores all (quadratic memory).
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
            "max_span_length": _check_max_span_length(max_span_length),
            "sparse_loss": bool(sparse_loss),
            "ents_mode": bool(ents_mode),
        }
        self.model.get_ref("head").attrs["max_span_length"] = self.cfg["max_span_length"]
        self.gold_span_problems: Counter = Counter()

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
        if not isinstance(label, str):
            raise ValueError(f"Labels must be strings, got {label!r}.")
        if label in self.labels:
            return 0
        if self.model.get_ref("head").has_dim("nO"):
            raise ValueError(
                f"Cannot add label {label!r} to '{self.name}' after initialization: the "
                "model's output size is fixed. Re-initialize from scratch with all labels."
            )
        self.cfg["labels"].append(label)
        self.vocab.strings.add(label)
        return 1

    def label_thresholds(self) -> numpy.ndarray:
        """The logit threshold of each label, in label order."""
        per_label = self.cfg["thresholds"]
        return numpy.asarray(
            [per_label.get(label, self.cfg["threshold"]) for label in self.labels], dtype="float32"
        )

    def predict(self, docs: Iterable[Doc]) -> Ragged:
        """Score every candidate span of the docs, without modifying them.

        docs (Iterable[Doc]): The documents to predict.
        RETURNS (Ragged): The (T, W, K) band of logits and the docs' lengths.
        """
        docs = list(docs)
        if not any(len(doc) for doc in docs):
            n_labels = len(self.labels)
            lengths = self.model.ops.asarray1i([len(doc) for doc in docs])
            return Ragged(self.model.ops.alloc3f(0, 0, n_labels), lengths)
        # tok2vec and head run one after the other (not as one chain) so that the
        # tok2vec's intermediate arrays are freed before the band is built
        vectors = predict_token_vectors(self.model.get_ref("tok2vec"), docs)
        lengths = self.model.ops.asarray1i([len(doc) for doc in docs])
        return self.model.get_ref("head").predict(Ragged(self.model.ops.flatten(vectors), lengths))

    def set_annotations(self, docs: Iterable[Doc], scores: Ragged) -> None:
        """Write the spans above threshold to doc.spans[spans_key], with their scores.

        Spans are ordered by (start, end, label); attrs["scores"] holds the
        sigmoid of each span's logit.
        """
        docs = list(docs)
        logits = self.model.ops.to_numpy(scores.dataXd)
        lengths = self.model.ops.to_numpy(scores.lengths)
        token, width, label = numpy.nonzero(logits > self.label_thresholds())
        span_logits = logits[token, width, label].astype("float64")
        probabilities = (0.5 * (1.0 + numpy.tanh(span_logits / 2))).astype("float32")
        doc_starts = numpy.cumsum(lengths) - lengths
        doc_of_span = numpy.searchsorted(doc_starts, token, side="right") - 1
        bounds = numpy.searchsorted(doc_of_span, numpy.arange(len(docs) + 1))
        labels = self.labels
        for i, doc in enumerate(docs):
            found = slice(bounds[i], bounds[i + 1])
            starts = (token[found] - doc_starts[i]).tolist()
            ends = (numpy.asarray(starts, dtype=int) + width[found] + 1).tolist()
            spans = [
                Span(doc, start, end, label=labels[label_i])
                for start, end, label_i in zip(starts, ends, label[found].tolist())
            ]
            doc.spans[self.key] = SpanGroup(
                doc, name=self.key, spans=spans, attrs={"scores": probabilities[found]}
            )
            if self.cfg["ents_mode"]:
                doc.set_ents(flat_selection(spans, probabilities[found]), default="outside")

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
        validate_examples(examples, "EfficientGlobalPointer.update")
        if not any(len(eg.predicted) for eg in examples):
            return losses
        set_dropout_rate(self.model, drop)
        scores, backprop_scores = self.model.begin_update([eg.predicted for eg in examples])
        loss, d_scores = self.get_loss(examples, scores)
        backprop_scores(d_scores)
        if sgd is not None:
            self.finish_update(sgd)
        losses[self.name] += loss
        return losses

    def get_loss(self, examples: Iterable[Example], scores: Ragged) -> Tuple[float, Ragged]:
        """ZLPR loss of the predicted band against the gold spans, and its gradient.

        RETURNS (Tuple[float, Ragged]): The loss and d(loss)/d(scores).
        """
        ops = self.model.ops
        band = scores.dataXd
        cells = ops.asarray(self._gold_cells(list(examples)), dtype="int64")
        valid = band_mask(ops, scores.lengths, band.shape[1])
        if self.cfg["sparse_loss"]:
            loss, d_band = sparse_zlpr_loss(ops, band, valid, cells, scores.lengths)
        else:
            gold = ops.xp.zeros(band.shape, dtype=bool)
            gold[cells[:, 0], cells[:, 1], cells[:, 2]] = True
            loss, d_band = zlpr_loss(ops, band, valid, gold, scores.lengths)
        return loss, Ragged(d_band, scores.lengths)

    def _gold_cells(self, examples: List[Example]) -> numpy.ndarray:
        """The band cells (t, w, label) of the aligned gold spans, each once, (P, 3)."""
        cells = set()
        label_index = {label: i for i, label in enumerate(self.labels)}
        max_length = self.cfg["max_span_length"]
        offset = 0
        for eg in examples:
            for start, end, label in self._aligned_gold_spans(eg):
                if label not in label_index:
                    raise ValueError(self._unknown_label_message(eg, start, end, label))
                if max_length is not None and end - start > max_length:
                    self._report_gold(
                        f"skipped: longer than max_span_length={max_length}",
                        _describe(eg.predicted, start, end, label),
                    )
                else:
                    cells.add((offset + start, end - start - 1, label_index[label]))
            offset += len(eg.predicted)
        return numpy.asarray(sorted(cells), dtype="int64").reshape((-1, 3))

    def _aligned_gold_spans(self, eg: Example) -> List[Tuple[int, int, str]]:
        """The reference spans on the predicted tokens; reports what cannot be learned as given."""
        reference = []
        for span in eg.reference.spans.get(self.key, []):
            if len(span) == 0:
                self._report_gold("skipped: zero-length", _describe(eg.reference, span.start, span.end, span.label_))
            else:
                reference.append(span)
        try:
            aligned = eg.get_aligned_spans_y2x(reference, allow_overlap=True)
        except ValueError as error:
            raise ValueError(
                f"[{self.name}] The predicted and reference docs of an example have different "
                f"texts ({_preview(eg.predicted.text)} vs {_preview(eg.reference.text)}), so "
                "their gold spans cannot be placed. Build each Example from two docs of the "
                "same text."
            ) from error
        if len(aligned) < len(reference):
            aligned_keys = {(s.start_char, s.end_char, s.label_) for s in aligned}
            for span in reference:
                if (span.start_char, span.end_char, span.label_) not in aligned_keys:
                    self._report_gold(
                        "skipped: misaligned with the predicted tokens",
                        _describe(eg.reference, span.start, span.end, span.label_),
                    )
        spans = [(span.start, span.end, span.label_) for span in aligned]
        self._report_duplicates_and_crossings(eg.predicted, spans)
        return spans

    def _report_duplicates_and_crossings(self, doc: Doc, spans: List[Tuple[int, int, str]]) -> None:
        # Both are learnable (each cell is scored on its own), but usually mean
        # an annotation error, so they are reported, not dropped.
        seen = set()
        for span in spans:
            if span in seen:
                self._report_gold("kept once: duplicate", _describe(doc, *span))
            seen.add(span)
        ordered = sorted({(start, end) for start, end, _ in spans})
        for i, (start, end) in enumerate(ordered):
            for other_start, other_end in ordered[i + 1 :]:
                if other_start >= end:
                    break
                if other_end > end and other_start > start:
                    self._report_gold(
                        "kept: crossing another gold span",
                        f"{_describe(doc, start, end, '')} and [{other_start}:{other_end}]",
                    )

    def _report_gold(self, problem: str, what: str) -> None:
        """Count a gold-span problem; warn at the 1st, 10th, 100th, ... one of each kind."""
        self.gold_span_problems[problem] += 1
        count = self.gold_span_problems[problem]
        if count == 10 ** int(math.log10(count)):
            warnings.warn(
                f"[{self.name}] {count} gold span(s) so far {problem}; latest: {what}. "
                f"Training continues; the counts are in "
                f"nlp.get_pipe({self.name!r}).gold_span_problems.",
                stacklevel=3,
            )

    def _unknown_label_message(self, eg: Example, start: int, end: int, label: str) -> str:
        return (
            f"[{self.name}] Gold {_describe(eg.predicted, start, end, label)} has label "
            f"{label!r}, which the component was not initialized with (labels: "
            f"{list(self.labels)}). Initialize with data that contains it (or list it in "
            f"[initialize.components.{self.name}.labels]), or remove it from the data."
        )

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
        validate_get_examples(get_examples, "EfficientGlobalPointer.initialize")
        if labels is None:
            labels = {span.label_ for eg in get_examples() for span in eg.reference.spans.get(self.key, [])}
        for label in sorted(labels):
            self.add_label(label)
        if not self.labels:
            raise ValueError(
                f"[{self.name}] No labels to learn: no reference doc has spans in "
                f"doc.spans[{self.key!r}]. Check that the training data stores its gold "
                f"spans under that key (spans_key = {self.key!r}), or pass `labels`."
            )
        head, tok2vec = self.model.get_ref("head"), self.model.get_ref("tok2vec")
        head.set_dim("nO", len(self.labels))
        if not head.has_dim("nI") and tok2vec.has_dim("nO"):
            head.set_dim("nI", tok2vec.get_dim("nO"))
        docs = [eg.predicted for eg in islice(get_examples(), 10)]
        self.model.initialize(X=docs if any(len(doc) for doc in docs) else None)
        if nlp is not None:
            self._set_score_weights(nlp)

    def from_bytes(self, bytes_data: bytes, *, exclude: Iterable[str] = tuple()) -> "EfficientGlobalPointer":
        """Load the component from bytes; damaged data give one clear error."""
        with _clear_load_errors(self.name, "bytes"):
            return super().from_bytes(bytes_data, exclude=exclude)

    def from_disk(self, path: Union[str, Path], *, exclude: Iterable[str] = tuple()) -> "EfficientGlobalPointer":
        """Load the component from a directory; damaged files give one clear error."""
        with _clear_load_errors(self.name, str(path)):
            return super().from_disk(path, exclude=exclude)

    def _set_score_weights(self, nlp: Language) -> None:
        # spaCy keeps one score-weight table per factory; ours must name the
        # configured spans_key, so the pipe's own meta is replaced here.
        weights = score_weights_for(self.key)
        meta = nlp.get_pipe_meta(self.name)
        nlp._pipe_meta[self.name] = dataclasses.replace(
            meta, default_score_weights=weights, scores=list(weights)
        )

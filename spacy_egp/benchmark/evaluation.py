"""Test-set figures of one trained pipeline: accuracy, head size, speed, memory.

Accuracy is exact-match, labelled, against *all* gold spans of doc.spans["sc"]
(nested included), whatever the pipeline writes: doc.spans["sc"] for EGP, GP
and spancat, doc.ents for spaCy ner (which cannot produce nested spans; that is
part of the comparison).

Nested-only scores: a span is *nested* when it contains, or lies inside,
another span of the same set (gold or predicted) with different boundaries.
Recall is over the nested gold spans, precision over the nested predicted
spans, each counted correct when it matches a gold span exactly.
"""

import resource
import time
from typing import Any, Callable, Dict, Iterable, List, Set, Tuple

import spacy
from spacy.language import Language
from spacy.tokens import Doc, DocBin
from spacy.util import minibatch
from thinc.api import Model

from ..pipeline.nesting import nesting
from .pipelines import SPANS_KEY

SpanKey = Tuple[int, int, int, str]  # doc index, start char, end char, label
REPEATS = 3


def evaluate_pipeline(model_path: str, test_path: str, batch_size: int = 256, gpu_id: int = -1) -> Dict[str, Any]:
    """Scores and costs of the pipeline at `model_path` on the .spacy file `test_path`, on GPU `gpu_id` if >= 0."""
    if gpu_id >= 0:
        spacy.require_gpu(gpu_id)
    nlp = spacy.load(model_path)
    gold_docs = list(DocBin().from_disk(test_path).get_docs(nlp.vocab))
    texts = [doc.text for doc in gold_docs]
    name, component = nlp.pipeline[-1]
    list(nlp.pipe(texts[:64], batch_size=batch_size))  # warm-up: first calls allocate
    predicted, pipe_seconds = _fastest(lambda: list(nlp.pipe(texts, batch_size=batch_size)))
    words = sum(len(doc) for doc in predicted)
    tok2vec_seconds, component_seconds = _stage_seconds(nlp, component, texts, batch_size)
    gold = _span_keys(gold_docs, lambda doc: doc.spans.get(SPANS_KEY, []))
    pred = _span_keys(predicted, lambda doc: doc.ents if name == "ner" else doc.spans.get(SPANS_KEY, []))
    scores = prf(gold, pred)
    nested = prf(nested_spans(gold), nested_spans(pred), gold_all=gold)
    return {
        "test_docs": len(gold_docs),
        "test_p": scores["p"], "test_r": scores["r"], "test_f": scores["f"],
        "nested_gold": len(nested_spans(gold)),
        "nested_p": nested["p"], "nested_r": nested["r"], "nested_f": nested["f"],
        "head_parameters": head_parameter_count(component.model, raw_tok2vec(component.model)),
        "inference_words_per_second": words / pipe_seconds,
        "head_share_of_inference": (component_seconds - tok2vec_seconds) / pipe_seconds,
        "inference_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def given_tokens(doc: Doc, vocab: Any) -> Doc:
    """A fresh doc of `doc`'s own tokens (the dataset's), text and whitespace kept, nothing else."""
    return Doc(vocab, words=[t.text for t in doc], spaces=[bool(t.whitespace_) for t in doc])


def prf(gold: Set[SpanKey], pred: Set[SpanKey], gold_all: Set[SpanKey] = None) -> Dict[str, float]:
    """Exact-match P/R/F; with `gold_all`, a prediction is correct when it is in gold_all."""
    reference = gold if gold_all is None else gold_all
    p = len(pred & reference) / len(pred) if pred else 0.0
    r = len(gold & pred) / len(gold) if gold else 0.0
    return {"p": p, "r": r, "f": 2 * p * r / (p + r) if p + r else 0.0}


def nested_spans(spans: Set[SpanKey]) -> Set[SpanKey]:
    """The spans that contain, or lie inside, another span of the same doc."""
    by_doc: Dict[int, List[SpanKey]] = {}
    for span in spans:
        by_doc.setdefault(span[0], []).append(span)
    nested = set()
    for doc_spans in by_doc.values():
        boundaries = nesting((start, end) for _, start, end, _ in doc_spans).nested
        nested.update(span for span in doc_spans if (span[1], span[2]) in boundaries)
    return nested


def _span_keys(docs: List[Doc], spans_of: Any) -> Set[SpanKey]:
    return {(i, s.start_char, s.end_char, s.label_) for i, doc in enumerate(docs) for s in spans_of(doc)}


def raw_tok2vec(model: Model) -> Model:
    """The tok2vec a component's model starts with (spaCy ner's ref adds a Linear: skip it)."""
    tok2vec = model.get_ref("tok2vec")
    if model.name == "parser_model":  # spaCy's TransitionModel (ner, parser)
        return tok2vec.layers[0]
    return tok2vec


def parameter_count(model: Model) -> int:
    """Thinc parameters plus those of wrapped torch modules (e.g. a BiLSTM context layer)."""
    thinc = sum(node.get_param(name).size for node in model.walk()
                for name in node.param_names if node.has_param(name))
    torch = sum(param.numel() for node in model.walk() for shim in node.shims
                for param in getattr(shim, "_model").parameters() if hasattr(getattr(shim, "_model"), "parameters"))
    return thinc + torch


def head_parameter_count(model: Model, tok2vec: Model) -> int:
    return parameter_count(model) - parameter_count(tok2vec)


def _stage_seconds(nlp: Language, component: Any, texts: Iterable[str], batch_size: int) -> Tuple[float, float]:
    """Seconds in the component's tok2vec alone and in the whole component.

    The difference is the span head with its decoding; over the time of the
    whole `nlp.pipe` (tokenizer and any transformer included) it is the head's
    share of inference.
    """
    docs = [nlp.make_doc(text) for text in texts]
    for _, earlier in nlp.pipeline[:-1]:
        docs = list(earlier.pipe(docs))
    tok2vec = raw_tok2vec(component.model)
    batches = list(minibatch(docs, batch_size))
    _, tok2vec_seconds = _fastest(lambda: [tok2vec.predict(batch) for batch in batches])
    _, component_seconds = _fastest(
        lambda: [component.set_annotations(batch, component.predict(batch)) for batch in batches])
    return tok2vec_seconds, component_seconds


def _fastest(run: Callable[[], Any], repeats: int = REPEATS) -> Tuple[Any, float]:
    """The result and the shortest wall time of `repeats` runs (the least disturbed by other processes)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - start)
    return result, best

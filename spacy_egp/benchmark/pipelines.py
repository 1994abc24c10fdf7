"""The four pipelines the benchmark compares, built from one template config.

The template is a dataset's EGP config from configs/ (e.g. configs/cluener_cnn.cfg).
Every pipeline keeps the template's [nlp], [training] (seed, batcher, optimizer,
max_steps) and [corpora], and the *same* tok2vec block: only the component
after the tok2vec changes. That is what makes the comparison fair.

A context layer is a head option of efficient_globalpointer (`model.context`, a
BiLSTM in the CNN configs). spancat and ner have no such option, so the
benchmark moves the template's context into the shared tok2vec (Thinc's
`chain.v1` of the tok2vec and the context): all four pipelines read the same
contextual vectors and the table compares heads. EGP's own model is the same
chain either way (tok2vec, context, head); only where its parameters are
counted moves, from the head to the tok2vec.
"""

import copy
from typing import Any, Dict, Iterable, List, Optional

import numpy
from spacy.tokens import Doc
from thinc.api import Config

from ..pipeline.efficient_globalpointer import score_weights_for
from .scaled_heads import SCALED_NER_FACTORY, SCALED_SPANCAT_FACTORY

PIPELINES = ("egp", "gp", "spancat", "ner")
# spaCy's heads on the template's tok2vec alone, beside the like-for-like rows: only for a template whose EGP has
# a context layer (on CLUENER the shared BiLSTM slows spaCy's ner: results/ablation/cluener-ner.json)
NO_CONTEXT = "-no-context"
EXTRA_PIPELINES = ("spancat" + NO_CONTEXT, "ner" + NO_CONTEXT)
EGP_COMPONENT = "efficient_globalpointer"
SPANS_KEY = "sc"


def suggester_max_length(docs: Iterable[Doc], coverage: float = 0.995) -> int:
    """The shortest n-gram range 1..L covering `coverage` of the gold span lengths."""
    lengths = numpy.array([len(span) for doc in docs for span in doc.spans.get(SPANS_KEY, [])])
    if lengths.size == 0:
        raise ValueError(f"no gold spans in doc.spans[{SPANS_KEY!r}]: cannot size spancat's suggester")
    return int(numpy.ceil(numpy.quantile(lengths, coverage, method="inverted_cdf")))


def pipeline_config(template: Config, name: str, *, ngram_max: int, max_steps: int,
                    eval_frequency: int, log_path: str, baseline_head_lr_scale: float = 1.0) -> Config:
    """The config of pipeline `name` (one of PIPELINES) from the EGP template.

    baseline_head_lr_scale: where not 1, spancat and ner are the benchmark's
    subclasses whose own layers learn at that times the rate (scaled_heads.py),
    as EGP's and GP's do at the template's `head_lr_scale`.
    """
    pipeline_names([name])
    if name in EXTRA_PIPELINES and not has_context_layer(template):
        raise ValueError(f"pipeline {name!r} leaves out the template's context layer, but it has none: "
                         f"use {component_of(name)!r}")
    config = copy.deepcopy(template)
    components = config["components"]
    egp = components.pop(EGP_COMPONENT)
    # resolved, because its ${...} references name the EGP component, which the others lack
    resolved = template.interpolate()["components"][EGP_COMPONENT]["model"]
    tok2vec = shared_tok2vec(resolved["tok2vec"], None if name in EXTRA_PIPELINES else resolved.get("context"))
    name = component_of(name)
    if "context" in egp["model"]:
        egp["model"].pop("context")
        egp["model"]["tok2vec"] = copy.deepcopy(tok2vec)
    if name == "egp":
        components[EGP_COMPONENT] = egp
    elif name == "gp":
        # GP has no label term, hence no span prior; everything else as in the template
        egp["model"]["@architectures"] = "spacy_egp.GlobalPointer.v2"
        egp["model"].pop("span_prior", None)
        components[EGP_COMPONENT] = egp
    elif name == "spancat":
        components[name] = _spancat(tok2vec, ngram_max)
    else:
        components[name] = _ner(tok2vec)
    if name in ("spancat", "ner") and baseline_head_lr_scale != 1.0:
        factory = SCALED_SPANCAT_FACTORY if name == "spancat" else SCALED_NER_FACTORY
        components[name].update(factory=factory, head_lr_scale=float(baseline_head_lr_scale))
    main = EGP_COMPONENT if name in ("egp", "gp") else name
    config["nlp"]["pipeline"] = [p if p != EGP_COMPONENT else main for p in config["nlp"]["pipeline"]]
    config["initialize"]["components"] = {}
    training = config["training"]
    training.update(max_steps=max_steps, eval_frequency=eval_frequency, patience=0, max_epochs=0)
    fit_schedule(training["optimizer"], max_steps)
    training["score_weights"] = _score_weights(name)
    training["logger"] = {"@loggers": "spacy_egp.ThroughputLogger.v1", "log_path": log_path}
    return config


def component_of(name: str) -> str:
    """The component a pipeline trains: "ner" for "ner-no-context"."""
    return name[: -len(NO_CONTEXT)] if name.endswith(NO_CONTEXT) else name


def has_context_layer(template: Config) -> bool:
    """Whether the template's EGP has a context layer (which the benchmark shares with every pipeline)."""
    return "context" in template["components"][EGP_COMPONENT]["model"]


def shared_tok2vec(tok2vec: Dict[str, Any], context: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    """The tok2vec every pipeline reads: the template's, followed by its head's context layer if any."""
    if context is None:
        return copy.deepcopy(tok2vec)
    return {"@layers": "chain.v1", "*": {"tok2vec": copy.deepcopy(tok2vec), "context": copy.deepcopy(context)}}


def fit_schedule(optimizer: Dict[str, Any], max_steps: int) -> None:
    """A warm-up/decay schedule written in numbers (the transformer configs) ends at `max_steps`.

    The transformer configs train by epochs and write their schedule's length
    as a number; the benchmark trains every pipeline for `max_steps`, so the
    decay is stretched or shrunk to end there, with the template's warm-up
    fraction. A schedule that reads `${training.max_steps}` follows by itself.
    """
    rate = optimizer.get("learn_rate")
    if not isinstance(rate, dict) or not isinstance(rate.get("total_steps"), int) or max_steps <= 0:
        return
    fraction = rate.get("warmup_steps", 0) / rate["total_steps"]
    rate["total_steps"] = max_steps
    rate["warmup_steps"] = round(fraction * max_steps)


def _score_weights(name: str) -> Dict[str, float]:
    # ner is selected on its own flat dev set (doc.ents); the others on nested spans. Written out
    # for every pipeline, so that spancat and ours select on SPANS_KEY whatever their defaults.
    if name == "ner":
        return {"ents_f": 1.0, "ents_p": 0.0, "ents_r": 0.0}
    return score_weights_for(SPANS_KEY)


def _spancat(tok2vec: Dict[str, Any], ngram_max: int) -> Dict[str, Any]:
    """spaCy's spancat defaults (multi-label), the shared tok2vec, a covering suggester."""
    return {
        "factory": "spancat",
        "spans_key": SPANS_KEY,
        "threshold": 0.5,
        "max_positive": None,
        "suggester": {"@misc": "spacy.ngram_range_suggester.v1", "min_size": 1, "max_size": ngram_max},
        "model": {
            "@architectures": "spacy.SpanCategorizer.v1",
            "tok2vec": copy.deepcopy(tok2vec),
            "reducer": {"@layers": "spacy.mean_max_reducer.v1", "hidden_size": 128},
            "scorer": {"@layers": "spacy.LinearLogistic.v1", "nO": None, "nI": None},
        },
    }


def _ner(tok2vec: Dict[str, Any]) -> Dict[str, Any]:
    """spaCy's ner defaults with the shared tok2vec (it learns doc.ents, i.e. flat spans)."""
    return {
        "factory": "ner",
        "moves": None,
        "update_with_oracle_cut_size": 100,
        "incorrect_spans_key": None,
        "model": {
            "@architectures": "spacy.TransitionBasedParser.v2",
            "state_type": "ner",
            "extra_state_tokens": False,
            "hidden_width": 64,
            "maxout_pieces": 2,
            "use_upper": True,
            "nO": None,
            "tok2vec": copy.deepcopy(tok2vec),
        },
    }


def flat_ents(doc: Doc) -> Doc:
    """`doc` with doc.ents set to a non-overlapping selection of its gold spans.

    spaCy's `filter_spans` keeps the longest span first (ties: the earliest),
    the usual way to flatten nested gold for a flat tagger.
    """
    from spacy.util import filter_spans

    doc.ents = filter_spans(list(doc.spans.get(SPANS_KEY, [])))
    return doc


def pipeline_names(selected: List[str]) -> List[str]:
    """`selected` in table order; an error names any unknown one."""
    known = PIPELINES + EXTRA_PIPELINES
    unknown = sorted(set(selected) - set(known))
    if unknown:
        raise ValueError(f"unknown pipeline(s) {unknown}: choose from {', '.join(known)}")
    return [name for name in known if name in selected]

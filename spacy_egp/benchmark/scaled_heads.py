"""spaCy's `ner` and `spancat` with their own layers at `head_lr_scale` times the learning rate.

Benchmark baselines, not package components. On a pretrained encoder the
recipe's single rate (5e-5 in the `*_trf*.cfg` configs) suits the encoder and
EGP's head, but it leaves a fresh spaCy head nearly still within a short
budget: on CLUENER with me5s-zh-char at that rate, `spancat` settled on
predicting nothing and `ner` reached 2.7 dev F1 after 1,008 steps
(results/cluener-me5s-h200, spancat and ner). spaCy's optimizer has one rate,
so these subclasses scale the rate of every layer outside the shared tok2vec,
as `head_lr_scale` does for `efficient_globalpointer`.
"""

from typing import Any, Callable, Optional

from spacy.language import Language
from spacy.pipeline import EntityRecognizer, SpanCategorizer
from spacy.pipeline.ner import DEFAULT_NER_MODEL
from spacy.pipeline.spancat import DEFAULT_SPANCAT_MODEL, Suggester
from thinc.api import Model, Optimizer

from ..pipeline.efficient_globalpointer import finish_update_after_tok2vec

SCALED_NER_FACTORY = "bench_scaled_ner"
SCALED_SPANCAT_FACTORY = "bench_scaled_spancat"


def _checked_scale(head_lr_scale: float) -> float:
    if not head_lr_scale > 0:
        raise ValueError(f"head_lr_scale must be > 0, got {head_lr_scale!r}.")
    return float(head_lr_scale)


@Language.factory(
    SCALED_NER_FACTORY,
    assigns=["doc.ents", "token.ent_iob", "token.ent_type"],
    default_config={
        "moves": None,
        "update_with_oracle_cut_size": 100,
        "model": DEFAULT_NER_MODEL,
        "incorrect_spans_key": None,
        "scorer": {"@scorers": "spacy.ner_scorer.v1"},
        "head_lr_scale": 1.0,
    },
    default_score_weights={"ents_f": 1.0, "ents_p": 0.0, "ents_r": 0.0, "ents_per_type": None},
)
def make_scaled_ner(
    nlp: Language,
    name: str,
    model: Model,
    moves: Any,
    update_with_oracle_cut_size: int,
    incorrect_spans_key: Optional[str],
    scorer: Optional[Callable],
    head_lr_scale: float,
) -> "ScaledEntityRecognizer":
    """spaCy's ner (its factory's arguments) plus head_lr_scale (see ScaledEntityRecognizer)."""
    ner = ScaledEntityRecognizer(
        nlp.vocab, model, name=name, moves=moves, update_with_oracle_cut_size=update_with_oracle_cut_size,
        incorrect_spans_key=incorrect_spans_key, scorer=scorer,
    )
    ner.head_lr_scale = _checked_scale(head_lr_scale)
    return ner


class ScaledHead:
    """A spaCy pipe whose own layers (all outside its model's "tok2vec" ref) update at head_lr_scale times the rate."""

    head_lr_scale: float = 1.0

    def finish_update(self, sgd: Optimizer) -> None:
        finish_update_after_tok2vec(self.model, sgd, self.head_lr_scale)


class ScaledEntityRecognizer(ScaledHead, EntityRecognizer):
    """spaCy's ner, its own layers at head_lr_scale times the learning rate."""


@Language.factory(
    SCALED_SPANCAT_FACTORY,
    assigns=["doc.spans"],
    default_config={
        "threshold": 0.5,
        "spans_key": "sc",
        "max_positive": None,
        "model": DEFAULT_SPANCAT_MODEL,
        "suggester": {"@misc": "spacy.ngram_suggester.v1", "sizes": [1, 2, 3]},
        "scorer": {"@scorers": "spacy.spancat_scorer.v1"},
        "head_lr_scale": 1.0,
    },
    default_score_weights={"spans_sc_f": 1.0, "spans_sc_p": 0.0, "spans_sc_r": 0.0},
)
def make_scaled_spancat(
    nlp: Language,
    name: str,
    suggester: Suggester,
    model: Model,
    spans_key: str,
    scorer: Optional[Callable],
    threshold: float,
    max_positive: Optional[int],
    head_lr_scale: float,
) -> "ScaledSpanCategorizer":
    """spaCy's multi-label spancat (its factory's arguments) plus head_lr_scale (see ScaledSpanCategorizer)."""
    spancat = ScaledSpanCategorizer(
        nlp.vocab, model=model, suggester=suggester, name=name, spans_key=spans_key, negative_weight=None,
        allow_overlap=True, max_positive=max_positive, threshold=threshold, scorer=scorer,
        add_negative_label=False,
    )
    spancat.head_lr_scale = _checked_scale(head_lr_scale)
    return spancat


class ScaledSpanCategorizer(ScaledHead, SpanCategorizer):
    """spaCy's spancat, its own layers (reducer and scorer) at head_lr_scale times the learning rate."""

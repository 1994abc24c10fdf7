"""The efficient_globalpointer component: labels, annotations, gold handling, scores, serialization."""

import pickle
import warnings
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy
import pytest
import spacy
from spacy.language import Language
from spacy.tokens import Doc, DocBin, Span
from spacy.training import Example
from spacy.training.initialize import init_nlp
from thinc.api import Config

from conftest import add_pipe_through_entry_point, nested_examples, train

SMALL_TOK2VEC = {
    "@architectures": "spacy.Tok2Vec.v2",
    "embed": {
        "@architectures": "spacy.MultiHashEmbed.v2",
        "width": 32,
        "rows": [2000, 500, 500, 500],
        "attrs": ["NORM", "PREFIX", "SUFFIX", "SHAPE"],
        "include_static_vectors": False,
    },
    "encode": {
        "@architectures": "spacy.MaxoutWindowEncoder.v2",
        "width": 32,
        "window_size": 1,
        "maxout_pieces": 2,
        "depth": 2,
    },
}


def spans_of(doc, key="sc"):
    """(start, end, label, text) of doc.spans[key], read while the doc is alive."""
    return [(s.start, s.end, s.label_, s.text) for s in doc.spans[key]]


MODEL_SETTINGS = ("max_span_length", "span_prior")


def small_pipeline(architecture="spacy_egp.EfficientGlobalPointer.v2", lang="en", **cfg):
    """A pipeline with a small tok2vec; max_span_length and span_prior go to the model, the rest to the component."""
    nlp = spacy.blank(lang)
    model = {"@architectures": architecture, "head_size": 16, "tok2vec": SMALL_TOK2VEC}
    model.update({key: cfg.pop(key) for key in MODEL_SETTINGS if key in cfg})
    nlp.add_pipe("efficient_globalpointer", config={"model": model, **cfg})
    return nlp


@pytest.fixture(scope="module")
def trained_nested():
    """A small pipeline trained on the synthetic nested corpus, and its examples."""
    spacy.util.fix_random_seed(0)  # its accuracy must not depend on the test files that ran before
    nlp = small_pipeline()
    examples = nested_examples(nlp, 150, seed=1)
    losses = train(nlp, examples, n_epochs=12)
    return nlp, examples, losses


def test_factory_is_found_through_entry_points_without_import():
    """In a fresh interpreter that never imports spacy_egp, spaCy registers the factory from our entry point."""
    out = add_pipe_through_entry_point("efficient_globalpointer", "zh.Chinese")
    assert out.split() == ["spacy_egp.pipeline.efficient_globalpointer:make_efficient_globalpointer",
                           "EfficientGlobalPointer"]


def test_nested_spans_are_learned(trained_nested):
    nlp, _, losses = trained_nested
    assert losses[-1] < losses[0] / 10
    dev = nested_examples(nlp, 60, seed=99)
    scores = nlp.evaluate(dev)
    assert scores["spans_sc_f"] >= 0.95
    nested = 0
    for eg in dev:
        doc = nlp(eg.predicted.text)
        predicted = list(doc.spans["sc"])
        nested += sum(1 for a in predicted for b in predicted if a is not b and a.start <= b.start and b.end <= a.end and (a.start, a.end) != (b.start, b.end))
    assert nested > 50


def test_spans_are_ordered_and_scored_with_sigmoid(trained_nested):
    nlp, _, _ = trained_nested
    doc = nlp("we saw the big red dog of the small blue cat and then the tiny green fox")
    group = doc.spans["sc"]
    keys = [(s.start, s.end, nlp.get_pipe("efficient_globalpointer").labels.index(s.label_)) for s in group]
    assert keys == sorted(keys) and len(keys) > 0
    logits = nlp.get_pipe("efficient_globalpointer").predict([doc]).dataXd
    probabilities = group.attrs["scores"]
    assert len(probabilities) == len(group)
    for span, probability in zip(group, probabilities):
        label = nlp.get_pipe("efficient_globalpointer").labels.index(span.label_)
        logit = float(logits[span.start, span.end - span.start - 1, label])
        assert probability == pytest.approx(1 / (1 + numpy.exp(-logit)), rel=1e-5)
        assert probability > 0.5


def test_threshold_and_per_label_thresholds_filter_cells(trained_nested):
    nlp, _, _ = trained_nested
    pipe = nlp.get_pipe("efficient_globalpointer")
    text = "the big red dog of the small blue cat"
    every = spans_of(nlp(text))
    pipe.cfg["thresholds"] = {"COLOR": 1.0}
    try:
        without_colors = spans_of(nlp(text))
    finally:
        pipe.cfg["thresholds"] = {}
    assert [s for s in every if s[2] != "COLOR"] == without_colors
    assert any(s[2] == "COLOR" for s in every)


def test_labels_from_initialize_argument_and_errors():
    nlp = small_pipeline()
    examples = nested_examples(nlp, 5)
    nlp.initialize(lambda: examples)
    assert nlp.get_pipe("efficient_globalpointer").labels == ("ANIMAL", "COLOR", "GROUP", "SIZE")

    nlp = small_pipeline()
    nlp.config["initialize"]["components"]["efficient_globalpointer"] = {"labels": ["B", "A"]}
    nlp.initialize(lambda: examples)
    assert nlp.get_pipe("efficient_globalpointer").labels == ("A", "B")
    with pytest.raises(ValueError, match="was not initialized with"):
        nlp.update(examples[:2])

    nlp = small_pipeline()
    no_spans = [Example(nlp.make_doc("a b c"), nlp.make_doc("a b c"))]
    with pytest.raises(ValueError, match="No labels to learn"):
        nlp.initialize(lambda: no_spans)


def test_label_data_round_trips_through_init_labels(tmp_path):
    nlp = small_pipeline()
    examples = nested_examples(nlp, 5)
    nlp.initialize(lambda: examples)
    label_data = nlp.get_pipe("efficient_globalpointer").label_data
    fresh = small_pipeline()
    fresh.get_pipe("efficient_globalpointer").initialize(lambda: examples, labels=label_data)
    assert fresh.get_pipe("efficient_globalpointer").labels == tuple(label_data)


def test_default_score_weights_are_declared_by_the_factory_for_sc():
    """As spaCy's spancat: fixed weights for doc.spans["sc"], in the factory's meta and so in nlp.config."""
    weights = {"spans_sc_f": 1.0, "spans_sc_p": 0.0, "spans_sc_r": 0.0}
    nlp = small_pipeline()  # registers the factory (through the entry points)
    assert Language.get_factory_meta("efficient_globalpointer").default_score_weights == weights
    nlp.initialize(lambda: nested_examples(nlp, 5))
    assert nlp.get_pipe_meta("efficient_globalpointer").default_score_weights == weights
    assert nlp.config["training"]["score_weights"] == weights


def _mentions_config(tmp_path: Path, score_weights: Optional[Dict[str, Optional[float]]] = None) -> Config:
    """A training config whose component and corpus use spans_key "mentions"."""
    nlp = small_pipeline(spans_key="mentions")
    docs = [eg.reference for eg in nested_examples(nlp, 20)]
    for doc in docs:
        doc.spans["mentions"] = doc.spans.pop("sc")
    DocBin(docs=docs).to_disk(tmp_path / "train.spacy")
    config = nlp.config.copy()
    config["paths"]["train"] = config["paths"]["dev"] = str(tmp_path / "train.spacy")
    if score_weights is not None:
        config["training"]["score_weights"] = score_weights
    return config


def _init_nlp_warnings(config: Config) -> Tuple[Language, List[str]]:
    """init_nlp (what `spacy train` runs before training) and the score-weight warnings it gives."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        nlp = init_nlp(config)
    return nlp, [str(w.message) for w in caught if "score_weights" in str(w.message)]


def test_another_spans_key_without_score_weights_warns_with_the_fix(tmp_path):
    nlp, messages = _init_nlp_warnings(_mentions_config(tmp_path))
    assert len(messages) == 1
    assert "spans_key is 'mentions'" in messages[0] and "no spans_mentions_f" in messages[0]
    assert "[training.score_weights]\nspans_mentions_f = 1.0\nspans_mentions_p = 0.0" in messages[0]
    assert "spans_sc_f = null" in messages[0]
    # what spacy train would then select on: the default key's F, which this component never reports
    assert "spans_mentions_f" not in nlp.config["training"]["score_weights"]
    scores = nlp.evaluate([Example(doc.copy(), doc) for doc in DocBin().from_disk(tmp_path / "train.spacy")
                           .get_docs(nlp.vocab)])
    assert "spans_sc_f" not in scores and {"spans_mentions_p", "spans_mentions_r", "spans_mentions_f"} <= set(scores)


def test_another_spans_key_with_the_suggested_score_weights(tmp_path):
    weights = {"spans_mentions_f": 1.0, "spans_mentions_p": 0.0, "spans_mentions_r": 0.0,
               "spans_sc_f": None, "spans_sc_p": None, "spans_sc_r": None}
    nlp, messages = _init_nlp_warnings(_mentions_config(tmp_path, weights))
    assert messages == []
    assert nlp.config["training"]["score_weights"] == weights


def test_misaligned_gold_spans_are_counted_and_warned_once():
    nlp = small_pipeline()
    examples = nested_examples(nlp, 10)
    nlp.initialize(lambda: examples)
    reference = Doc(nlp.vocab, words=["the", "red", "dish", "dog"], spaces=[True, False, True, False])
    predicted = Doc(nlp.vocab, words=["the", "reddish", "dog"])
    reference.spans["sc"] = [Span(reference, 1, 2, "COLOR"), Span(reference, 0, 4, "ANIMAL")]
    bad = Example(predicted, reference)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        nlp.update([bad, bad])
    messages = [str(w.message) for w in caught if "misaligned" in str(w.message)]
    assert len(messages) == 1 and "'red'" in messages[0]
    assert nlp.get_pipe("efficient_globalpointer").gold_span_problems["skipped: misaligned with the predicted tokens"] == 2


def test_empty_whitespace_and_one_token_docs(trained_nested):
    nlp, _, _ = trained_nested
    docs = list(nlp.pipe(["", "   \n\t ", "dog", "the big red dog"]))
    for doc in docs[:3]:
        assert "sc" in doc.spans and len(doc.spans["sc"].attrs["scores"]) == len(doc.spans["sc"])
    assert len(docs[0].spans["sc"]) == 0
    assert spans_of(docs[3]) == spans_of(nlp("the big red dog"))


def test_batch_mixing_lengths_matches_one_by_one(trained_nested):
    nlp, _, _ = trained_nested
    rng = numpy.random.default_rng(0)
    vocabulary = "the big red dog of small blue cat we saw and".split()
    texts = [" ".join(rng.choice(vocabulary, size=n)) for n in [0, 1, 3, 500, 0, 17, 250, 2]]
    batched = list(nlp.pipe(texts, batch_size=1000))
    single = list(nlp.pipe(texts, batch_size=1))
    assert sum(len(doc.spans["sc"]) for doc in batched) > 30  # enough spans for the comparison to mean something
    for a, b in zip(batched, single):
        # the band's dot products are summed in blocks that depend on the batch, so a
        # cell may differ by float rounding: only a span scored ~0.5 may be in one alone
        scores_a = dict(zip(spans_of(a), a.spans["sc"].attrs["scores"]))
        scores_b = dict(zip(spans_of(b), b.spans["sc"].attrs["scores"]))
        for span in set(scores_a) ^ set(scores_b):
            assert abs({**scores_a, **scores_b}[span] - 0.5) < 1e-5
        common = sorted(set(scores_a) & set(scores_b))
        assert len(common) >= 0.99 * max(len(scores_a), len(scores_b))
        numpy.testing.assert_allclose([scores_a[s] for s in common], [scores_b[s] for s in common], rtol=1e-4, atol=1e-6)


def test_examples_without_gold_spans_train():
    nlp = small_pipeline()
    examples = nested_examples(nlp, 20)
    nlp.initialize(lambda: examples)
    empty = [Example(nlp.make_doc(t), nlp.make_doc(t)) for t in ["we saw a dog", "", "then"]]
    losses = nlp.update(empty + examples[:2])
    assert numpy.isfinite(losses["efficient_globalpointer"])
    losses = nlp.update(empty)
    assert numpy.isfinite(losses["efficient_globalpointer"])


def test_very_long_doc_predicts_with_a_linear_band(trained_nested):
    nlp, _, _ = trained_nested
    words = ["the", "big", "red", "dog", "of", "the", "small", "cat", "we", "saw"] * 2000
    doc = Doc(nlp.vocab, words=words)
    pipe = nlp.get_pipe("efficient_globalpointer")
    scores = pipe.predict([doc])
    assert scores.dataXd.shape == (20000, pipe.max_span_length, len(pipe.labels))
    pipe.set_annotations([doc], scores)
    assert len(doc.spans["sc"]) > 1000
    assert all(0 <= s.start < s.end <= len(doc) for s in doc.spans["sc"])


@pytest.mark.parametrize("architecture", [
    "spacy_egp.EfficientGlobalPointer.v2", "spacy_egp.GlobalPointer.v2",
    "spacy_egp.EfficientGlobalPointer.v1", "spacy_egp.GlobalPointer.v1",
])
def test_serialization_round_trips(tmp_path, architecture):
    nlp = small_pipeline(architecture, spans_key="ents2", threshold=0.4)
    examples = nested_examples(nlp, 30)
    for eg in examples:
        eg.reference.spans["ents2"] = eg.reference.spans.pop("sc")
    train(nlp, examples, n_epochs=2)
    texts = ["the big red dog of the small blue cat", "we saw a tiny green fox", ""]
    expected = [nlp.get_pipe("efficient_globalpointer").predict([nlp.make_doc(t)]).dataXd for t in texts]

    def same_scores(other):
        for text, scores in zip(texts, expected):
            got = other.get_pipe("efficient_globalpointer").predict([other.make_doc(text)]).dataXd
            numpy.testing.assert_array_equal(got, scores)
        assert other.get_pipe("efficient_globalpointer").cfg == nlp.get_pipe("efficient_globalpointer").cfg

    nlp.to_disk(tmp_path / "pipeline")
    same_scores(spacy.load(tmp_path / "pipeline"))
    fresh = small_pipeline(architecture, spans_key="ents2", threshold=0.4)
    same_scores(fresh.from_bytes(nlp.to_bytes()))
    same_scores(pickle.loads(pickle.dumps(nlp)))
    reloaded = spacy.load(tmp_path / "pipeline")
    assert spans_of(reloaded(texts[0]), "ents2") == spans_of(nlp(texts[0]), "ents2")


@pytest.mark.parametrize("bad", [
    {"threshold": float("nan")},
    {"threshold": float("inf")},
    {"threshold": -0.5},
    {"threshold": 1.5},
    {"max_span_length": 0},
    {"max_span_length": -3},
    {"span_prior": 0.0},
    {"span_prior": 1.0},
    {"max_spans_per_token": 0},
    {"max_spans_per_token": float("nan")},
    {"thresholds": {"A": float("-inf")}},
    {"thresholds": {"A": 2.0}},
])
def test_bad_config_values_fail_clearly(bad):
    with pytest.raises(ValueError, match="threshold|max_span_length|span_prior|max_spans_per_token"):
        small_pipeline(**bad)


def test_odd_head_size_with_rope_fails_clearly():
    nlp = spacy.blank("en")
    model = {"@architectures": "spacy_egp.EfficientGlobalPointer.v1", "head_size": 15, "tok2vec": SMALL_TOK2VEC}
    with pytest.raises(ValueError, match="head_size must be even"):
        nlp.add_pipe("efficient_globalpointer", config={"model": model})


def test_sparse_loss_option_gives_the_dense_loss():
    losses = {}
    for sparse in (False, True):
        spacy.util.fix_random_seed(0)
        nlp = small_pipeline(sparse_loss=sparse)
        examples = nested_examples(nlp, 12)
        losses[sparse] = train(nlp, examples, n_epochs=2)
    assert losses[True] == pytest.approx(losses[False], rel=1e-4)

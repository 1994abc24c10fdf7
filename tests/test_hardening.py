"""Hostile input, long documents, bad gold, bad config, reload safety, determinism."""

import pickle
import sys
import warnings

import numpy
import pytest
import spacy
import srsly
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from spacy.tokens import Doc, Span
from spacy.training import Example
from thinc.api import Model

from conftest import nested_examples, train
from spacy_egp.ml.windowing import encoder_context, predict_token_vectors
from spacy_egp.pipeline.efficient_globalpointer import EfficientGlobalPointer
from test_component import SMALL_TOK2VEC, small_pipeline

PIPE = "efficient_globalpointer"


@pytest.fixture(scope="module")
def trained():
    spacy.util.fix_random_seed(0)
    nlp = small_pipeline()
    train(nlp, nested_examples(nlp, 80, seed=3), n_epochs=6)
    return nlp


def check_docs(texts, docs):
    assert len(docs) == len(texts)
    for text, doc in zip(texts, docs):
        assert doc.text == text
        group = doc.spans["sc"]
        scores = group.attrs["scores"]
        assert len(scores) == len(group)
        assert numpy.all(numpy.isfinite(scores)) and numpy.all((scores >= 0) & (scores <= 1))
        for span in group:
            assert 0 <= span.start < span.end <= len(doc)


HOSTILE_CHARACTERS = st.one_of(
    # any code point, astral planes and controls included; lone surrogates are
    # not text (they cannot be UTF-8 encoded, and spaCy's tokenizer rejects them)
    st.characters(exclude_categories=("Cs",)),
    st.sampled_from(list(" \n\t\r\u00a0\u200b\u200f\u202e\u0301\u0308\u05d0\u0627😀👩‍👩‍👧中文big red dog")),
)


@settings(max_examples=2000, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(texts=st.lists(st.text(HOSTILE_CHARACTERS, max_size=60), min_size=1, max_size=4))
def test_fuzzed_text_yields_one_valid_doc_per_input(trained, texts):
    check_docs(texts, list(trained.pipe(texts, batch_size=4)))


@pytest.mark.parametrize("make", [
    lambda: "",
    lambda: " \n" * 25000,
    # spaCy's English tokenizer is quadratic on one 50,000-emoji "word" (its suffix
    # loop), so the emoji come in words here; the component itself is linear
    lambda: "😀👩‍👩‍👧 " * 6250,
    lambda: "the big red dog " * 3125,
    lambda: "".join(chr(c) for c in numpy.random.default_rng(0).integers(0x20, 0x2FFFF, 60000) if not 0xD800 <= c < 0xE000)[:50000],
])
def test_50000_character_strings(trained, make):
    text = make()
    check_docs([text], list(trained.pipe([text])))


def test_100000_token_doc_is_predicted(trained):
    doc = Doc(trained.vocab, words=["the", "big", "red", "dog", "and"] * 20000)
    doc = trained.get_pipe(PIPE)(doc)
    assert len(doc.spans["sc"]) > 10000
    check_docs([doc.text], [doc])


def test_long_docs_are_encoded_in_windows_with_the_same_scores(trained):
    pipe = trained.get_pipe(PIPE)
    tok2vec = pipe.model.get_ref("tok2vec")
    rng = numpy.random.default_rng(0)
    words = ["the", "big", "red", "dog", "and", "of", "cat", "blue"]
    docs = [Doc(trained.vocab, words=[words[i] for i in rng.integers(0, len(words), n)]) for n in (3, 700, 40, 1001)]
    whole = tok2vec.predict(docs)
    windowed = predict_token_vectors(tok2vec, docs, window=100)
    encode = SMALL_TOK2VEC["encode"]
    assert encoder_context(tok2vec) == encode["depth"] * encode["window_size"]
    assert [v.shape for v in windowed] == [v.shape for v in whole]
    for a, b in zip(whole, windowed):
        numpy.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
    # one window fewer than the context would see the wrong neighbours: the test can fail
    cut = [tok2vec.predict([doc[a:a + 100].as_doc()])[0] for doc in docs[1:2] for a in range(0, 700, 100)]
    assert not numpy.allclose(numpy.concatenate(cut), whole[1], atol=1e-6)


def test_encoders_of_unknown_context_are_not_windowed():
    listener = spacy.registry.get("architectures", "spacy.Tok2VecListener.v1")(width=32)
    assert encoder_context(listener) is None
    lstm = spacy.registry.get("architectures", "spacy.Tok2Vec.v2")(
        embed=spacy.registry.get("architectures", "spacy.MultiHashEmbed.v2")(
            width=16, attrs=["NORM"], rows=[100], include_static_vectors=False),
        encode=spacy.registry.get("architectures", "spacy.TorchBiLSTMEncoder.v1")(width=16, depth=1, dropout=0.0),
    )
    assert encoder_context(lstm) is None


def reference_and_predicted(nlp, words, spans):
    predicted = nlp.make_doc(" ".join(words))
    reference = nlp.make_doc(" ".join(words))
    reference.spans["sc"] = [Span(reference, s, e, label) for s, e, label in spans]
    return Example(predicted, reference)


def updates_with_warnings(nlp, examples):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        losses = nlp.update(examples)
    assert numpy.isfinite(losses[PIPE])
    return [str(w.message) for w in caught]


@pytest.mark.parametrize("spans,problem", [
    ([(0, 3, "ANIMAL"), (1, 2, "COLOR")], None),  # nested: fine
    ([(0, 3, "ANIMAL"), (2, 4, "ANIMAL")], "kept: crossing another gold span"),
    ([(0, 3, "ANIMAL"), (0, 3, "ANIMAL")], "kept once: duplicate"),
    ([(2, 2, "COLOR")], "skipped: zero-length"),
])
def test_bad_gold_spans_warn_and_training_continues(trained, spans, problem):
    nlp = trained
    pipe = nlp.get_pipe(PIPE)
    pipe.gold_span_problems.clear()
    eg = reference_and_predicted(nlp, ["big", "red", "dog", "ran", "home"], spans)
    messages = updates_with_warnings(nlp, [eg])
    if problem is None:
        assert not pipe.gold_span_problems and not [m for m in messages if PIPE in m]
    else:
        assert pipe.gold_span_problems[problem] >= 1
        assert any(problem in m and "'big red dog ran home'" in m for m in messages)


def test_too_long_gold_span_is_skipped_with_count():
    nlp = small_pipeline(max_span_length=2)
    examples = nested_examples(nlp, 10)
    nlp.initialize(lambda: examples)
    messages = updates_with_warnings(nlp, examples)
    problems = nlp.get_pipe(PIPE).gold_span_problems
    assert problems["skipped: longer than max_span_length=2"] > 10
    assert sum("longer than max_span_length=2" in m for m in messages) == 2  # the 1st and the 10th


def test_unknown_label_and_different_texts_are_errors(trained):
    unknown = reference_and_predicted(trained, ["big", "red", "dog"], [(0, 3, "PLANET")])
    with pytest.raises(ValueError, match="'PLANET'.*not initialized with"):
        trained.update([unknown])
    different = Example(trained.make_doc("big red dog"), trained.make_doc("small red dog"))
    with pytest.raises(ValueError, match="different texts"):
        trained.update([different])


def test_non_numeric_threshold_fails_at_creation():
    with pytest.raises(Exception, match="threshold"):
        small_pipeline(threshold="high")


def test_tok2vec_of_unknown_width_fails_at_initialize():
    def forward(model, docs, is_train):
        return [model.ops.alloc2f(len(doc), 7) for doc in docs], lambda d: []

    nlp = spacy.blank("en")
    opaque = Model("opaque_tok2vec", forward)
    model = spacy.registry.architectures.get("spacy_egp.EfficientGlobalPointer.v1")(tok2vec=opaque, head_size=8)
    pipe = EfficientGlobalPointer(nlp.vocab, model)
    empty = [Example(nlp.make_doc(""), nlp.make_doc(""))]
    with pytest.raises(ValueError, match="width of the token vectors is unknown"):
        pipe.initialize(lambda: empty, labels=["A"])


def test_truncated_or_corrupted_model_gives_a_clear_error(trained, tmp_path):
    trained.to_disk(tmp_path / "pipeline")
    model_file = tmp_path / "pipeline" / PIPE / "model"
    data = model_file.read_bytes()
    model_file.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated, corrupt"):
        spacy.load(tmp_path / "pipeline")
    model_file.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(ValueError, match="truncated, corrupt"):
        spacy.load(tmp_path / "pipeline")


def _refuse_unpickling(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every way to unpickle raise, including the copies other modules bound at import.

    srsly.cloudpickle binds `loads, load = pickle.loads, pickle.load` when it
    is imported, so patching the pickle module alone would not reach
    srsly.pickle_loads (what spaCy code uses). Every loaded module's reference
    to an unpickling function is replaced, plus srsly's wrapper and torch.load.
    """

    def refuse(*args, **kwargs):
        raise AssertionError("unpickling during load")

    unpicklers = {id(f) for f in (pickle.loads, pickle.load, pickle.Unpickler, pickle._loads, pickle._load,
                                  pickle._Unpickler)}
    for module in list(sys.modules.values()):
        for name, value in list(getattr(module, "__dict__", {}).items()):
            if id(value) in unpicklers:
                monkeypatch.setattr(module, name, refuse)
    monkeypatch.setattr(srsly, "pickle_loads", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    with pytest.raises(AssertionError, match="unpickling during load"):
        srsly.pickle_loads(srsly.pickle_dumps({"checked": True}))
    with pytest.raises(AssertionError, match="unpickling during load"):
        srsly.cloudpickle.loads(pickle.dumps(1))


def test_loading_executes_no_pickled_code(trained, tmp_path, monkeypatch):
    trained.to_disk(tmp_path / "pipeline")
    _refuse_unpickling(monkeypatch)
    reloaded = spacy.load(tmp_path / "pipeline")
    text = "the big red dog"
    numpy.testing.assert_array_equal(
        reloaded.get_pipe(PIPE).predict([reloaded.make_doc(text)]).dataXd,
        trained.get_pipe(PIPE).predict([trained.make_doc(text)]).dataXd,
    )


def test_two_processes_give_the_same_results(trained):
    texts = [" ".join(ex.reference.text.split()) for ex in nested_examples(trained, 40, seed=11)]
    one = [[(s.start, s.end, s.label_) for s in d.spans["sc"]] for d in trained.pipe(texts)]
    two = [[(s.start, s.end, s.label_) for s in d.spans["sc"]] for d in trained.pipe(texts, n_process=2, batch_size=8)]
    assert one == two and sum(map(len, one)) > 40


def test_same_seed_gives_identical_weights_and_scores():
    results = []
    for _ in range(2):
        spacy.util.fix_random_seed(7)
        nlp = small_pipeline()
        examples = nested_examples(nlp, 30, seed=5)
        train(nlp, examples, n_epochs=2, seed=5)
        results.append((nlp.get_pipe(PIPE).model.to_bytes(), nlp.evaluate(nested_examples(nlp, 10, seed=6))))
    assert results[0][0] == results[1][0]
    assert results[0][1]["spans_sc_f"] == results[1][1]["spans_sc_f"]

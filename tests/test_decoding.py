"""Decoding: probability thresholds, the span cap, the span prior, one max_span_length, predict = update."""

import json
import math
import subprocess
import sys
import warnings

import numpy
import pytest
import spacy
from spacy.tokens import DocBin

import spacy_egp.pipeline.decoding as decoding
from conftest import nested_examples, train
from thinc.api import Model, NumpyOps, fix_random_seed

from spacy_egp.pipeline.decoding import cells_above
from spacy_egp.ml.heads import band_mask
from spacy_egp.ml.util import doc_starts, sigmoid
from spacy_egp.pipeline.efficient_globalpointer import probability_to_logit
from test_component import SMALL_TOK2VEC, small_pipeline

PIPE = "efficient_globalpointer"


@pytest.fixture(scope="module")
def trained():
    nlp = small_pipeline()
    examples = nested_examples(nlp, 80, seed=3)
    train(nlp, examples, n_epochs=8)
    return nlp, examples


def spans_with_scores(doc, key="sc"):
    return [(s.start, s.end, s.label_, float(p)) for s, p in zip(doc.spans[key], doc.spans[key].attrs["scores"])]


@pytest.mark.parametrize("threshold", [0.02, 0.3, 0.5, 0.77, 0.9])
def test_every_span_scores_at_least_its_threshold(trained, threshold):
    nlp, examples = trained
    pipe = nlp.get_pipe(PIPE)
    pipe.cfg["threshold"] = threshold
    pipe.cfg["thresholds"] = {"COLOR": 0.9}
    try:
        docs = list(nlp.pipe(eg.predicted.text for eg in examples[:20]))
    finally:
        pipe.cfg["threshold"], pipe.cfg["thresholds"] = 0.5, {}
    found = [span for doc in docs for span in spans_with_scores(doc)]
    assert found
    for _, _, label, score in found:
        assert score >= numpy.float32(0.9 if label == "COLOR" else threshold)


def test_thresholds_are_probabilities_with_a_monotone_span_count(trained):
    nlp, examples = trained
    pipe = nlp.get_pipe(PIPE)
    text = " ".join(eg.predicted.text for eg in examples[:5])
    counts = []
    for threshold in (0.0, 0.1, 0.5, 0.9, 1.0):
        pipe.cfg["threshold"] = threshold
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            counts.append(len(nlp(text).spans["sc"]))
    pipe.cfg["threshold"] = 0.5
    assert counts == sorted(counts, reverse=True) and counts[0] > counts[2] > counts[-1] == 0
    # at 0 every cell qualifies, so the cap decides: ceil(4.0 * tokens)
    assert counts[0] == math.ceil(pipe.cfg["max_spans_per_token"] * len(nlp.make_doc(text)))


def test_the_cap_keeps_the_highest_scores_and_warns(trained):
    nlp, _ = trained
    pipe = nlp.get_pipe(PIPE)
    doc = nlp.make_doc("the big red dog of the small blue cat saw a tiny green fox")
    band = pipe.predict([doc]).dataXd
    pipe.cfg.update(threshold=0.0, max_spans_per_token=0.5)
    try:
        with pytest.warns(UserWarning, match=r"max_spans_per_token=0\.5"):
            pipe.set_annotations([doc], pipe.predict([doc]))
    finally:
        pipe.cfg.update(threshold=0.5, max_spans_per_token=4.0)
    cap = math.ceil(0.5 * len(doc))
    labels = list(pipe.labels)
    kept = {(s.start, s.end - s.start - 1, labels.index(s.label_)) for s in doc.spans["sc"]}
    finite = numpy.isfinite(band)
    expected_min = numpy.sort(band[finite])[-cap]
    assert len(kept) == cap
    assert min(band[t, w, k] for t, w, k in kept) >= expected_min


def reference_cells(band, lengths, thresholds, caps, count=False):
    """Doc by doc with argwhere and a full sort: the cells cells_above must return (or their count per doc)."""
    out, start = [], 0
    for n, cap in zip(lengths, caps):
        cells = [(start + t, w, k) for t, w, k in numpy.argwhere(band[start : start + n] >= thresholds)]
        if count:
            out.append(len(cells))
            start += n
            continue
        if len(cells) > cap:
            cells = sorted(cells, key=lambda c: -band[c])[:cap]
        out.extend(sorted(cells))
        start += n
    return out


@pytest.mark.parametrize("chunk", [1 << 21, 40, 7])
def test_cells_above_matches_a_plain_reference(monkeypatch, chunk):
    monkeypatch.setattr(decoding, "DECODE_CHUNK_CELLS", chunk)
    rng = numpy.random.default_rng(0)
    lengths = numpy.asarray([5, 0, 30, 1, 12])
    band = rng.normal(size=(lengths.sum(), 6, 3)).astype("float32")  # distinct values: no ties at the cap
    band[~band_mask(NumpyOps(), lengths, 6)] = -numpy.inf  # as the heads leave cells outside their doc
    thresholds = numpy.asarray([0.2, -0.5, 1.0])
    caps = numpy.asarray([100, 0, 9, 2, 4])
    cells = cells_above(band, lengths, thresholds, caps)
    got = list(zip(cells.token.tolist(), cells.width.tolist(), cells.label.tolist()))
    assert got == [tuple(int(x) for x in c) for c in reference_cells(band, lengths, thresholds, caps)]
    numpy.testing.assert_array_equal(cells.logit, band[cells.token, cells.width, cells.label])
    over = [d for d, n in enumerate(reference_cells(band, lengths, thresholds, [10**6] * 5, count=True)) if n > caps[d]]
    assert cells.capped_docs == over and 2 in over


def test_probability_to_logit_edges():
    assert probability_to_logit(0.5) == 0.0
    assert probability_to_logit(1.0) == numpy.inf
    low = probability_to_logit(0.0)
    assert numpy.isfinite(low) and -numpy.inf < low  # keeps every cell of a doc, never the -inf padding
    assert probability_to_logit(0.01) == pytest.approx(math.log(0.01 / 0.99))


def test_sigmoid_inverts_probability_to_logit_without_overflow():
    logits = numpy.asarray([-numpy.inf, -1000.0, -3.0, 0.0, 3.0, 1000.0, numpy.inf])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow warnings at the extremes
        probabilities = sigmoid(logits, dtype="float64")
    assert probabilities.tolist() == pytest.approx([0.0, 0.0, 1 / (1 + math.e**3), 0.5, 1 / (1 + math.e**-3), 1.0, 1.0])
    assert sigmoid(logits).dtype == numpy.float32
    for p in (1e-6, 0.01, 0.3, 0.5, 0.9, 0.999):
        assert float(sigmoid(probability_to_logit(p), dtype="float64")) == pytest.approx(p, rel=1e-12)


def test_doc_starts_of_a_batch():
    assert doc_starts(numpy, [3, 0, 2, 4]).tolist() == [0, 3, 3, 5]
    assert doc_starts(numpy, []).tolist() == []
    assert doc_starts(numpy, numpy.asarray([2, 1], dtype="int32")).dtype == numpy.int64


def test_untrained_pipe_predicts_almost_nothing_with_the_span_prior():
    fix_random_seed(0)  # measured over seeds 0-7: 0.004-0.08 % of the cells predicted; no order dependence
    nlp = small_pipeline()
    examples = nested_examples(nlp, 30, seed=5)
    nlp.initialize(lambda: examples)
    docs = list(nlp.pipe(eg.predicted.text for eg in examples))
    n_cells = sum(len(doc) * (len(doc) + 1) // 2 for doc in docs) * len(nlp.get_pipe(PIPE).labels)
    assert sum(len(doc.spans["sc"]) for doc in docs) <= 0.001 * n_cells
    band = nlp.get_pipe(PIPE).predict([eg.predicted for eg in examples]).dataXd
    probabilities = 1 / (1 + numpy.exp(-band[numpy.isfinite(band)].astype("float64")))
    assert 0.003 < numpy.median(probabilities) < 0.03
    # without the prior, as in v1, about half of the cells are predicted
    plain = small_pipeline(span_prior=None, max_spans_per_token=None)
    plain.initialize(lambda: examples)
    assert sum(len(doc.spans["sc"]) for doc in plain.pipe(eg.predicted.text for eg in examples)) > 0.1 * n_cells


def test_max_span_length_has_one_source():
    nlp = small_pipeline(max_span_length=3)
    pipe = nlp.get_pipe(PIPE)
    examples = nested_examples(nlp, 10)
    nlp.initialize(lambda: examples)
    assert pipe.max_span_length == pipe.model.get_ref("head").attrs["max_span_length"] == 3
    assert "max_span_length" not in pipe.cfg
    assert pipe.predict([examples[0].predicted]).dataXd.shape[1] == min(3, len(examples[0].predicted))
    # a config of version 0.1 that names it on the component loads when it agrees, else fails clearly
    legacy_model = {"@architectures": "spacy_egp.EfficientGlobalPointer.v1", "head_size": 16, "tok2vec": SMALL_TOK2VEC}
    legacy_config = {"model": legacy_model, "max_span_length": 128}
    spacy.blank("en").add_pipe(PIPE, config=legacy_config)
    with pytest.raises(ValueError, match=r"max_span_length now lives on the\s+model"):
        spacy.blank("en").add_pipe(PIPE, config={**legacy_config, "max_span_length": 20})


def test_predict_and_update_score_the_same_band(trained):
    nlp, examples = trained
    pipe = nlp.get_pipe(PIPE)
    docs = [eg.predicted for eg in examples[:6]]
    predicted = pipe.predict(docs)
    updated, _ = pipe.model.begin_update(docs)  # dropout is 0 outside nlp.update
    numpy.testing.assert_allclose(updated.dataXd, predicted.dataXd, rtol=1e-5, atol=1e-5)
    numpy.testing.assert_array_equal(updated.lengths, predicted.lengths)


def test_predict_runs_the_model_itself(trained, monkeypatch):
    """The pipe predicts through model.predict, so a layer a builder adds is never bypassed."""
    nlp, examples = trained
    pipe = nlp.get_pipe(PIPE)
    docs = [eg.predicted for eg in examples[:3]]
    calls = []
    model_predict = Model.predict  # Model has __slots__: spy on the class, count calls on this model

    def spy(model, batch):
        if model is pipe.model:
            calls.append(len(batch))
        return model_predict(model, batch)

    monkeypatch.setattr(Model, "predict", spy)
    band = pipe.predict(docs)
    assert calls == [3] and band.dataXd.shape[0] == sum(len(doc) for doc in docs)
    with pytest.raises(ValueError, match="no gradient"):
        pipe.model(docs, is_train=False)[1](band)


def test_spacy_find_threshold_sweeps_below_one_half(trained, tmp_path):
    nlp, examples = trained
    nlp.to_disk(tmp_path / "model")
    DocBin(docs=[eg.reference for eg in nested_examples(nlp, 30, seed=11)]).to_disk(tmp_path / "dev.spacy")
    out = subprocess.run(
        [sys.executable, "-m", "spacy", "find-threshold", str(tmp_path / "model"), str(tmp_path / "dev.spacy"),
         PIPE, "threshold", "spans_sc_f", "--n_trials", "11"],
        capture_output=True, text=True, check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    rows = {}
    for line in out.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2:
            try:
                rows[float(parts[0])] = float(parts[1])
            except ValueError:
                pass
    assert {0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.9, 1.0} <= set(rows)
    assert rows[1.0] == 0.0 and rows[0.5] > 0.5
    assert len({rows[t] for t in (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)}) > 1, "thresholds below 0.5 change nothing"


LONG_DOC_SCRIPT = """
import resource, sys, warnings
import spacy
from spacy.tokens import Doc
from spacy.training import Example
nlp = spacy.blank("en")
nlp.add_pipe("efficient_globalpointer", config={"threshold": 0.01})
doc = nlp.make_doc("the big red dog")
doc.spans["sc"] = [doc.char_span(4, 15, "ANIMAL"), doc.char_span(8, 11, "COLOR")]
nlp.initialize(lambda: [Example(nlp.make_doc(doc.text), doc)])
words = ["the", "big", "red", "dog", "of", "the", "small", "cat", "we", "saw"] * 10000
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    out = nlp(Doc(nlp.vocab, words=words))
print(len(out.spans["sc"]), sum("max_spans_per_token" in str(w.message) for w in caught),
      resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
"""


def test_untrained_pipe_on_a_100k_token_doc_at_threshold_001_stays_under_15_gb():
    """Default pipe, untrained, threshold 0.01 (at its span prior: ~half the cells qualify): the cap bounds memory."""
    out = subprocess.run([sys.executable, "-c", LONG_DOC_SCRIPT], capture_output=True, text=True, check=True)
    n_spans, n_warnings, peak = (int(x) for x in out.stdout.split())
    assert n_spans <= 4 * 100_000 and n_warnings == 1
    assert peak < 1.5e9, f"peak RSS {peak / 1e9:.2f} GB"
    print(json.dumps({"spans": n_spans, "peak_rss_gb": round(peak / 1e9, 3)}))


def test_head_lr_scale_scales_only_the_heads_steps():
    """One SGD step: the head moves head_lr_scale times as far as with scale 1, the tok2vec as far."""
    from thinc.api import SGD

    steps = {}
    for scale in (1.0, 10.0):
        spacy.util.fix_random_seed(0)
        nlp = small_pipeline(head_lr_scale=scale)
        examples = nested_examples(nlp, 6)
        nlp.initialize(lambda: examples)
        pipe = nlp.get_pipe(PIPE)
        head, tok2vec = pipe.model.get_ref("head"), pipe.model.get_ref("tok2vec")
        layers = [next(node for node in model.walk() if node.has_param("W")) for model in (head, tok2vec)]
        before = [layer.get_param("W").copy() for layer in layers]
        pipe.update(examples, sgd=SGD(0.01))
        after = [layer.get_param("W") for layer in layers]
        steps[scale] = [after[i] - before[i] for i in range(2)]
    numpy.testing.assert_allclose(steps[10.0][0], 10 * steps[1.0][0], rtol=1e-3, atol=2e-7)
    numpy.testing.assert_allclose(steps[10.0][1], steps[1.0][1], rtol=1e-3, atol=2e-8)
    assert numpy.abs(steps[1.0][0]).max() > 0 and numpy.abs(steps[1.0][1]).max() > 0


def test_head_lr_scale_reaches_the_torch_wrapped_context_layer():
    """The head's BiLSTM context (a PyTorch shim) moves head_lr_scale times as far too."""
    from thinc.api import SGD

    context = {"@architectures": "spacy.TorchBiLSTMEncoder.v1", "width": 32, "depth": 1, "dropout": 0.0}
    steps = {}
    for scale in (1.0, 10.0):
        spacy.util.fix_random_seed(0)
        nlp = spacy.blank("en")
        model = {"@architectures": "spacy_egp.EfficientGlobalPointer.v2", "head_size": 16,
                 "tok2vec": SMALL_TOK2VEC, "context": context}
        pipe = nlp.add_pipe(PIPE, config={"model": model, "head_lr_scale": scale})
        examples = nested_examples(nlp, 6)
        nlp.initialize(lambda: examples)
        torch_module = next(shim for node in pipe.model.get_ref("context").walk() for shim in node.shims)._model
        before = {name: p.detach().clone().numpy() for name, p in torch_module.named_parameters()}
        pipe.update(examples, sgd=SGD(0.01))
        steps[scale] = {name: p.detach().numpy() - before[name] for name, p in torch_module.named_parameters()}
    for name, step in steps[1.0].items():
        assert numpy.abs(step).max() > 0, name
        numpy.testing.assert_allclose(steps[10.0][name], 10 * step, rtol=1e-3, atol=1e-7, err_msg=name)


def test_a_learn_rate_scaled_part_of_the_tok2vec_steps_its_scale_times_as_far():
    """spacy_egp.LearnRateScaled.v1 on one of two concatenated tok2vecs: that one moves 4 x as far in one SGD
    step (times head_lr_scale: 8 x, the two compose), the other and the head as they would unmarked."""
    from thinc.api import SGD

    steps = {}
    for scale, head_scale in ((1.0, 1.0), (4.0, 2.0)):
        spacy.util.fix_random_seed(0)
        nlp = spacy.blank("en")
        scaled = {"@architectures": "spacy_egp.LearnRateScaled.v1", "lr_scale": scale, "layer": SMALL_TOK2VEC}
        tok2vec = {"@layers": "concatenate.v1", "*": {"plain": SMALL_TOK2VEC, "scaled": scaled}}
        model = {"@architectures": "spacy_egp.EfficientGlobalPointer.v2", "head_size": 16, "tok2vec": tok2vec}
        pipe = nlp.add_pipe(PIPE, config={"model": model, "head_lr_scale": head_scale})
        examples = nested_examples(nlp, 6)
        nlp.initialize(lambda: examples)
        plain, marked = pipe.model.get_ref("tok2vec").layers
        layers = [next(node for node in part.walk() if node.has_param("W"))
                  for part in (plain, marked, pipe.model.get_ref("head"))]
        before = [layer.get_param("W").copy() for layer in layers]
        pipe.update(examples, sgd=SGD(0.01))
        steps[scale] = [layer.get_param("W") - old for layer, old in zip(layers, before)]
    assert all(numpy.abs(step).max() > 0 for step in steps[1.0])
    numpy.testing.assert_allclose(steps[4.0][0], steps[1.0][0], rtol=1e-3, atol=2e-8)
    numpy.testing.assert_allclose(steps[4.0][1], 4 * steps[1.0][1], rtol=1e-3, atol=2e-7)
    numpy.testing.assert_allclose(steps[4.0][2], 2 * steps[1.0][2], rtol=1e-3, atol=2e-7)


@pytest.mark.parametrize("scale", [0, -1.0, float("nan")])
def test_learn_rate_scaled_refuses_a_scale_that_is_not_positive(scale):
    with pytest.raises(ValueError, match="lr_scale must be a positive number"):
        spacy.util.registry.resolve({"m": {"@architectures": "spacy_egp.LearnRateScaled.v1", "lr_scale": scale,
                                           "layer": SMALL_TOK2VEC}}, validate=False)


def test_a_context_layer_between_tok2vec_and_head_learns_and_predicts_the_same_band():
    context = {"@architectures": "spacy.TorchBiLSTMEncoder.v1", "width": 32, "depth": 1, "dropout": 0.0}
    nlp = spacy.blank("en")
    model = {"@architectures": "spacy_egp.EfficientGlobalPointer.v2", "head_size": 16,
             "tok2vec": SMALL_TOK2VEC, "context": context}
    nlp.add_pipe(PIPE, config={"model": model})
    pipe = nlp.get_pipe(PIPE)
    assert pipe.model.has_ref("context")
    examples = nested_examples(nlp, 40, seed=2)
    losses = train(nlp, examples, n_epochs=10, learn_rate=0.005)
    assert losses[-1] < losses[0] / 2
    docs = [eg.predicted for eg in examples[:5]]
    updated, _ = pipe.model.begin_update(docs)
    numpy.testing.assert_allclose(updated.dataXd, pipe.predict(docs).dataXd, rtol=1e-5, atol=1e-5)

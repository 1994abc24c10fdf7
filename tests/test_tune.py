"""Per-label threshold tuning (spacy_egp.tune): the search, a real CLUENER run, the CLI's errors."""

import random
from pathlib import Path
from typing import Dict, List, Set, Tuple

import numpy
import pytest
import spacy
import srsly
from spacy.tokens import Doc, DocBin, Span
from spacy.training import Example
from thinc.types import Ragged

from conftest import train
from spacy_egp.data.convert import convert, write_docbin
from spacy_egp.cli.tune import main
from spacy_egp.pipeline.thresholds import Candidates, LabelTuning, TuneError, micro_f1, tune_label, tune_thresholds
from test_component import small_pipeline

SpanKey = Tuple[int, int, int, str]  # (doc, start, end, label)


# --------------------------------------------------------------------------
# (a) Synthetic logits with a brute-force optimum
# --------------------------------------------------------------------------


def brute_force_f1(logits: Dict[SpanKey, float], gold: Set[SpanKey], label: str, threshold: float) -> float:
    """F1 of one label when every span of probability >= the threshold is predicted, by plain counting."""
    probability = {key: 1 / (1 + numpy.exp(-numpy.float64(numpy.float32(x)))) for key, x in logits.items()}
    predicted = {key for key, p in probability.items() if key[3] == label and p >= threshold}
    n_gold = sum(1 for key in gold if key[3] == label)
    tp = len(predicted & gold)
    return 2 * tp / (len(predicted) + n_gold) if predicted or n_gold else 0.0


def brute_force_best(logits: Dict[SpanKey, float], gold: Set[SpanKey], label: str, floor: float) -> float:
    # Every set "probability >= t" is reached with t = the floor or one of the probabilities.
    candidates = [floor] + [1 / (1 + numpy.exp(-numpy.float64(numpy.float32(x))))
                            for key, x in logits.items() if key[3] == label]
    return max(brute_force_f1(logits, gold, label, t) for t in candidates)


def synthetic_case(seed: int = 0, n_docs: int = 12, width: int = 4):
    """Docs, per-span logits and gold spans: gold spans score higher on average, with overlap.

    Label C has no gold span; some gold spans are longer than the band (never scored).
    """
    rng = random.Random(seed)
    nlp = small_pipeline(max_span_length=width)
    labels = ["A", "B", "C"]
    docs, logits, gold = [], {}, set()
    for d in range(n_docs):
        doc = Doc(nlp.vocab, words=[f"w{d}_{i}" for i in range(rng.randint(3, 9))])
        docs.append(doc)
        for start in range(len(doc)):
            for end in range(start + 1, min(start + width, len(doc)) + 1):
                for label in labels:
                    is_gold = label != "C" and rng.random() < 0.15
                    logits[(d, start, end, label)] = round(rng.gauss(1.0 if is_gold else -1.5, 1.2), 3)
                    if is_gold:
                        gold.add((d, start, end, label))
        if len(doc) > width:
            gold.add((d, 0, len(doc), "A"))
    return nlp, labels, docs, logits, gold


def band_of(docs: List[Doc], logits: Dict[SpanKey, float], labels: List[str], width: int) -> Ragged:
    """The (T, W, K) band that set_annotations reads: cell (t, w, k) = span t .. t + w."""
    band = numpy.full((sum(len(doc) for doc in docs), width, len(labels)), -numpy.inf, dtype="float32")
    offset = 0
    for d, doc in enumerate(docs):
        for (doc_i, start, end, label), x in logits.items():
            if doc_i == d:
                band[offset + start, end - start - 1, labels.index(label)] = x
        offset += len(doc)
    return Ragged(band, numpy.asarray([len(doc) for doc in docs], dtype="int32"))


def synthetic_pipeline(width: int = 4, grid=None):
    nlp, labels, docs, logits, gold = synthetic_case(width=width)
    examples = []
    for d, doc in enumerate(docs):
        reference = Doc(nlp.vocab, words=[t.text for t in doc])
        reference.spans["sc"] = [Span(reference, s, e, label) for doc_i, s, e, label in sorted(gold) if doc_i == d]
        examples.append(Example(Doc(nlp.vocab, words=[t.text for t in doc]), reference))
    pipe = nlp.get_pipe("efficient_globalpointer")
    for label in labels:
        pipe.add_label(label)
    nlp.initialize(lambda: examples)
    by_text = {doc.text: d for d, doc in enumerate(docs)}

    def predict(batch):  # the logits come from the table, in any batch order
        batch = list(batch)
        wanted = {by_text[doc.text] for doc in batch}
        remap = {by_text[doc.text]: i for i, doc in enumerate(batch)}
        table = {(remap[d], s, e, lab): x for (d, s, e, lab), x in logits.items() if d in wanted}
        return band_of(batch, table, labels, width)

    pipe.predict = predict
    return nlp, examples, logits, gold


def test_tuned_thresholds_reach_the_brute_force_optimum_per_label():
    nlp, examples, logits, gold = synthetic_pipeline()
    report: Dict[str, LabelTuning] = {}
    thresholds = tune_thresholds(nlp, examples, batch_size=5, report=report)
    for label in ("A", "B"):
        best = brute_force_best(logits, gold, label, floor=0.0067)
        assert report[label].f1_after == pytest.approx(best)
        assert brute_force_f1(logits, gold, label, thresholds[label]) == pytest.approx(best)
        assert report[label].f1_before == pytest.approx(brute_force_f1(logits, gold, label, 0.5))
        assert report[label].n_gold == sum(1 for key in gold if key[3] == label)
    assert any(report[label].f1_after > report[label].f1_before for label in ("A", "B")), "nothing to tune"
    assert thresholds["C"] == 0.5 and "no gold" in report["C"].note
    # The pipeline now predicts with them, and spaCy's scorer agrees with the report.
    scores = nlp.evaluate([Example(nlp.make_doc(eg.reference.text), eg.reference) for eg in examples])
    assert scores["spans_sc_f"] == pytest.approx(micro_f1(report.values(), after=True))
    for label in ("A", "B"):
        assert scores["spans_sc_per_type"][label]["f"] == pytest.approx(report[label].f1_after)


def test_grid_search_reaches_the_best_grid_threshold():
    nlp, examples, logits, gold = synthetic_pipeline()
    grid = [0.12, 0.27, 0.38, 0.5, 0.62, 0.73, 0.88]
    thresholds = tune_thresholds(nlp, examples, grid=grid, apply=False)
    for label in ("A", "B"):
        assert thresholds[label] in grid
        best = max(brute_force_f1(logits, gold, label, t) for t in grid)
        assert brute_force_f1(logits, gold, label, thresholds[label]) == pytest.approx(best)
    assert nlp.get_pipe("efficient_globalpointer").cfg["thresholds"] == {}


@pytest.mark.parametrize("current,expected", [(0.0, 0.0), (3.5, 3.5), (3.2, 3.2), (2.5, 3.5), (9.0, 3.5)])
def test_ties_go_to_the_threshold_closest_to_the_current_one(current, expected):
    # Keeping the top 1 (t in [3, 4)) and keeping all 4 (t in [-5, 1)) both give F1 2/3.
    cands = Candidates(numpy.asarray([4, 3, 2, 1], "float32"), numpy.asarray([1, 0, 0, 1], bool), n_gold=2)
    result = tune_label("X", cands, current, floor=-5.0)
    assert result.f1_after == pytest.approx(2 / 3)
    assert result.new == pytest.approx(expected)


def test_neighbouring_float32_scores_get_an_exact_threshold():
    low = numpy.float32(1.0)
    high = numpy.nextafter(low, numpy.float32(2))
    cands = Candidates(numpy.asarray([high, low], "float32"), numpy.asarray([1, 0], bool), n_gold=1)
    result = tune_label("X", cands, 0.0, floor=-5.0)
    assert (result.tp_after, result.pred_after) == (1, 1)
    assert low < result.new <= high  # a float64 logit between the two float32 scores


def test_a_label_with_gold_but_no_candidate_keeps_a_threshold_above_every_score():
    # An untrained model may score no cell of a label above the floor: nothing to search,
    # F1 stays 0, and the search must not fail (it raised IndexError before).
    empty = Candidates(numpy.zeros(0, "float32"), numpy.zeros(0, bool), n_gold=3)
    result = tune_label("X", empty, 0.0, floor=-5.0)
    assert (result.tp_after, result.pred_after, result.f1_after) == (0, 0, 0.0)


# --------------------------------------------------------------------------
# (b) A real small training on CLUENER, tuned with the CLI
# --------------------------------------------------------------------------


def cluener_docbin(shared_data: Path, file: str, limit: int, output: Path) -> Path:
    docs, _ = convert("cluener", str(shared_data / "cluener" / file), lang="zh", limit=limit)
    return write_docbin(docs, str(output))


@pytest.fixture(scope="module")
def cluener_tuned(shared_data, tmp_path_factory):
    """A pipeline trained briefly on 400 CLUENER train docs (dev F1 about 20), and 150 dev docs."""
    tmp = tmp_path_factory.mktemp("tune")
    train_path = cluener_docbin(shared_data, "train.json", 400, tmp / "train.spacy")
    dev_path = cluener_docbin(shared_data, "dev.json", 150, tmp / "dev.spacy")
    spacy.util.fix_random_seed(0)
    nlp = small_pipeline(lang="zh")
    train_docs = DocBin().from_disk(train_path).get_docs(nlp.vocab)
    train(nlp, [Example(nlp.make_doc(doc.text), doc) for doc in train_docs], n_epochs=12)
    nlp.to_disk(tmp / "model")
    return tmp, dev_path


def dev_examples(nlp, dev_path: Path) -> List[Example]:
    return [Example(nlp.make_doc(doc.text), doc) for doc in DocBin().from_disk(dev_path).get_docs(nlp.vocab)]


def implied_spans(nlp, texts: List[str], thresholds: numpy.ndarray) -> Set[Tuple[int, int, int, str]]:
    """The spans the band's cells above the thresholds stand for, cell by cell."""
    pipe = nlp.get_pipe("efficient_globalpointer")
    docs = [nlp.make_doc(text) for text in texts]
    band = pipe.model.ops.to_numpy(pipe.predict(docs).dataXd)
    spans, offset = set(), 0
    for d, doc in enumerate(docs):
        for t, w, k in numpy.argwhere(band[offset : offset + len(doc)] >= thresholds).tolist():
            spans.add((d, t, t + w + 1, pipe.labels[k]))
        offset += len(doc)
    return spans


def test_cli_tunes_on_dev_and_spacy_load_uses_the_thresholds(cluener_tuned, capsys):
    tmp, dev_path = cluener_tuned
    before_nlp = spacy.load(tmp / "model")
    before = before_nlp.evaluate(dev_examples(before_nlp, dev_path))

    assert main([str(tmp / "model"), str(dev_path), "--output", str(tmp / "tuned")]) == 0
    out = capsys.readouterr().out
    assert "old thr" in out and "micro avg" in out and "DEV F1 before" in out

    nlp = spacy.load(tmp / "tuned")
    pipe = nlp.get_pipe("efficient_globalpointer")
    tuned = pipe.cfg["thresholds"]
    assert set(tuned) <= set(pipe.labels) and any(value != 0.5 for value in tuned.values())
    assert all(0.0 <= value <= 1.0 for value in tuned.values())
    config = spacy.util.load_config(tmp / "tuned" / "config.cfg")
    assert config["components"]["efficient_globalpointer"]["thresholds"] == pytest.approx(tuned)
    # The saved cfg file is read after the component is built, so it wins over a config override.
    override = {"components": {"efficient_globalpointer": {"thresholds": {pipe.labels[0]: 0.99}}}}
    overridden = spacy.load(tmp / "tuned", config=override)
    assert overridden.get_pipe("efficient_globalpointer").cfg["thresholds"] == tuned

    after = nlp.evaluate(dev_examples(nlp, dev_path))
    # Each label's F1 is maximised, so none can drop; micro F1 usually follows (not guaranteed).
    for label, scores in before["spans_sc_per_type"].items():
        assert after["spans_sc_per_type"][label]["f"] >= scores["f"], label
    assert after["spans_sc_f"] >= before["spans_sc_f"]
    assert f"DEV F1 before {before['spans_sc_f'] * 100:.2f} -> after {after['spans_sc_f'] * 100:.2f}" in out

    texts = [doc.text for doc in DocBin().from_disk(dev_path).get_docs(nlp.vocab)][:40]
    predicted = {(d, s.start, s.end, s.label_) for d, doc in enumerate(nlp.pipe(texts)) for s in doc.spans["sc"]}
    assert predicted == implied_spans(nlp, texts, pipe.logit_thresholds())
    assert predicted != implied_spans(nlp, texts, numpy.zeros(len(pipe.labels)))


# --------------------------------------------------------------------------
# (c) Clear errors, and the test-before/after comparison
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """An untrained pipeline with one label, and a .spacy file with gold spans in 'sc'."""
    tmp = tmp_path_factory.mktemp("tiny")
    nlp = small_pipeline()
    doc = nlp.make_doc("the big dog")
    doc.spans["sc"] = [Span(doc, 1, 3, "ANIMAL")]
    nlp.initialize(lambda: [Example(nlp.make_doc(doc.text), doc)])
    nlp.to_disk(tmp / "model")
    DocBin(docs=[doc]).to_disk(tmp / "dev.spacy")
    return tmp


def run_main(args: List[str], capsys) -> Tuple[int, str]:
    code = main([str(arg) for arg in args])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.err


def test_error_for_a_missing_model(tiny_model, capsys):
    code, err = run_main([tiny_model / "nope", tiny_model / "dev.spacy", "-o", tiny_model / "out"], capsys)
    assert code == 1 and "model not found" in err and "model-best" in err


def test_error_for_missing_dev_data(tiny_model, capsys):
    code, err = run_main([tiny_model / "model", tiny_model / "nope.spacy", "-o", tiny_model / "out"], capsys)
    assert code == 1 and "dev data not found" in err and "convert" in err


def test_error_for_a_pipeline_without_the_component(tiny_model, capsys):
    spacy.blank("en").to_disk(tiny_model / "blank")
    code, err = run_main([tiny_model / "blank", tiny_model / "dev.spacy", "-o", tiny_model / "out"], capsys)
    assert code == 1 and "efficient_globalpointer" in err and "--component" in err
    code, err = run_main([tiny_model / "model", tiny_model / "dev.spacy", "-o", tiny_model / "out",
                          "--component", "other"], capsys)
    assert code == 1 and "'other'" in err


def test_error_for_dev_data_without_the_spans_key(tiny_model, capsys):
    code, err = run_main([tiny_model / "model", tiny_model / "dev.spacy", "-o", tiny_model / "out",
                          "--spans-key", "gold"], capsys)
    assert code == 1 and "doc.spans['gold']" in err and "keys found: ['sc']" in err and "--spans-key" in err
    assert not (tiny_model / "out").exists()


def test_error_for_a_bad_grid(tiny_model, capsys):
    code, err = run_main([tiny_model / "model", tiny_model / "dev.spacy", "-o", tiny_model / "out",
                          "--grid=1:0:0.5"], capsys)
    assert code == 1 and "START:STOP:STEP" in err
    code, err = run_main([tiny_model / "model", tiny_model / "dev.spacy", "-o", tiny_model / "out",
                          "--grid=-2:2:0.5"], capsys)
    assert code == 1 and "probabilities" in err


def test_compare_warns_when_the_test_data_are_the_tuning_data(tiny_model, tmp_path, capsys):
    srsly.write_json(tmp_path / "before.json", {"spans_sc_f": 0.5})
    srsly.write_json(tmp_path / "after.json", {"spans_sc_f": 0.55})
    copy = tmp_path / "test.spacy"
    copy.write_bytes((tiny_model / "dev.spacy").read_bytes())
    assert main(["compare", str(tmp_path / "before.json"), str(tmp_path / "after.json"),
                 "--tuning-data", str(tiny_model / "dev.spacy"), "--test-data", str(copy)]) == 0
    out = capsys.readouterr().out
    assert "TEST F1 before tuning 50.00" in out and "after tuning  55.00" in out and "+5.00" in out
    assert "WARNING" in out and "same" in out and "tuned on this test set" in out

    other = Doc(spacy.blank("en").vocab, words=["another", "text"])
    DocBin(docs=[other]).to_disk(copy)
    assert main(["compare", str(tmp_path / "before.json"), str(tmp_path / "after.json"),
                 "--tuning-data", str(tiny_model / "dev.spacy"), "--test-data", str(copy)]) == 0
    assert "WARNING" not in capsys.readouterr().out

    code, err = run_main(["compare", tmp_path / "missing.json", tmp_path / "after.json", "--tuning-data",
                          tiny_model / "dev.spacy", "--test-data", copy], capsys)
    assert code == 1 and "missing.json" in err


def test_python_api_refuses_examples_without_the_spans_key(tiny_model):
    nlp = spacy.load(tiny_model / "model")
    examples = [Example(nlp.make_doc(doc.text), doc)
                for doc in DocBin().from_disk(tiny_model / "dev.spacy").get_docs(nlp.vocab)]
    with pytest.raises(TuneError, match=r"doc.spans\['gold'\]"):
        tune_thresholds(nlp, examples, spans_key="gold")
    assert nlp.get_pipe("efficient_globalpointer").cfg["thresholds"] == {}

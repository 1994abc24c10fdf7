"""Render a pipeline's (nested) span predictions against the gold, displaCy span style.

Command line::

    python -m spacy_egp.visualize MODEL DATA OUTPUT.html [--limit 8] [--spans-key sc]

Takes the first LIMIT docs of DATA (a .spacy file) that have nested gold spans,
topped up with the first other docs when there are fewer, and writes one HTML
page where each doc is shown twice:

- gold: the gold spans; those the pipeline did not predict read "LABEL ✗ missed";
- predicted: the predicted spans with their probability ("LABEL 0.93"); those
  that are not gold spans read "LABEL 0.41 ✗ spurious";

and below the two views a line names the missed and the spurious spans in
words (labels of adjacent spans can overlap on the page).

A span is correct when its characters and label match exactly (spaCy's scorer
counts the same way). Each label has one colour from a fixed palette, given in
the order of the sorted labels, in both views.
"""

import html
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Set, Tuple

import spacy
from spacy import displacy
from spacy.displacy.templates import TPL_FIGURE, TPL_PAGE, TPL_SPAN, TPL_SPAN_SLICE, TPL_SPAN_START
from spacy.tokens import Doc, DocBin, Span

from ..pipeline.nesting import nesting

# Light colours, so that black labels and the red marks stay readable on them;
# label i (sorted) gets PALETTE[i % len(PALETTE)].
PALETTE = (
    "#7aecec", "#feca74", "#c5bdfd", "#bfeeb7", "#ffcba4", "#e2c4fc", "#9cc9cc", "#ffeb80",
    "#ffc2cc", "#a8d5f0", "#e4e7d2", "#f0e0a0", "#c2d69b", "#f5d0e6", "#bfe1d9", "#d5e8a0",
)
MISSED = "✗ missed"
SPURIOUS = "✗ spurious"
MARK_COLOR = "#b00000"  # the marks are red, so that errors stand out from the correct spans
SpanId = Tuple[int, int, str]  # start char, end char (exclusive), label


def label_colors(labels: Iterable[str]) -> Dict[str, str]:
    """One palette colour per label, in the order of the sorted labels."""
    return {label: PALETTE[i % len(PALETTE)] for i, label in enumerate(sorted(set(labels)))}


def _spans(doc: Doc, spans_key: str) -> List[Span]:
    return list(doc.spans.get(spans_key, []))


def _has_nesting(doc: Doc, spans_key: str) -> bool:
    return bool(nesting((s.start, s.end) for s in _spans(doc, spans_key)).nested_pairs)


def pick_docs(docs: List[Doc], spans_key: str, limit: int) -> List[Doc]:
    """Up to LIMIT docs, those with nested gold spans first (in file order)."""
    nested = [doc for doc in docs if _has_nesting(doc, spans_key)]
    rest = [doc for doc in docs if not _has_nesting(doc, spans_key)]
    chosen = (nested + rest)[:limit]
    order = {id(doc): i for i, doc in enumerate(docs)}
    return sorted(chosen, key=lambda doc: order[id(doc)])


def span_ids(doc: Doc, spans_key: str) -> Set[SpanId]:
    """The (start char, end char, label) of the spans in doc.spans[spans_key]."""
    return {(s.start_char, s.end_char, s.label_) for s in _spans(doc, spans_key)}


def span_scores(doc: Doc, spans_key: str) -> Optional[Sequence[float]]:
    """The probabilities the component stored in attrs["scores"], one per span (None if absent)."""
    group = doc.spans.get(spans_key)
    scores = None if group is None else group.attrs.get("scores")
    return None if scores is None else [float(score) for score in scores]


def view(doc: Doc, spans_key: str, title: str, labels: List[str]) -> Dict[str, Any]:
    """displaCy's manual span format for DOC, span i shown with labels[i]."""
    spans = [
        {"start_token": span.start, "end_token": span.end, "label": label}
        for span, label in zip(_spans(doc, spans_key), labels)
    ]
    return {"text": doc.text, "tokens": [t.text for t in doc], "spans": spans, "title": title}


def _mark(text: str) -> str:
    # displaCy puts labels into the page as they are, so a label may hold markup
    return f' <span style="color: {MARK_COLOR}">{text}</span>'


def gold_labels(gold: Doc, spans_key: str, predicted: Set[SpanId]) -> List[str]:
    """Each gold span's label, with MISSED when it was not predicted."""
    return [
        _label(s.label_) + ("" if (s.start_char, s.end_char, s.label_) in predicted else _mark(MISSED))
        for s in _spans(gold, spans_key)
    ]


def predicted_labels(pred: Doc, spans_key: str, gold: Set[SpanId]) -> List[str]:
    """Each predicted span's label and probability, with SPURIOUS when it is not a gold span."""
    spans = _spans(pred, spans_key)
    scores = span_scores(pred, spans_key) or [None] * len(spans)
    return [
        _label(s.label_) + ("" if score is None else f" {score:.2f}")
        + ("" if (s.start_char, s.end_char, s.label_) in gold else _mark(SPURIOUS))
        for s, score in zip(spans, scores)
    ]


def _label(label: str) -> str:
    # displaCy puts labels into the page unescaped
    return html.escape(label)


def span_options(colors: Dict[str, str]) -> Dict[str, Any]:
    """displaCy's span options: the colours, each label on one line just below its span's bar.

    The label box is as wide as its first token: "PER 0.93" under one Chinese
    character would otherwise wrap into an unreadable column. displaCy centres
    labels on the bar, which hides where a span with a longer label ends; below
    it (with more room between the bars, and below the last one) the bar stays visible.
    """
    start = TPL_SPAN_START.replace("top: -0.5em;", "top: 6px;").replace(
        "font-size: 0.6em;", "font-size: 0.6em; white-space: nowrap;")
    return {"colors": colors, "top_offset_step": 22, "span_label_offset": 30,
            "template": {"span": TPL_SPAN, "slice": TPL_SPAN_SLICE, "start": start}}


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def doc_views(i: int, gold: Doc, pred: Doc, spans_key: str) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """The gold and the predicted view of doc I, with missed and spurious spans marked."""
    gold_ids, pred_ids = span_ids(gold, spans_key), span_ids(pred, spans_key)
    missed, spurious = len(gold_ids - pred_ids), len(pred_ids - gold_ids)
    return (
        view(gold, spans_key, f"doc {i}: gold, {_count(len(gold_ids), 'span')}, {missed} missed",
             gold_labels(gold, spans_key, pred_ids)),
        view(pred, spans_key, f"doc {i}: predicted, {_count(len(pred_ids), 'span')}, {spurious} spurious",
             predicted_labels(pred, spans_key, gold_ids)),
    )


def errors(gold: Doc, pred: Doc, spans_key: str) -> str:
    """One line naming the missed and the spurious spans of a doc (labels may overlap on the page)."""

    def listed(spans: List[Span], others: Set[SpanId]) -> str:
        wrong = [f"{html.escape(s.text)} ({_label(s.label_)})" for s in spans
                 if (s.start_char, s.end_char, s.label_) not in others]
        return ", ".join(wrong) or "none"

    missed = listed(_spans(gold, spans_key), span_ids(pred, spans_key))
    spurious = listed(_spans(pred, spans_key), span_ids(gold, spans_key))
    return f'<p style="font-size: 0.9em">{_mark(MISSED)}: {missed};{_mark(SPURIOUS)}: {spurious}</p>'


def legend(colors: Dict[str, str]) -> str:
    """A line of coloured labels and what the marks mean."""
    chips = " ".join(
        f'<mark style="background: {color}; padding: 0.1em 0.4em; border-radius: 0.3em">'
        f"{_label(label)}</mark>"
        for label, color in colors.items()
    )
    return (
        f'<p style="line-height: 2">{chips}</p>'
        f"<p>Gold spans the pipeline did not predict:{_mark(MISSED)}. Predicted spans with their "
        f"probability; those that are not gold spans:{_mark(SPURIOUS)}. Exact match of characters and label.</p>"
    )


def page_html(gold_docs: Sequence[Doc], predicted: Sequence[Doc], spans_key: str, lang: str = "en") -> str:
    """One HTML page: the legend, then per doc its gold and its predicted view."""
    colors = label_colors(
        s.label_ for doc in [*gold_docs, *predicted] for s in _spans(doc, spans_key)
    )
    figures = []
    for i, (gold, pred) in enumerate(zip(gold_docs, predicted)):
        views = doc_views(i, gold, pred, spans_key)
        # displaCy looks colours up by the whole rendered label ("PER 0.93 ✗ spurious")
        shown = {
            rendered["label"]: colors[span.label_]
            for doc, doc_view in zip((gold, pred), views)
            for span, rendered in zip(_spans(doc, spans_key), doc_view["spans"])
        }
        markup = displacy.render(list(views), style="span", manual=True, page=False, jupyter=False,
                                 options=span_options(shown))
        figures.append(TPL_FIGURE.format(content=markup + errors(gold, pred, spans_key)))
    return TPL_PAGE.format(content=legend(colors) + "".join(figures), lang=lang, dir="ltr")


def render(model: str, data_path: str, output: str, *, spans_key: str = "sc", limit: int = 8) -> Path:
    """Predict the chosen docs of DATA with MODEL and write the page to OUTPUT."""
    nlp = spacy.load(model)
    gold_docs = pick_docs(list(DocBin().from_disk(data_path).get_docs(nlp.vocab)), spans_key, limit)
    predicted = list(nlp.pipe(doc.text for doc in gold_docs))
    path = Path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page_html(gold_docs, predicted, spans_key, nlp.lang), encoding="utf-8")
    return path

"""Gold spans to band cells, and band cells back to spans.

One copy of the mapping between spans (token offsets, end exclusive) and the
cells (t, w, label) of the score band (spacy_egp.heads): used by the component
(training and decoding) and by threshold tuning. Problems with gold spans are
counted here too, with the same wording wherever they are met.
"""

import math
import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, List, Optional, Sequence, Set, Tuple

import numpy
from spacy.tokens import Doc
from spacy.training import Example

Boundary = Tuple[int, int]
Span3 = Tuple[int, int, str]  # (start token, end token exclusive, label)


@dataclass
class Nesting:
    """How a set of distinct (start, end) boundaries (end exclusive) overlap.

    nested_pairs: pairs (outer, inner) with inner inside outer;
    inside: the boundaries that lie inside another; containing: those that
    contain another; crossing_pairs: pairs that overlap without nesting.
    """

    nested_pairs: List[Tuple[Boundary, Boundary]] = field(default_factory=list)
    inside: Set[Boundary] = field(default_factory=set)
    containing: Set[Boundary] = field(default_factory=set)
    crossing_pairs: List[Tuple[Boundary, Boundary]] = field(default_factory=list)

    @property
    def nested(self) -> Set[Boundary]:
        """The boundaries that contain, or lie inside, another one."""
        return self.inside | self.containing


def nesting(boundaries: Iterable[Boundary]) -> Nesting:
    """Classify every overlapping pair of the distinct boundaries (end exclusive)."""
    spans = sorted(set(boundaries))
    found = Nesting()
    for i, (a_start, a_end) in enumerate(spans):
        for b_start, b_end in spans[i + 1 :]:
            if b_start >= a_end:
                break
            # sorted: a_start <= b_start < a_end
            if b_end <= a_end or b_start == a_start:
                outer, inner = ((a_start, a_end), (b_start, b_end)) if b_end <= a_end else ((b_start, b_end), (a_start, a_end))
                found.nested_pairs.append((outer, inner))
                found.inside.add(inner)
                found.containing.add(outer)
            else:
                found.crossing_pairs.append(((a_start, a_end), (b_start, b_end)))
    return found


# --------------------------------------------------------------------------
# Gold spans -> band cells
# --------------------------------------------------------------------------


def preview(text: str) -> str:
    """A short repr of a doc's text for messages."""
    return repr(text if len(text) <= 60 else text[:57] + "...")


def describe(doc: Doc, start: int, end: int, label: str) -> str:
    """A span named in messages: offsets, text, label and its doc."""
    return f"span [{start}:{end}] {doc[start:end].text!r} ({label}) in doc {preview(doc.text)}"


class GoldProblems(Counter):
    """Counts of gold spans that cannot be learned as given, by kind of problem.

    Each kind warns at its 1st, 10th, 100th, ... occurrence, naming the latest
    span, so a large corpus with a systematic problem is not a wall of warnings.
    """

    def __init__(self, owner: str, *, warn: bool = True) -> None:
        super().__init__()
        self.owner = owner
        self.warn = warn

    def report(self, problem: str, what: str) -> None:
        self[problem] += 1
        count = self[problem]
        if self.warn and count == 10 ** int(math.log10(count)):
            warnings.warn(
                f"[{self.owner}] {count} gold span(s) so far {problem}; latest: {what}. "
                f"Training continues; the counts are in "
                f"nlp.get_pipe({self.owner!r}).gold_span_problems.",
                stacklevel=4,
            )


def aligned_gold_spans(eg: Example, spans_key: str, problems: GoldProblems) -> List[Span3]:
    """The reference spans of doc.spans[spans_key] on the predicted tokens, as (start, end, label).

    Zero-length and misaligned spans are skipped and reported; duplicates and
    crossing spans are kept (each cell is scored on its own) and reported, as
    they usually mean an annotation error.
    """
    reference = []
    for span in eg.reference.spans.get(spans_key, []):
        if len(span) == 0:
            problems.report("skipped: zero-length", describe(eg.reference, span.start, span.end, span.label_))
        else:
            reference.append(span)
    try:
        aligned = eg.get_aligned_spans_y2x(reference, allow_overlap=True)
    except ValueError as error:
        raise ValueError(
            f"[{problems.owner}] The predicted and reference docs of an example have different "
            f"texts ({preview(eg.predicted.text)} vs {preview(eg.reference.text)}), so "
            "their gold spans cannot be placed. Build each Example from two docs of the "
            "same text."
        ) from error
    if len(aligned) < len(reference):
        aligned_keys = {(s.start_char, s.end_char, s.label_) for s in aligned}
        for span in reference:
            if (span.start_char, span.end_char, span.label_) not in aligned_keys:
                problems.report(
                    "skipped: misaligned with the predicted tokens",
                    describe(eg.reference, span.start, span.end, span.label_),
                )
    spans = [(span.start, span.end, span.label_) for span in aligned]
    _report_duplicates_and_crossings(eg.predicted, spans, problems)
    return spans


def _report_duplicates_and_crossings(doc: Doc, spans: List[Span3], problems: GoldProblems) -> None:
    seen = set()
    for span in spans:
        if span in seen:
            problems.report("kept once: duplicate", describe(doc, *span))
        seen.add(span)
    for (start, end), (other_start, other_end) in nesting((s, e) for s, e, _ in spans).crossing_pairs:
        problems.report(
            "kept: crossing another gold span", f"{describe(doc, start, end, '')} and [{other_start}:{other_end}]"
        )


def gold_cells(
    examples: Sequence[Example],
    spans_key: str,
    labels: Sequence[str],
    max_span_length: Optional[int],
    problems: GoldProblems,
    *,
    skip_unknown_labels: bool = False,
) -> numpy.ndarray:
    """The band cells (t, w, label) of the examples' aligned gold spans, each once, (P, 3) int64.

    t counts tokens over the examples' predicted docs concatenated, in order,
    as the band does. A span longer than max_span_length has no cell: it is
    skipped and reported. An unknown label is an error for training; scoring
    (skip_unknown_labels) leaves such a span without a cell, a sure miss.
    """
    cells = set()
    label_index = {label: i for i, label in enumerate(labels)}
    offset = 0
    for eg in examples:
        for start, end, label in aligned_gold_spans(eg, spans_key, problems):
            if label not in label_index:
                if skip_unknown_labels:
                    continue
                raise ValueError(_unknown_label_message(problems.owner, eg, start, end, label, labels))
            if max_span_length is not None and end - start > max_span_length:
                problems.report(
                    f"skipped: longer than max_span_length={max_span_length}",
                    describe(eg.predicted, start, end, label),
                )
            else:
                cells.add((offset + start, end - start - 1, label_index[label]))
        offset += len(eg.predicted)
    return numpy.asarray(sorted(cells), dtype="int64").reshape((-1, 3))


def _unknown_label_message(owner: str, eg: Example, start: int, end: int, label: str, labels: Sequence[str]) -> str:
    return (
        f"[{owner}] Gold {describe(eg.predicted, start, end, label)} has label "
        f"{label!r}, which the component was not initialized with (labels: "
        f"{list(labels)}). Initialize with data that contains it (or list it in "
        f"[initialize.components.{owner}.labels]), or remove it from the data."
    )


# --------------------------------------------------------------------------
# Band cells -> predicted spans
# --------------------------------------------------------------------------

# Cells compared with the thresholds at once: bounds decoding's working memory
# (a boolean and a few indices per cell) whatever the doc length.
DECODE_CHUNK_CELLS = 1 << 21


@dataclass
class DecodedCells:
    """The cells kept by `cells_above`, ordered by (token, width, label)."""

    token: numpy.ndarray
    width: numpy.ndarray
    label: numpy.ndarray
    logit: numpy.ndarray
    capped_docs: List[int]  # docs that had more cells above threshold than their cap


def cells_above(
    band: numpy.ndarray, lengths: numpy.ndarray, thresholds: numpy.ndarray, caps: numpy.ndarray
) -> DecodedCells:
    """The cells of a (T, W, K) logit band above their label's threshold, at most caps[d] per doc.

    thresholds (K,) logits (float64, so that a float32 logit is compared
    exactly); a cell is kept when its logit is >= its label's threshold, the
    only test of a cell. caps (n_docs,) ints: where a doc has more cells
    above threshold than its cap, its highest-scoring cells are kept.
    """
    lengths = numpy.asarray(lengths, dtype="int64")
    starts = numpy.cumsum(lengths) - lengths
    row_cells = max(1, band.shape[1] * band.shape[2])
    parts, capped = [], []
    doc = 0
    while doc < len(lengths):
        # as many whole docs as fit in one chunk (at least one)
        last = doc + 1
        while last < len(lengths) and (starts[last] + lengths[last] - starts[doc]) * row_cells <= DECODE_CHUNK_CELLS:
            last += 1
        if last == doc + 1 and lengths[doc] * row_cells > DECODE_CHUNK_CELLS:
            found, over = _long_doc_cells(band, starts[doc], lengths[doc], thresholds, int(caps[doc]))
            capped.extend([doc] if over else [])
        else:
            found, over_docs = _docs_cells(band, starts, lengths, doc, last, thresholds, caps)
            capped.extend(over_docs)
        parts.append(found)
        doc = last
    token, width, label, logit = (numpy.concatenate([p[i] for p in parts]) if parts else _EMPTY[i] for i in range(4))
    return DecodedCells(token, width, label, logit, capped)


_EMPTY = (numpy.zeros(0, "int64"),) * 3 + (numpy.zeros(0, "float32"),)


def _nonzero_cells(block: numpy.ndarray, thresholds: numpy.ndarray, first_token: int) -> Tuple[numpy.ndarray, ...]:
    token, width, label = numpy.nonzero(block >= thresholds)
    return token + first_token, width, label, block[token, width, label]


def _keep_top(found: Tuple[numpy.ndarray, ...], where: numpy.ndarray, cap: int) -> numpy.ndarray:
    """Indices (sorted) of the `cap` highest logits among found[where]."""
    candidates = numpy.flatnonzero(where)
    if len(candidates) <= cap:
        return candidates
    top = numpy.argpartition(-found[3][candidates], cap - 1)[:cap] if cap > 0 else []
    return numpy.sort(candidates[top])


def _docs_cells(band, starts, lengths, first, last, thresholds, caps) -> Tuple[Tuple[numpy.ndarray, ...], List[int]]:
    """Cells of docs first..last-1 from one comparison over their rows."""
    begin, end = starts[first], starts[last - 1] + lengths[last - 1]
    found = _nonzero_cells(band[begin:end], thresholds, begin)
    doc_of = numpy.searchsorted(starts[first:last], found[0], side="right") - 1 + first
    counts = numpy.bincount(doc_of - first, minlength=last - first)
    over = [first + int(i) for i in numpy.flatnonzero(counts > caps[first:last])]
    if over:
        keep = numpy.ones(len(found[0]), bool)
        for doc in over:
            keep[doc_of == doc] = False
            keep[_keep_top(found, doc_of == doc, int(caps[doc]))] = True
        found = tuple(array[keep] for array in found)
    return found, over


def _long_doc_cells(band, start, length, thresholds, cap) -> Tuple[Tuple[numpy.ndarray, ...], bool]:
    """Cells of one long doc, its rows compared chunk by chunk; never more than 2 * cap kept at once."""
    rows = max(1, DECODE_CHUNK_CELLS // max(1, band.shape[1] * band.shape[2]))
    kept, n_kept, over = [], 0, False
    for begin in range(start, start + length, rows):
        found = _nonzero_cells(band[begin : min(begin + rows, start + length)], thresholds, begin)
        kept.append(found)
        n_kept += len(found[0])
        if n_kept > 2 * cap:
            kept, n_kept, over = [_top_of(kept, cap)], cap, True
    if n_kept > cap:
        kept, over = [_top_of(kept, cap)], True
    return tuple(numpy.concatenate([k[i] for k in kept]) for i in range(4)), over


def _top_of(kept: List[Tuple[numpy.ndarray, ...]], cap: int) -> Tuple[numpy.ndarray, ...]:
    found = tuple(numpy.concatenate([k[i] for k in kept]) for i in range(4))
    index = _keep_top(found, numpy.ones(len(found[0]), bool), cap)
    return tuple(array[index] for array in found)

"""Gold spans and relations to band cells.

One copy of the mapping from spans (token offsets, end exclusive) to the
cells (t, w, label) of the score band (spacy_egp.ml.heads), and from relations
to the cells of the pair band: used by the components' losses and by threshold
tuning (decoding, the way back, is spacy_egp.pipeline.decoding). Problems with gold spans are
counted here too, with the same wording wherever they are met.
"""

import math
import warnings
from collections import Counter
from typing import Callable, Iterator, List, Optional, Sequence, Tuple

import numpy
from spacy.tokens import Doc, Span
from spacy.training import Example

from ..ml.util import doc_starts
from .nesting import Span3, nesting
from .relations import RelationOffsets, relation_offsets

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
    spans_of: Optional[Callable[[Example], List[Span3]]] = None,
) -> numpy.ndarray:
    """The band cells (t, w, label) of the examples' aligned gold spans, each once, (P, 3) int64.

    t counts tokens over the examples' predicted docs concatenated, in order,
    as the band does. A span longer than max_span_length has no cell: it is
    skipped and reported. An unknown label is an error for training; scoring
    (skip_unknown_labels) leaves such a span without a cell, a sure miss.
    spans_of: an example's gold spans on its predicted tokens; default
    `aligned_gold_spans` of doc.spans[spans_key] (gplinker's entity roles
    give the relation arguments instead, `role_gold_spans`).
    """
    if spans_of is None:
        spans_of = lambda eg: aligned_gold_spans(eg, spans_key, problems)  # noqa: E731
    found = span_cells(examples, spans_of, labels, max_span_length, problems, skip_unknown_labels=skip_unknown_labels)
    cells = {cell for _, _, cell in found}
    return numpy.asarray(sorted(cells), dtype="int64").reshape((-1, 3))


def span_cells(
    examples: Sequence[Example],
    spans_of: Callable[[Example], List[Span3]],
    labels: Sequence[str],
    max_span_length: Optional[int],
    problems: GoldProblems,
    *,
    skip_unknown_labels: bool = False,
    kind: str = "Gold",
) -> Iterator[Tuple[int, int, Tuple[int, int, int]]]:
    """(example index, span index, band cell) of each span of `spans_of` that has a cell.

    The one mapping of spans to cells, for the gold spans (`gold_cells`) and a
    teacher's scored spans (spacy_egp.pipeline.distill): the span index points
    into spans_of(eg), so a caller can carry a value per span (a probability).
    kind (str): What the spans are, in messages ("Gold", "Teacher").
    """
    label_index = {label: i for i, label in enumerate(labels)}
    which = "" if kind == "Gold" else f" ({kind.lower()})"
    starts = doc_starts(numpy, [len(eg.predicted) for eg in examples]).tolist()
    for eg_index, (eg, offset) in enumerate(zip(examples, starts)):
        for span_index, (start, end, label) in enumerate(spans_of(eg)):
            if label not in label_index:
                if skip_unknown_labels:
                    continue
                raise ValueError(_unknown_label_message(problems.owner, eg, start, end, label, labels, kind))
            if max_span_length is not None and end - start > max_span_length:
                problems.report(
                    f"skipped{which}: longer than max_span_length={max_span_length}",
                    describe(eg.predicted, start, end, label),
                )
            else:
                yield eg_index, span_index, (offset + start, end - start - 1, label_index[label])


def _unknown_label_message(
    owner: str, eg: Example, start: int, end: int, label: str, labels: Sequence[str], kind: str = "Gold"
) -> str:
    return (
        f"[{owner}] {kind} {describe(eg.predicted, start, end, label)} has label "
        f"{label!r}, which the component was not initialized with (labels: "
        f"{list(labels)}). Initialize with data that contains it (or list it in "
        f"[initialize.components.{owner}.labels]), or remove it from the data."
    )


# --------------------------------------------------------------------------
# Relations (GPLinker): gold relations -> pair-band cells
# --------------------------------------------------------------------------


def describe_relation(doc: Doc, record: RelationOffsets) -> str:
    """A relation named in messages: its arguments, label and doc."""
    head, tail = doc[record.head_start : record.head_end], doc[record.tail_start : record.tail_end]
    return (
        f"relation {record.label!r} from [{record.head_start}:{record.head_end}] {head.text!r} "
        f"({record.head_label}) to [{record.tail_start}:{record.tail_end}] {tail.text!r} "
        f"({record.tail_label}) in doc {preview(doc.text)}"
    )


def pair_cell(first: int, second: int, width: int) -> Optional[Tuple[int, int]]:
    """The cell (t, w) of the ordered token pair (first, second) in a pair band of this width (spacy_egp.ml.heads).

    RETURNS (Optional[Tuple[int, int]]): None when |second - first| >= width (outside the window).
    """
    distance = second - first
    if abs(distance) >= width:
        return None
    return (first, distance) if distance >= 0 else (second, width - distance)


def pair_of_cells(token: numpy.ndarray, column: numpy.ndarray, width: int) -> Tuple[numpy.ndarray, numpy.ndarray]:
    """The ordered token pairs (first, second) of pair-band cells (token, column): the inverse of pair_cell."""
    forward = column < width
    offset = numpy.where(forward, column, column - width)
    return numpy.where(forward, token, token + offset), numpy.where(forward, token + offset, token)


def role_gold_spans(eg: Example, role_labels: Tuple[str, str], problems: GoldProblems) -> List[Span3]:
    """The entity roles' gold spans: every relation's head as role_labels[0], its tail as role_labels[1].

    On the predicted tokens (by character offsets); a relation with an
    argument misaligned with them is skipped and reported, as in
    `gold_pair_cells`. The reference's subject/object channels, for data
    whose entities carry no types: entities in no relation are not learned.
    """
    spans = set()
    for record in relation_offsets(eg.reference):
        arguments = _aligned_arguments(eg, record, problems)
        if arguments is not None:
            (head, tail), (head_role, tail_role) = arguments, role_labels
            spans.add((head.start, head.end, head_role))
            spans.add((tail.start, tail.end, tail_role))
    return sorted(spans)


def gold_pair_cells(
    examples: Sequence[Example],
    spans_key: str,
    relation_labels: Sequence[str],
    width: int,
    problems: GoldProblems,
    *,
    skip_unknown_labels: bool = False,
    check_arguments: bool = True,
) -> numpy.ndarray:
    """The pair-band cells (t, w, channel) of the examples' gold relations, each once, (P, 3) int64.

    A relation of label r has its head pair (head start, tail start) in
    channel r and its tail pair (head end - 1, tail end - 1) in channel
    len(relation_labels) + r; t counts tokens over the predicted docs
    concatenated. Both arguments must be gold spans of doc.spans[spans_key]
    (an error otherwise, as is an unknown label unless skip_unknown_labels),
    unless check_arguments is False (entity roles: the arguments are the entities).
    A relation whose arguments are misaligned with the predicted tokens or
    farther apart than the window (width - 1 tokens) is skipped and reported.
    """
    label_index = {label: i for i, label in enumerate(relation_labels)}
    cells = set()
    starts = doc_starts(numpy, [len(eg.predicted) for eg in examples]).tolist()
    for eg, offset in zip(examples, starts):
        entities = {(span.start, span.end, span.label_) for span in eg.reference.spans.get(spans_key, [])}
        for record in relation_offsets(eg.reference):
            if record.label not in label_index:
                if skip_unknown_labels:
                    continue
                raise ValueError(_unknown_relation_message(problems.owner, eg.reference, record, relation_labels))
            for argument in (record.head, record.tail) if check_arguments else ():
                if argument not in entities:
                    raise ValueError(_argument_not_entity_message(problems.owner, eg.reference, record, argument, spans_key))
            pairs = _relation_pair_cells(eg, record, width, problems)
            if pairs is not None:
                (head_t, head_w), (tail_t, tail_w) = pairs
                cells.add((offset + head_t, head_w, label_index[record.label]))
                cells.add((offset + tail_t, tail_w, len(relation_labels) + label_index[record.label]))
    return numpy.asarray(sorted(cells), dtype="int64").reshape((-1, 3))


def _relation_pair_cells(
    eg: Example, record: RelationOffsets, width: int, problems: GoldProblems
) -> Optional[Tuple[Tuple[int, int], Tuple[int, int]]]:
    """The head-pair and tail-pair cells of a gold relation on the predicted tokens, or None (reported)."""
    reference = eg.reference
    arguments = _aligned_arguments(eg, record, problems)
    if arguments is None:
        return None
    head, tail = arguments
    head_cell = pair_cell(head.start, tail.start, width)
    tail_cell = pair_cell(head.end - 1, tail.end - 1, width)
    if head_cell is None or tail_cell is None:
        problems.report(f"skipped (relation): arguments more than {width - 1} tokens apart (max_pair_distance)",
                        describe_relation(reference, record))
        return None
    return head_cell, tail_cell


def _aligned_arguments(eg: Example, record: RelationOffsets, problems: GoldProblems) -> Optional[Tuple[Span, Span]]:
    """A gold relation's head and tail on the predicted tokens, or None (reported) when one is misaligned."""
    arguments = []
    for start, end in ((record.head_start, record.head_end), (record.tail_start, record.tail_end)):
        # character offsets carry the argument over to the predicted tokenization
        span = eg.reference[start:end]
        aligned = eg.predicted.char_span(span.start_char, span.end_char)
        if aligned is None:
            problems.report("skipped (relation): argument misaligned with the predicted tokens",
                            describe_relation(eg.reference, record))
            return None
        arguments.append(aligned)
    return arguments[0], arguments[1]


def _unknown_relation_message(owner: str, doc: Doc, record: RelationOffsets, labels: Sequence[str]) -> str:
    return (
        f"[{owner}] Gold {describe_relation(doc, record)} has a relation label the component "
        f"was not initialized with (relation labels: {list(labels)}). Initialize with data that "
        f"contains it (or list it in [initialize.components.{owner}.relation_labels]), or remove it."
    )


def _argument_not_entity_message(owner: str, doc: Doc, record: RelationOffsets, argument: Span3, key: str) -> str:
    return (
        f"[{owner}] Gold {describe_relation(doc, record)} has the argument {argument}, which is not "
        f"an entity of doc.spans[{key!r}]. Every relation argument must be a gold span (with the "
        f"same label) under the component's spans_key."
    )

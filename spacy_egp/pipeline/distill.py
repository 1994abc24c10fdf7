"""Soft targets for the span band: a teacher's scored spans, mixed with gold, and label smoothing.

A teacher's spans are stored on the reference doc as a SpanGroup
doc.spans[distill_key] (`spacy egp teach`, spacy_egp.data.teach), each with
its probability p = sigmoid(s_teacher) in the group's attrs["scores"]. The
soft ZLPR (spacy_egp.ml.loss) is minimal where sigmoid(2 s) = t, so the
target that makes the student's optimum the teacher's logit is

    t = sigmoid(2 logit(p)) = p^2 / (p^2 + (1 - p)^2)      (`teacher_target`)

and a cell the teacher left out (p under the floor it was stored with) has
target 0. On a labelled doc (one with a gold group doc.spans[spans_key]) the
gold g (0 or 1; a gold cell's 1 smoothed to 1 - eps) and the teacher mix:

    target = (1 - w) * smoothed gold + w * teacher;

on an unlabelled doc (no gold group) target = teacher.

Label smoothing is one-sided: the cells that are not gold keep target 0. A
target eps on every cell of the band would put the summed mass of thousands
of negative cells into both normalisers of the soft ZLPR and divide every
gradient by it: on CLUENER (eps 0.1, both sides) the CNN config stayed at dev
F 0, its loss flat, for 1,000 steps (results/ablation/cluener-smoothing, README). The spans are placed on
the predicted tokens by character offsets and mapped to cells by
spacy_egp.pipeline.gold (`span_cells`), the gold spans' one mapping.
"""

from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy
from spacy.tokens import Doc
from spacy.training import Example

from .gold import GoldProblems, describe, gold_cells, preview, span_cells
from .nesting import Span3

Cell = Tuple[int, int, int]


def teacher_target(probabilities: numpy.ndarray) -> numpy.ndarray:
    """sigmoid(2 logit(p)) in float64: the soft-ZLPR target whose optimum is the teacher's logit.

    Written as p^2 / (p^2 + (1 - p)^2), exact at p = 0 and p = 1 (no infinite logits).
    """
    p = numpy.asarray(probabilities, dtype="float64")
    return p * p / (p * p + (1 - p) * (1 - p))


def check_distill_settings(distill_key: Optional[str], distill_weight: float, label_smoothing: float,
                           spans_key: str) -> Dict[str, object]:
    """The soft-target settings, validated; RETURNS (Dict[str, object]): them as the component's cfg keeps them."""
    if distill_key is not None and (not isinstance(distill_key, str) or not distill_key):
        raise ValueError(f"distill_key must be a non-empty string or null, got {distill_key!r}.")
    if distill_key == spans_key:
        raise ValueError(
            f"distill_key must differ from spans_key ({spans_key!r}): the teacher's spans and the gold "
            "spans are two groups of the same doc (spacy egp teach --key)."
        )
    for name, value, upper, closed in (("distill_weight", distill_weight, 1.0, True),
                                       ("label_smoothing", label_smoothing, 0.5, False)):
        inside = isinstance(value, (int, float)) and not isinstance(value, bool) and 0.0 <= value
        inside = inside and (value <= upper if closed else value < upper)
        if not inside:
            interval = f"[0, {upper:g}]" if closed else f"[0, {upper:g})"
            raise ValueError(f"{name} must be a number in {interval}, got {value!r}.")
    return {"distill_key": distill_key, "distill_weight": float(distill_weight),
            "label_smoothing": float(label_smoothing)}


def teacher_spans(eg: Example, key: str, problems: GoldProblems) -> Tuple[List[Span3], numpy.ndarray]:
    """The teacher's spans of eg.reference.spans[key] on the predicted tokens, and their probabilities.

    Placed by character offsets (a span misaligned with the predicted tokens
    is skipped and reported). Errors: no such group, no attrs["scores"] of
    one probability in [0, 1] per span.
    """
    reference = eg.reference
    if key not in reference.spans:
        raise ValueError(
            f"[{problems.owner}] Doc {preview(reference.text)} has no teacher spans doc.spans[{key!r}] "
            f"(distill_key). Score the training data with the teacher first: spacy egp teach TEACHER "
            f"INPUT.spacy OUTPUT.spacy --key {key}, and train on OUTPUT.spacy."
        )
    group = reference.spans[key]
    probabilities = _group_probabilities(reference, key, group.attrs.get("scores"), len(group))
    spans, kept = [], []
    for i, span in enumerate(group):
        aligned = eg.predicted.char_span(span.start_char, span.end_char)
        if aligned is None or len(aligned) == 0:
            problems.report("skipped (teacher): misaligned with the predicted tokens",
                            describe(reference, span.start, span.end, span.label_))
            continue
        spans.append((aligned.start, aligned.end, span.label_))
        kept.append(i)
    return spans, probabilities[kept]


def _group_probabilities(doc: Doc, key: str, scores: object, n_spans: int) -> numpy.ndarray:
    where = f"doc.spans[{key!r}].attrs['scores'] of doc {preview(doc.text)}"
    if scores is None:
        raise ValueError(f"No teacher probabilities: {where} is missing (spacy egp teach writes it).")
    probabilities = numpy.asarray(scores, dtype="float64").reshape((-1,))
    if len(probabilities) != n_spans:
        raise ValueError(f"{where} has {len(probabilities)} values for {n_spans} spans.")
    # NaN fails both comparisons, so it is refused too
    if not bool(numpy.all((probabilities >= 0) & (probabilities <= 1))):
        raise ValueError(f"{where} holds values outside [0, 1]: teacher scores must be probabilities.")
    return probabilities


@dataclass
class SoftTargets:
    """Targets of a batch's band: the listed cells and their targets; every other cell is a hard negative.

    cells (P, 3): (t, w, label), each once; values (P,): their targets.
    """

    cells: numpy.ndarray
    values: numpy.ndarray


def soft_targets(
    examples: Sequence[Example],
    spans_key: str,
    labels: Sequence[str],
    max_span_length: Optional[int],
    problems: GoldProblems,
    *,
    distill_key: Optional[str],
    distill_weight: float,
    label_smoothing: float,
    gold_spans: Callable[[Example], List[Span3]],
) -> SoftTargets:
    """The band targets of a batch: smoothed gold, mixed with the teacher's where distill_key is set.

    See the module docstring for the formula. Without distill_key every doc
    counts as labelled (a doc without a gold group has no gold spans, as in
    the hard loss).
    """
    weight = distill_weight if distill_key is not None else 0.0
    labelled = [distill_key is None or spans_key in eg.reference.spans for eg in examples]
    mass: Dict[Cell, float] = {}
    # gold_cells places only labelled docs' gold (an unlabelled doc has no group to read)
    gold = gold_cells(examples, spans_key, labels, max_span_length, problems, spans_of=gold_spans)
    for cell in map(tuple, gold.tolist()):
        mass[cell] = (1 - weight) * (1 - label_smoothing)
    if distill_key is not None:
        for eg_index, cell, target in _teacher_cells(examples, distill_key, labels, max_span_length, problems):
            mass[cell] = mass.get(cell, 0.0) + (weight if labelled[eg_index] else 1.0) * target
    cells = numpy.asarray(sorted(mass), dtype="int64").reshape((-1, 3))
    values = numpy.asarray([mass[cell] for cell in map(tuple, cells.tolist())], dtype="float64")
    values = numpy.clip(values, 0.0, 1.0)  # rounding only: the mix stays in [0, 1]
    return SoftTargets(cells, values.astype("float32"))


def _teacher_cells(
    examples: Sequence[Example], key: str, labels: Sequence[str], max_span_length: Optional[int],
    problems: GoldProblems,
) -> List[Tuple[int, Cell, float]]:
    """(example index, cell, teacher target) of the teacher's spans; a span listed twice counts once (reported)."""
    found = [teacher_spans(eg, key, problems) for eg in examples]
    spans_of = dict(zip(map(id, examples), (spans for spans, _ in found)))
    seen = set()
    result = []
    for eg_index, span_index, cell in span_cells(examples, lambda eg: spans_of[id(eg)], labels, max_span_length,
                                                 problems, kind="Teacher"):
        if cell in seen:
            problems.report("kept once (teacher): duplicate",
                            describe(examples[eg_index].predicted, *found[eg_index][0][span_index]))
            continue
        seen.add(cell)
        result.append((eg_index, cell, float(teacher_target(found[eg_index][1][span_index]))))
    return result

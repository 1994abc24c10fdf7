"""Score a corpus with a trained teacher and store its soft band compactly, for distillation.

    spacy egp teach TEACHER INPUT OUTPUT.spacy [--floor 0.05] [--key egp_teacher] [--unlabelled]

The teacher pipeline scores every candidate span of each doc (its
efficient_globalpointer component's band of logits). The cells whose
probability sigmoid(logit) is at least --floor become spans of a SpanGroup
doc.spans[KEY] on the same doc, with their probabilities (float32) in that
group's attrs["scores"], spaCy's convention for span scores, which DocBin
keeps. Every cell under the floor is a hard negative for the student
(`distill_key` of the efficient_globalpointer component,
spacy_egp.pipeline.distill), so what is stored grows with the number of cells
above the floor, linearly in the corpus; docs are read and scored batch by
batch.

INPUT is a .spacy DocBin (gold docs: their gold group doc.spans[SPANS_KEY]
stays as it is), a .jsonl file of records with a text field, or a .txt file
of one text per line. Texts, and a DocBin passed with --unlabelled, have no
gold group: the student learns the teacher's targets alone on them.
"""

import itertools
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, List, Optional, Tuple, Union

import numpy
import spacy
from spacy.language import Language
from spacy.tokens import Doc, DocBin, Span, SpanGroup

from ..pipeline.decoding import cells_above
from ..ml.util import doc_starts, probability_to_logit, sigmoid
from ..pipeline.efficient_globalpointer import GlobalPointerPipe

DEFAULT_TEACHER_KEY = "egp_teacher"
DEFAULT_FLOOR = 0.05
TEXT_SUFFIXES = (".jsonl", ".txt")


class TeachError(ValueError):
    """An unusable argument or input: the command prints it without a traceback."""


@dataclass
class TeachSummary:
    """What a run did: docs (and how many had a gold group), tokens, stored cells, misaligned and capped ones."""

    docs: int = 0
    labelled_docs: int = 0
    tokens: int = 0
    cells: int = 0
    misaligned_cells: int = 0
    capped_docs: int = 0
    seconds: float = 0.0
    output_bytes: int = 0

    @property
    def bytes_per_doc(self) -> float:
        return self.output_bytes / max(1, self.docs)


def load_teacher(model: Union[str, Path, Language]) -> Language:
    """The teacher pipeline: `model` itself, or spacy.load(model) with an error that names the problem."""
    if isinstance(model, Language):
        return model
    try:
        return spacy.load(model)
    except (OSError, ValueError) as error:
        raise TeachError(f"Cannot load the teacher {str(model)!r}: {error}") from None


def teacher_component(nlp: Language, name: Optional[str] = None) -> GlobalPointerPipe:
    """The teacher's span component: `name`, or the pipeline's only efficient_globalpointer/gplinker one."""
    pointers = [(n, pipe) for n, pipe in nlp.pipeline if isinstance(pipe, GlobalPointerPipe)]
    if name is not None:
        found = [pipe for n, pipe in pointers if n == name]
        if not found:
            raise TeachError(f"The teacher has no span component {name!r} (its span components: "
                             f"{[n for n, _ in pointers]}).")
        return found[0]
    if len(pointers) != 1:
        raise TeachError(f"The teacher needs exactly one span component, or --component: it has "
                         f"{[n for n, _ in pointers] or 'none'}.")
    return pointers[0][1]


def read_docs(path: Path, nlp: Language, *, unlabelled: bool, spans_key: str,
              text_field: str = "text") -> Iterator[Doc]:
    """The docs of INPUT, one at a time: a DocBin's docs (without their gold group if unlabelled), or texts."""
    if path.suffix in TEXT_SUFFIXES:
        for text in _texts(path, text_field):
            yield nlp.make_doc(text)
        return
    if path.suffix != ".spacy":
        raise TeachError(f"{path}: INPUT must be a .spacy DocBin, a .jsonl file or a .txt file.")
    for doc in DocBin().from_disk(path).get_docs(nlp.vocab):
        if unlabelled and spans_key in doc.spans:
            del doc.spans[spans_key]
        yield doc


def _texts(path: Path, text_field: str) -> Iterator[str]:
    with path.open(encoding="utf8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            if path.suffix == ".txt":
                yield line.rstrip("\n")
                continue
            try:
                text = json.loads(line)[text_field]
            except (ValueError, KeyError, TypeError) as error:
                raise TeachError(f"{path}:{number}: not a JSON object with a {text_field!r} field ({error}).") from None
            if not isinstance(text, str):
                raise TeachError(f"{path}:{number}: the {text_field!r} field is not a string.")
            yield text


def score_docs(nlp: Language, pipe: GlobalPointerPipe, docs: List[Doc], *, floor: float, key: str,
               max_cells_per_token: Optional[float], summary: TeachSummary) -> None:
    """Write the teacher's cells with probability >= floor to doc.spans[key] of each doc (in place)."""
    scored = _teacher_docs(nlp, pipe, docs)
    band = pipe.span_band(pipe.predict(scored))
    lengths = pipe.model.ops.to_numpy(band.lengths)
    thresholds = numpy.full(len(pipe.labels), probability_to_logit(floor), dtype="float64")
    if max_cells_per_token is None:
        caps = numpy.maximum(lengths, 1) * max(1, band.dataXd.shape[1] * band.dataXd.shape[2])
    else:
        caps = numpy.ceil(lengths * max_cells_per_token).astype("int64")
    cells = cells_above(pipe.model.ops.to_numpy(band.dataXd), lengths, thresholds, caps)
    summary.capped_docs += len(cells.capped_docs)
    probabilities = sigmoid(cells.logit)
    doc_of = numpy.searchsorted(numpy.cumsum(lengths), cells.token, side="right")
    starts = doc_starts(numpy, lengths)
    for i, (doc, teacher_doc) in enumerate(zip(docs, scored)):
        found = numpy.flatnonzero(doc_of == i)
        start = cells.token[found] - starts[i]
        end = start + cells.width[found] + 1
        labels = [pipe.labels[label] for label in cells.label[found].tolist()]
        spans, kept = _spans_on(doc, teacher_doc, start.tolist(), end.tolist(), labels)
        summary.misaligned_cells += len(found) - len(kept)
        summary.cells += len(kept)
        doc.spans[key] = SpanGroup(doc, name=key, spans=spans, attrs={"scores": probabilities[found][kept]})


def _teacher_docs(nlp: Language, pipe: GlobalPointerPipe, docs: List[Doc]) -> List[Doc]:
    """The docs' texts as the teacher sees them: its tokenizer, then the components before the span component."""
    names = [name for name, _ in nlp.pipeline]
    before = names[: names.index(pipe.name)]
    with nlp.select_pipes(enable=before):
        return list(nlp.pipe([doc.text for doc in docs], batch_size=max(1, len(docs))))


def _spans_on(doc: Doc, teacher_doc: Doc, starts: List[int], ends: List[int],
              labels: List[str]) -> Tuple[List[Span], List[int]]:
    """The teacher's spans (on its tokens) as spans of `doc`, by character offsets; RETURNS them and the kept indices.

    The usual case, the same tokens, needs no lookup; a span whose characters
    do not fall on `doc`'s token boundaries is dropped (counted).
    """
    same_tokens = len(doc) == len(teacher_doc) and all(a.idx == b.idx and len(a) == len(b)
                                                       for a, b in zip(doc, teacher_doc))
    spans, kept = [], []
    for i, (start, end, label) in enumerate(zip(starts, ends, labels)):
        if same_tokens:
            span = Span(doc, start, end, label=label)
        else:
            chars = teacher_doc[start:end]
            span = doc.char_span(chars.start_char, chars.end_char, label=label)
        if span is not None:
            spans.append(span)
            kept.append(i)
    return spans, kept


def _batches(docs: Iterable[Doc], size: int) -> Iterator[List[Doc]]:
    batch: List[Doc] = []
    for doc in docs:
        batch.append(doc)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def check_floor(floor: float) -> float:
    """The floor probability, in (0, 1]: 0 would store every cell of the band."""
    if not 0.0 < floor <= 1.0:
        raise TeachError(f"--floor must be a probability in (0, 1], got {floor!r} (0 would store every cell).")
    return float(floor)


def teach(
    model: Union[str, Path, Language],
    input_path: Union[str, Path],
    output_path: Union[str, Path],
    *,
    floor: float = DEFAULT_FLOOR,
    key: str = DEFAULT_TEACHER_KEY,
    unlabelled: bool = False,
    spans_key: Optional[str] = None,
    component: Optional[str] = None,
    batch_size: int = 64,
    max_cells_per_token: Optional[float] = None,
    text_field: str = "text",
    max_docs: Optional[int] = None,
) -> TeachSummary:
    """Score INPUT's docs with the teacher and write them, with doc.spans[key], to OUTPUT (a DocBin).

    model (Union[str, Path, Language]): The teacher: a pipeline, its folder or package name.
    floor (float): Cells with a teacher probability >= floor are stored.
    key (str): The doc.spans key of the teacher's group (the student's distill_key).
    unlabelled (bool): Drop a DocBin's gold group doc.spans[spans_key]: the docs count as unlabelled.
    spans_key (Optional[str]): The gold key; default the teacher component's spans_key.
    component (Optional[str]): The teacher's span component; default its only one.
    max_cells_per_token (Optional[float]): Keep at most ceil(this * len(doc))
        cells per doc, the most probable; None: every cell above the floor.
    max_docs (Optional[int]): Teach only INPUT's first max_docs docs (a slice of a
        large unlabelled corpus); None: all of them.
    RETURNS (TeachSummary): What was written.
    """
    floor = check_floor(floor)
    if max_docs is not None and max_docs < 1:
        raise TeachError(f"--max-docs must be at least 1, got {max_docs!r} (leave it out to teach every doc).")
    nlp = load_teacher(model)
    pipe = teacher_component(nlp, component)
    spans_key = pipe.key if spans_key is None else spans_key
    if key == spans_key:
        raise TeachError(f"--key {key!r} is the gold spans key: the teacher's group would replace the gold.")
    input_path, output_path = Path(input_path), Path(output_path)
    if not input_path.is_file():
        raise TeachError(f"{input_path}: no such file.")
    summary, start = TeachSummary(), time.perf_counter()
    out = DocBin(store_user_data=True)
    docs = itertools.islice(read_docs(input_path, nlp, unlabelled=unlabelled, spans_key=spans_key,
                                      text_field=text_field), max_docs)
    for batch in _batches(docs, batch_size):
        score_docs(nlp, pipe, batch, floor=floor, key=key, max_cells_per_token=max_cells_per_token, summary=summary)
        for doc in batch:
            summary.docs += 1
            summary.labelled_docs += spans_key in doc.spans
            summary.tokens += len(doc)
            out.add(doc)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    out.to_disk(output_path)
    summary.output_bytes = output_path.stat().st_size
    summary.seconds = time.perf_counter() - start
    return summary

"""Convert NER datasets to spaCy DocBins, gold spans (nested kept) in doc.spans[key].

Command line::

    python -m spacy_egp.convert FORMAT INPUT OUTPUT --lang zh [--spans-key sc]
        [--select "i % 5 in 2,3,4"] [--limit N] [--scheme bio|iob1]

FORMAT is one of

- ``cluener``: JSON lines ``{"text", "label": {TYPE: {SURFACE: [[start, end], ...]}}}``,
  character offsets, ``end`` inclusive (CLUENER2020);
- ``cmeee``: one JSON array of ``{"text", "entities": [{"start_idx", "end_idx", "type"}]}``,
  character offsets, ``end_idx`` inclusive (CMeEE / CBLUE);
- ``spans-jsonl``: JSON lines ``{"tokens", "entity_mentions": [{"start", "end", "entity_type"}]}``,
  token offsets, ``end`` exclusive (GENIA as preprocessed by CNN-NER); the Doc is
  built from the given tokens, never re-tokenized;
- ``bio``: one token per line with its tag in the last column, a blank line
  between sentences, ``-DOCSTART-`` lines ignored (CoNLL-2003, MSRA). BIO and
  IOB1 decode alike (an ``I-X`` that does not continue an ``X`` span starts one,
  as conlleval does); ``--scheme`` only says which irregularities to report.
- ``conll04``: one JSON array of ``{"tokens", "tags", "relations": [{"head", "tail", "type"}]}``
  (CoNLL04 as re-encoded by TablERT): entities are the BILOU chunks of ``tags``,
  numbered from 0, and a relation's ``head`` and ``tail`` are those numbers. The
  entities go to doc.spans[key] and the relations to doc._.relations (stored in
  doc.user_data, which the DocBin then keeps), for the ``gplinker`` component.

INPUT is a file, or a member of a zip archive written ``ARCHIVE.zip:MEMBER``
(e.g. ``../shared/data/msra/peopledaily.zip:train.txt``). OUTPUT is the
``.spacy`` file to write (its folder is created).

Records (JSON lines / array items / sentences) are numbered from 0 in file
order; ``--select`` keeps those whose number passes a modulo test, written as in
SPLITS.md: ``"i % 5 in 2,3,4"``, ``"i % 10 != 0"``, ``"i % 10 == 0"`` (``mod 5 in
2,3,4`` is accepted too). ``--limit N`` then keeps the first N selected records.

Character offsets are mapped to tokens with ``doc.char_span(...,
alignment_mode="strict")``; spans whose ends are not token boundaries are
counted as misaligned and left out. Chinese (``--lang zh``) is tokenized one
token per character by spaCy's default ``zh`` segmenter (``"char"``).

A second form converts a whole dataset of ../shared/data/SPLITS.md into
``train.spacy``, ``dev.spacy`` and ``test.spacy``::

    python -m spacy_egp.convert dataset NAME DATA_DIR OUTPUT_DIR [--limit N]

NAME is one of DATASETS (cluener, cmeee5k, genia_small, msra, conll2003) or of
RELATION_DATASETS (conll04);
DATA_DIR holds the raw files either as ``DATA_DIR/NAME/FILE`` (the project's
assets/) or laid out like ../shared/data (``DATA_DIR/FOLDER/FILE``).

Every conversion prints the number of docs, the spans per label (and relations per label), nested pairs
(a span inside another), crossing pairs and misaligned spans (with the first
few examples). A malformed record stops it with exit status 1 and a message
naming the file and line (and record number); no traceback.
"""

import io
import json
import re
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

from .datasets import DATASETS, RELATION_DATASETS, Dataset
from ..pipeline.nesting import nesting
from ..pipeline.relations import RelationOffsets, store_relation_offsets

FORMATS = ("cluener", "cmeee", "spans-jsonl", "bio", "conll04")
SCHEMES = ("bio", "iob1")
# Languages written without spaces between words: tokens are joined without
# whitespace when a Doc is built from given tokens (bio, spans-jsonl).
NO_SPACE_LANGS = {"zh", "ja", "th", "bo", "km", "lo", "my"}


class ConversionError(Exception):
    """A malformed input; the message names the file, line and record."""


# --------------------------------------------------------------------------
# Record selection
# --------------------------------------------------------------------------

_SELECT_RE = re.compile(
    r"^\s*(?:i\s*%|mod)\s*(?P<modulus>\d+)\s*(?P<op>==|!=|not\s+in|in)\s*"
    r"[{\[(]?(?P<values>[\d\s,]+)[}\])]?\s*$"
)


@dataclass(frozen=True)
class Selection:
    """Records i with (i % modulus in values) == keep; everything when modulus is None."""

    modulus: Optional[int] = None
    values: Tuple[int, ...] = ()
    keep: bool = True
    text: str = "all"

    def __call__(self, i: int) -> bool:
        if self.modulus is None:
            return True
        return (i % self.modulus in self.values) == self.keep


def parse_select(expression: Optional[str]) -> Selection:
    """Parse "i % 5 in 2,3,4", "i % 10 != 0", "mod 10 == 0" (or None/"" / "all": every record)."""
    if expression is None or expression.strip() in ("", "all"):
        return Selection()
    match = _SELECT_RE.match(expression)
    if not match:
        raise ValueError(
            f"Cannot parse --select {expression!r}; write it as in SPLITS.md, e.g. "
            f"'i % 5 in 2,3,4', 'i % 10 != 0' or 'i % 10 == 0' (records numbered from 0)."
        )
    modulus = int(match.group("modulus"))
    values = tuple(int(v) for v in re.split(r"[\s,]+", match.group("values").strip()) if v)
    op = " ".join(match.group("op").split())
    if modulus <= 0 or not values or any(not 0 <= v < modulus for v in values):
        raise ValueError(f"--select {expression!r}: need a modulus > 0 and remainders in [0, {modulus}).")
    if op in ("==", "!=") and len(values) != 1:
        raise ValueError(f"--select {expression!r}: use 'in' for several remainders.")
    keep = op in ("==", "in")
    return Selection(modulus, values, keep, expression.strip())


# --------------------------------------------------------------------------
# Input
# --------------------------------------------------------------------------


def split_zip_path(path: str) -> Tuple[Path, Optional[str]]:
    """'a/b.zip:member.txt' -> (Path('a/b.zip'), 'member.txt'); other paths -> (Path(path), None)."""
    match = re.match(r"^(?P<archive>.+?\.zip):(?P<member>[^:]+)$", str(path), flags=re.IGNORECASE)
    if match and not Path(path).exists():
        return Path(match.group("archive")), match.group("member")
    return Path(path), None


def read_text(path: str) -> str:
    """The UTF-8 text of a file or of a zip member ('archive.zip:member')."""
    file_path, member = split_zip_path(path)
    if not file_path.exists():
        raise ConversionError(f"{file_path}: no such file")
    if member is None:
        if file_path.is_dir():
            raise ConversionError(f"{file_path}: is a folder, expected a file")
        data = file_path.read_bytes()
    else:
        try:
            with zipfile.ZipFile(file_path) as archive:
                try:
                    data = archive.read(member)
                except KeyError:
                    names = ", ".join(archive.namelist()[:20])
                    raise ConversionError(f"{file_path}: no member {member!r} (members: {names})") from None
        except zipfile.BadZipFile as err:
            raise ConversionError(f"{file_path}: not a zip archive ({err})") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise ConversionError(f"{path}:{line}: not valid UTF-8 ({err.reason})") from None
    return text


# --------------------------------------------------------------------------
# Records -> raw docs
# --------------------------------------------------------------------------


@dataclass
class RawDoc:
    """One record: either text + character spans, or words + token spans.

    Spans are (start, end, label) with end EXCLUSIVE.
    """

    index: int
    line: int
    text: Optional[str] = None
    words: Optional[List[str]] = None
    char_spans: List[Tuple[int, int, str]] = field(default_factory=list)
    token_spans: List[Tuple[int, int, str]] = field(default_factory=list)
    # (head token span, relation label, tail token span); None: the format has no relations
    relations: Optional[List[Tuple[Tuple[int, int, str], str, Tuple[int, int, str]]]] = None


@dataclass
class Record:
    index: int  # record number, from 0 in file order
    line: int  # 1-based line where the record starts
    payload: object


def _where(source: str, record: Record) -> str:
    return f"{source}:{record.line} (record {record.index})"


def iter_json_lines(text: str, source: str) -> Iterator[Record]:
    """One JSON value per non-blank line; blank lines are not records."""
    index = 0
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            payload = json.loads(line)
        except json.JSONDecodeError as err:
            raise ConversionError(
                f"{source}:{line_no} (record {index}): invalid JSON: {err.msg} at column {err.colno}"
            ) from None
        yield Record(index, line_no, payload)
        index += 1


def iter_json_array(text: str, source: str) -> Iterator[Record]:
    """The items of one JSON array, each with the line where it starts."""
    decoder = json.JSONDecoder()
    ws = re.compile(r"\s*")
    pos = ws.match(text, 0).end()
    if pos >= len(text) or text[pos] != "[":
        line = text.count("\n", 0, pos) + 1
        raise ConversionError(f"{source}:{line}: expected a JSON array ('[') at the start of the file")
    pos = ws.match(text, pos + 1).end()
    index = 0
    line = text.count("\n", 0, pos) + 1
    last = pos
    if pos < len(text) and text[pos] == "]":
        return
    while True:
        line += text.count("\n", last, pos)
        last = pos
        try:
            payload, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as err:
            raise ConversionError(
                f"{source}:{err.lineno} (record {index}): invalid JSON: {err.msg} at column {err.colno}"
            ) from None
        yield Record(index, line, payload)
        index += 1
        pos = ws.match(text, end).end()
        if pos < len(text) and text[pos] == ",":
            pos = ws.match(text, pos + 1).end()
            continue
        if pos < len(text) and text[pos] == "]":
            return
        err_line = text.count("\n", 0, pos) + 1
        raise ConversionError(f"{source}:{err_line} (after record {index - 1}): expected ',' or ']' in the JSON array")


def _require(condition: bool, source: str, record: Record, message: str) -> None:
    if not condition:
        raise ConversionError(f"{_where(source, record)}: {message}")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def cluener_doc(record: Record, source: str) -> RawDoc:
    obj = record.payload
    _require(isinstance(obj, dict), source, record, "expected a JSON object")
    text = obj.get("text")
    _require(isinstance(text, str), source, record, "missing or non-string 'text'")
    labels = obj.get("label", {})
    if labels is None:
        labels = {}
    _require(isinstance(labels, dict), source, record, "'label' must be an object {TYPE: {SURFACE: [[start, end], ...]}}")
    spans = []
    for label, surfaces in labels.items():
        _require(isinstance(surfaces, dict), source, record, f"label {label!r}: expected {{SURFACE: [[start, end], ...]}}")
        for surface, offsets in surfaces.items():
            _require(isinstance(offsets, list), source, record, f"{label!r} {surface!r}: expected a list of [start, end]")
            for pair in offsets:
                _require(
                    isinstance(pair, list) and len(pair) == 2 and all(_is_int(v) for v in pair),
                    source, record, f"{label!r} {surface!r}: offsets must be [start, end] integers, got {pair!r}",
                )
                start, end = pair[0], pair[1] + 1  # end inclusive -> exclusive
                _check_char_span(text, start, end, surface, label, source, record)
                spans.append((start, end, label))
    return RawDoc(record.index, record.line, text=text, char_spans=spans)


def cmeee_doc(record: Record, source: str) -> RawDoc:
    obj = record.payload
    _require(isinstance(obj, dict), source, record, "expected a JSON object")
    text = obj.get("text")
    _require(isinstance(text, str), source, record, "missing or non-string 'text'")
    spans = []
    for n, ent in _annotations(obj, "entities", ("start_idx", "end_idx", "type"), "entity", source, record):
        start, end_inclusive, label = ent["start_idx"], ent["end_idx"], ent["type"]
        _require(_is_int(start) and _is_int(end_inclusive), source, record,
                 f"entity {n}: start_idx/end_idx must be integers, got {start!r}, {end_inclusive!r}")
        _require(isinstance(label, str) and label, source, record, f"entity {n}: 'type' must be a non-empty string")
        _check_char_span(text, start, end_inclusive + 1, ent.get("entity"), label, source, record)
        spans.append((start, end_inclusive + 1, label))
    return RawDoc(record.index, record.line, text=text, char_spans=spans)


def _annotations(
    obj: Dict[str, Any], key: str, fields: Sequence[str], what: str, source: str, record: Record
) -> Iterator[Tuple[int, Dict[str, Any]]]:
    """(n, item) for the items of the list obj[key] (absent: none), each an object with every one of `fields`."""
    items = obj.get(key, [])
    _require(isinstance(items, list), source, record, f"{key!r} must be a list")
    for n, item in enumerate(items):
        _require(isinstance(item, dict), source, record, f"{what} {n}: expected an object")
        missing = [k for k in fields if k not in item]
        _require(not missing, source, record, f"{what} {n}: missing {', '.join(missing)}")
        yield n, item


def _check_char_span(text, start, end, surface, label, source, record) -> None:
    _require(
        0 <= start < end <= len(text), source, record,
        f"{label!r} span [{start}, {end - 1}] (end inclusive) is outside the text "
        f"(length {len(text)}) or empty",
    )
    if isinstance(surface, str):
        _require(
            text[start:end] == surface, source, record,
            f"{label!r} span [{start}, {end - 1}] covers {text[start:end]!r}, not its surface "
            f"{surface!r} (are the ends inclusive?)",
        )


def spans_jsonl_doc(record: Record, source: str) -> RawDoc:
    obj = record.payload
    _require(isinstance(obj, dict), source, record, "expected a JSON object")
    tokens = obj.get("tokens")
    _require(
        isinstance(tokens, list) and all(isinstance(t, str) and t for t in tokens),
        source, record, "'tokens' must be a list of non-empty strings",
    )
    spans = []
    for n, ment in _annotations(obj, "entity_mentions", ("start", "end", "entity_type"), "mention", source, record):
        start, end, label = ment["start"], ment["end"], ment["entity_type"]
        _require(_is_int(start) and _is_int(end) and 0 <= start < end <= len(tokens), source, record,
                 f"mention {n}: token span [{start}, {end}) (end exclusive) is empty or outside "
                 f"the {len(tokens)} tokens")
        _require(isinstance(label, str) and label, source, record, f"mention {n}: 'entity_type' must be a non-empty string")
        surface = ment.get("text")
        if isinstance(surface, str):
            _require(" ".join(tokens[start:end]) == surface, source, record,
                     f"mention {n}: tokens [{start}, {end}) are {' '.join(tokens[start:end])!r}, not "
                     f"its text {surface!r} (is the end exclusive?)")
        spans.append((start, end, label))
    return RawDoc(record.index, record.line, words=list(tokens), token_spans=spans)


@dataclass
class BioStats:
    irregular: int = 0  # I- starting a span (bio) / B- not after the same type (iob1)
    examples: List[str] = field(default_factory=list)


def iter_bio_sentences(text: str, source: str) -> Iterator[Record]:
    """Sentences of a one-token-per-line file; payload = [(line_no, token, tag), ...]."""
    index = 0
    rows: List[Tuple[int, str, str]] = []
    start_line = 0
    for line_no, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped:
            if rows:
                yield Record(index, start_line, rows)
                index += 1
                rows = []
            continue
        if stripped.startswith("-DOCSTART-"):
            if rows:
                yield Record(index, start_line, rows)
                index += 1
                rows = []
            continue
        parts = stripped.split()
        if len(parts) < 2:
            raise ConversionError(
                f"{source}:{line_no} (sentence {index}): expected 'TOKEN ... TAG' (at least 2 columns), "
                f"got {line!r}"
            )
        if not rows:
            start_line = line_no
        rows.append((line_no, parts[0], parts[-1]))
    if rows:
        yield Record(index, start_line, rows)


_TAG_RE = re.compile(r"^(?P<prefix>[BI])-(?P<label>.+)$")


def bio_doc(record: Record, source: str, scheme: str, bio_stats: Optional[BioStats] = None) -> RawDoc:
    """Decode BIO / IOB1 tags (conlleval rules) into token spans."""
    words: List[str] = []
    spans: List[Tuple[int, int, str]] = []
    current: Optional[Tuple[int, str]] = None  # (start, label) of the open span
    for i, (line_no, token, tag) in enumerate(record.payload):
        words.append(token)
        if tag == "O":
            if current is not None:
                spans.append((current[0], i, current[1]))
                current = None
            continue
        match = _TAG_RE.match(tag)
        if not match:
            raise ConversionError(
                f"{source}:{line_no} (sentence {record.index}): tag {tag!r} is not O, B-TYPE or I-TYPE"
            )
        prefix, label = match.group("prefix"), match.group("label")
        continues = current is not None and current[1] == label
        if prefix == "I" and continues:
            continue
        irregular = (scheme == "bio" and prefix == "I") or (scheme == "iob1" and prefix == "B" and not continues)
        if irregular and bio_stats is not None:
            bio_stats.irregular += 1
            if len(bio_stats.examples) < 5:
                bio_stats.examples.append(f"{source}:{line_no} {token!r} {tag}")
        if current is not None:
            spans.append((current[0], i, current[1]))
        current = (i, label)
    if current is not None:
        spans.append((current[0], len(words), current[1]))
    return RawDoc(record.index, record.line, words=words, token_spans=spans)


_BILOU_RE = re.compile(r"^(?P<prefix>[BILU])-(?P<label>.+)$")


def bilou_spans(tags: Sequence[str], where: str) -> List[Tuple[int, int, str]]:
    """The (start, end exclusive, label) chunks of BILOU tags, in order; a broken sequence is an error."""
    spans: List[Tuple[int, int, str]] = []
    current: Optional[Tuple[int, str]] = None  # (start, label) of the open chunk
    for i, tag in enumerate(tags):
        match = _BILOU_RE.match(tag) if tag != "O" else None
        prefix, label = (match.group("prefix"), match.group("label")) if match else ("O", None)
        if tag != "O" and match is None:
            raise ConversionError(f"{where}: tag {i} {tag!r} is not O, B-X, I-X, L-X or U-X")
        if (prefix in ("I", "L")) != (current is not None) or (current is not None and current[1] != label):
            raise ConversionError(f"{where}: tag {i} {tag!r} breaks the BILOU sequence {list(tags[max(0, i - 2): i + 1])}")
        if prefix == "B":
            current = (i, label)
        elif prefix in ("L", "U"):
            spans.append((current[0] if prefix == "L" else i, i + 1, label))
            current = None
    if current is not None:
        raise ConversionError(f"{where}: the last entity ({current[1]}, from tag {current[0]}) has no L- tag")
    return spans


def conll04_doc(record: Record, source: str) -> RawDoc:
    obj = record.payload
    _require(isinstance(obj, dict), source, record, "expected a JSON object")
    tokens, tags = obj.get("tokens"), obj.get("tags")
    _require(isinstance(tokens, list) and all(isinstance(t, str) and t for t in tokens), source, record,
             "'tokens' must be a list of non-empty strings")
    _require(isinstance(tags, list) and len(tags) == len(tokens), source, record,
             "'tags' must be a list of BILOU tags, one per token")
    entities = bilou_spans(tags, _where(source, record))
    _require(isinstance(obj.get("relations", []), list), source, record, "'relations' must be a list")
    relations = []
    for n, rel in enumerate(obj.get("relations", [])):
        _require(isinstance(rel, dict) and all(k in rel for k in ("head", "tail", "type")), source, record,
                 f"relation {n}: expected an object with head, tail and type")
        head, tail, label = rel["head"], rel["tail"], rel["type"]
        _require(_is_int(head) and _is_int(tail) and 0 <= head < len(entities) and 0 <= tail < len(entities),
                 source, record, f"relation {n}: head {head!r} / tail {tail!r} are not entity numbers "
                 f"(the record has {len(entities)} entities, numbered from 0)")
        _require(isinstance(label, str) and label, source, record, f"relation {n}: 'type' must be a non-empty string")
        relations.append((entities[head], label, entities[tail]))
    return RawDoc(record.index, record.line, words=list(tokens), token_spans=entities, relations=relations)


# --------------------------------------------------------------------------
# Docs and statistics
# --------------------------------------------------------------------------


@dataclass
class Stats:
    source: str = ""
    records_read: int = 0
    docs: int = 0
    tokens: int = 0
    spans_read: int = 0
    labels: Counter = field(default_factory=Counter)
    duplicates: int = 0
    misaligned: int = 0
    misaligned_examples: List[str] = field(default_factory=list)
    nested_pairs: int = 0  # (inner, outer) pairs of distinct boundaries, inner inside outer
    spans_inside: int = 0  # distinct boundaries lying inside another span
    docs_with_nesting: int = 0
    crossing_pairs: int = 0
    same_boundaries: int = 0  # distinct boundaries carrying more than one label
    bio: Optional[BioStats] = None
    relation_labels: Counter = field(default_factory=Counter)  # conll04: relations per label

    @property
    def spans(self) -> int:
        return sum(self.labels.values())


def nesting_counts(boundaries: Iterable[Tuple[int, int]]) -> Tuple[int, int, int]:
    """Count how distinct (start, end) boundaries (end exclusive) overlap.

    boundaries (Iterable[Tuple[int, int]]): Span boundaries; repeats count once.
    RETURNS (Tuple[int, int, int]): (nested pairs, spans inside another, crossing pairs).
    """
    found = nesting(boundaries)
    return len(found.nested_pairs), len(found.inside), len(found.crossing_pairs)


def make_nlp(lang: str):
    import spacy

    nlp = spacy.blank(lang)
    if lang == "zh":
        segmenter = nlp.tokenizer.segmenter
        segmenter = getattr(segmenter, "value", segmenter)
        if segmenter != "char":
            raise ConversionError(f"spacy.blank('zh') uses the segmenter {segmenter!r}, expected 'char'")
    return nlp


def build_doc(nlp, raw: RawDoc, spans_key: str, stats: Stats, source: str, examples: int = 5):
    """A Doc with the raw doc's spans in doc.spans[spans_key] (a SpanGroup, overlaps kept)."""
    from spacy.tokens import Doc, Span, SpanGroup

    if raw.words is not None:
        no_space = nlp.lang in NO_SPACE_LANGS
        spaces = [not no_space] * len(raw.words)
        if spaces:
            spaces[-1] = False
        doc = Doc(nlp.vocab, words=raw.words, spaces=spaces)
    else:
        doc = nlp.make_doc(raw.text)
    seen = set()
    spans = []
    for start, end, label in raw.char_spans:
        stats.spans_read += 1
        span = doc.char_span(start, end, label=label, alignment_mode="strict")
        if span is None:
            stats.misaligned += 1
            if len(stats.misaligned_examples) < examples:
                context = raw.text[max(0, start - 10): end + 10]
                stats.misaligned_examples.append(
                    f"{source}:{raw.line} (record {raw.index}) {label} [{start}, {end}) "
                    f"{raw.text[start:end]!r} in ...{context!r}..."
                )
            continue
        if (span.start, span.end, label) in seen:
            stats.duplicates += 1
            continue
        seen.add((span.start, span.end, label))
        spans.append(span)
    for start, end, label in raw.token_spans:
        stats.spans_read += 1
        if (start, end, label) in seen:
            stats.duplicates += 1
            continue
        seen.add((start, end, label))
        spans.append(Span(doc, start, end, label=label))
    spans.sort(key=lambda s: (s.start, s.end, s.label_))
    doc.spans[spans_key] = SpanGroup(doc, name=spans_key, spans=spans)
    if raw.relations is not None:  # stored even when empty: the doc is annotated for relations
        store_relation_offsets(doc, [RelationOffsets(*head, label, *tail) for head, label, tail in raw.relations])
        stats.relation_labels.update(label for _, label, _ in raw.relations)
    stats.docs += 1
    stats.tokens += len(doc)
    stats.labels.update(span.label_ for span in spans)
    boundaries = Counter((span.start, span.end) for span in spans)
    stats.same_boundaries += sum(1 for n in boundaries.values() if n > 1)
    nested, inside, crossing = nesting_counts(boundaries)
    stats.nested_pairs += nested
    stats.spans_inside += inside
    stats.crossing_pairs += crossing
    stats.docs_with_nesting += bool(nested)
    return doc


def convert(
    fmt: str,
    input_path: str,
    *,
    lang: str,
    spans_key: str = "sc",
    select: Optional[str] = None,
    limit: int = 0,
    scheme: str = "bio",
    nlp=None,
    examples: int = 5,
    text: Optional[str] = None,
) -> Tuple[list, Stats]:
    """Read INPUT in FORMAT and return (docs, stats). Raises ConversionError on malformed input."""
    if fmt not in FORMATS:
        raise ConversionError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if scheme not in SCHEMES:
        raise ConversionError(f"unknown scheme {scheme!r}; choose one of {', '.join(SCHEMES)}")
    if limit < 0:
        raise ConversionError(f"--limit must be >= 0 (0 = all), got {limit}")
    try:
        selection = parse_select(select)
    except ValueError as err:
        raise ConversionError(str(err)) from None
    if nlp is None:
        nlp = make_nlp(lang)
    source = str(input_path)
    if text is None:
        text = read_text(input_path)
    stats = Stats(source=source)
    records: Iterator[Record]
    to_raw: Callable[[Record], RawDoc]
    if fmt == "cluener":
        records, to_raw = iter_json_lines(text, source), lambda r: cluener_doc(r, source)
    elif fmt == "cmeee":
        records, to_raw = iter_json_array(text, source), lambda r: cmeee_doc(r, source)
    elif fmt == "spans-jsonl":
        records, to_raw = iter_json_lines(text, source), lambda r: spans_jsonl_doc(r, source)
    elif fmt == "conll04":
        records, to_raw = iter_json_array(text, source), lambda r: conll04_doc(r, source)
    else:
        stats.bio = BioStats()
        records, to_raw = iter_bio_sentences(text, source), lambda r: bio_doc(r, source, scheme, stats.bio)
    docs = []
    for record in records:
        stats.records_read += 1
        if not selection(record.index):
            continue
        docs.append(build_doc(nlp, to_raw(record), spans_key, stats, source, examples))
        if limit and len(docs) >= limit:
            break
    return docs, stats


def write_docbin(docs: Sequence, output: str) -> Path:
    from spacy.tokens import DocBin

    path = Path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    # user_data holds gold relations (conll04); other formats leave it empty and store nothing
    doc_bin = DocBin(store_user_data=any(doc.user_data for doc in docs))
    for doc in docs:
        doc_bin.add(doc)
    doc_bin.to_disk(path)
    return path


def format_report(stats: Stats, *, fmt: str, spans_key: str, selection: str, limit: int,
                  output: Optional[str] = None, scheme: str = "bio") -> str:
    out = io.StringIO()
    target = f" -> {output}" if output else ""
    limit_text = f", limit {limit}" if limit else ""
    print(f"{stats.source} ({fmt}): {stats.docs:,} docs{target}", file=out)
    print(f"  records read {stats.records_read:,}, select: {selection or 'all'}{limit_text}; "
          f"{stats.tokens:,} tokens", file=out)
    print(f"  spans in doc.spans[{spans_key!r}]: {stats.spans:,} "
          f"(read {stats.spans_read:,}, misaligned {stats.misaligned:,}, exact duplicates dropped "
          f"{stats.duplicates:,})", file=out)
    if stats.labels:
        width = max(len(label) for label in stats.labels)
        for label, count in sorted(stats.labels.items()):
            print(f"    {label:<{width}}  {count:>8,}", file=out)
    print(f"  nested pairs (a span inside another): {stats.nested_pairs:,} "
          f"({stats.spans_inside:,} spans inside another, in {stats.docs_with_nesting:,} docs); "
          f"crossing pairs {stats.crossing_pairs:,}; same boundaries with 2+ labels "
          f"{stats.same_boundaries:,}", file=out)
    print(f"  misaligned spans: {stats.misaligned:,}", file=out)
    if stats.relation_labels:
        print(f"  relations in doc._.relations: {sum(stats.relation_labels.values()):,}", file=out)
        width = max(len(label) for label in stats.relation_labels)
        for label, count in sorted(stats.relation_labels.items()):
            print(f"    {label:<{width}}  {count:>8,}", file=out)
    for example in stats.misaligned_examples:
        print(f"    {example}", file=out)
    if stats.bio is not None:
        what = "I- tags starting a span" if scheme == "bio" else "B- tags not after the same type"
        print(f"  {scheme}: {what} (irregular for --scheme {scheme}, decoded as span starts): "
              f"{stats.bio.irregular:,}", file=out)
        for example in stats.bio.examples:
            print(f"    {example}", file=out)
    return out.getvalue().rstrip("\n")


# --------------------------------------------------------------------------
# The datasets of ../shared/data/SPLITS.md (their table: spacy_egp.data.datasets)
# --------------------------------------------------------------------------


def get_dataset(name: str) -> Dataset:
    """A dataset of SPLITS.md by name; 'genia-small' and 'genia_small' are the same."""
    key = name.replace("-", "_")
    known = {**DATASETS, **RELATION_DATASETS}
    if key not in known:
        raise ConversionError(f"unknown dataset {name!r}; choose one of {', '.join(known)}")
    return known[key]


def dataset_folder(dataset: Dataset, data_dir: str) -> Path:
    """DATA_DIR/NAME (project assets/) if it holds the files, else DATA_DIR/FOLDER (shared/data layout)."""
    for candidate in (Path(data_dir) / dataset.name, Path(data_dir) / dataset.folder):
        if all((candidate / f).exists() for f in dataset.raw_files()):
            return candidate
    wanted = ", ".join(dataset.raw_files())
    raise ConversionError(
        f"dataset {dataset.name}: {wanted} not found in {Path(data_dir) / dataset.name} nor "
        f"{Path(data_dir) / dataset.folder} (run the project's fetch command first)"
    )


def convert_dataset(name: str, data_dir: str, output_dir: str, *, spans_key: str = "sc", limit: int = 0,
                    lang: Optional[str] = None, splits: Sequence[str] = ("train", "dev", "test"),
                    write: bool = True) -> Dict[str, Tuple[list, Stats]]:
    dataset = get_dataset(name)
    if lang is not None and lang != dataset.lang:
        raise ConversionError(
            f"dataset {dataset.name} is in language {dataset.lang!r}, but --lang {lang!r} was given "
            f"(in the project: --vars.lang {dataset.lang})"
        )
    folder = dataset_folder(dataset, data_dir)
    nlp = make_nlp(dataset.lang)
    texts: Dict[str, str] = {}  # a file read by several splits is read once
    results = {}
    for split_name in splits:
        split = dataset.splits[split_name]
        path = str(folder / split.file)
        if path not in texts:
            texts[path] = read_text(path)
        docs, stats = convert(
            dataset.fmt, path, lang=dataset.lang, spans_key=spans_key,
            select=split.select, limit=limit, scheme=dataset.scheme, nlp=nlp, text=texts[path],
        )
        output = None
        if write:
            output = str(write_docbin(docs, str(Path(output_dir) / f"{split_name}.spacy")))
        print(f"[{dataset.name} {split_name}] " + format_report(
            stats, fmt=dataset.fmt, spans_key=spans_key, selection=split.select or "all", limit=limit,
            output=output, scheme=dataset.scheme))
        results[split_name] = (docs, stats)
    return results

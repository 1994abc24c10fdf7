"""Annotate a corpus with a trained pipeline: records in, records with their spans out.

    python -m spacy_egp.annotate MODEL INPUT OUTPUT [--engine local|ray] [options]

INPUT and OUTPUT are JSON Lines (.jsonl, .json, .ndjson) or Parquet (.parquet,
.pq), chosen by extension, each independently. Every record needs a text field
(--text-field) and an id field (--id-field); every other field is carried
over unchanged. Each output record gets, for each efficient_globalpointer
component, its spans as [{start, end, label, score}] (character offsets, end
exclusive) under --spans-field; with several spans keys the fields are named
"{spans-field}_{spans_key}". A pipeline with a gplinker component also gets
its Doc._.relations under --relations-field.

Nothing is lost and nothing is doubled: every input record lands exactly once
in OUTPUT or in the errors file (--errors, default OUTPUT + ".errors.jsonl")
with its id, its line (JSONL, from 1) or row (Parquet, from 0) and the reason:
a line that is not a JSON object, a missing or non-string text, a text longer
than --max-chars, a missing id, or an id already written (the first record with
an id wins; later ones are errors, so ids in OUTPUT are unique). Blank lines
are not records. OUTPUT keeps the order of the input.

An existing OUTPUT or errors file is never appended to: the run refuses unless
--overwrite is given. Both files are written under a ".partial" name and
renamed at the end, so an interrupted run leaves no half output behind.

Engines: `local` runs nlp.pipe here, or with --n-process > 1 in a pool of
processes that each load the pipeline once; `ray` runs it in --n-process Ray
Data actors (each loads it once), on a local Ray or on the cluster at
--address. With Ray, INPUT is read by Ray's read tasks (it must be at the same
path on every node: shared storage), the results
stream back to this process in input order (preserve_order) and this process
writes OUTPUT: the same records, in the same order, as the local engine.
"""

import argparse
import json
import logging
import multiprocessing
import os
import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Deque, Dict, Iterable, Iterator, List, Optional, Tuple

import spacy
from spacy.language import Language
from spacy.tokens import Doc, Span

FORMATS = {".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet", ".pq": "parquet"}
DEFAULT_MAX_CHARS = 1_000_000
# gplinker writes its entities to doc.spans[spans_key] as efficient_globalpointer does.
SPAN_FACTORIES = ("efficient_globalpointer", "gplinker")
# Columns the Ray actors add to each row; the prefix keeps them apart from the input's fields.
META = "_egp_"
PARQUET_ROWS_PER_GROUP = 10_000
LINES_PER_BLOCK = 10_000  # of the Ray JSONL datasource (then cut to batches by repartition)
READ_CHUNK_BYTES = 1 << 20
# Scores are float32 (about 7 significant digits): more decimals would only
# show the last-bit noise of different batchings, which differ between engines.
SCORE_DECIMALS = 6


class AnnotateError(Exception):
    """A problem with the command's arguments or files: reported without a traceback."""


@dataclass(frozen=True)
class Settings:
    """How records are read and annotated (picklable: the Ray actors get a copy)."""

    text_field: str = "text"
    id_field: str = "id"
    spans_field: str = "spans"
    relations_field: str = "relations"
    max_chars: int = DEFAULT_MAX_CHARS
    batch_size: int = 256


@dataclass
class Row:
    """One input record, parsed and checked; `error` is the reason it cannot be annotated."""

    position: int  # JSONL: line number from 1; Parquet: row number from 0
    record: Optional[Dict[str, Any]]
    error: Optional[str] = None
    annotations: Optional[Dict[str, Any]] = None
    words: int = 0


def file_format(path: Path, role: str) -> str:
    """'jsonl' or 'parquet', from the extension of `path`."""
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise AnnotateError(
            f"{role} {path}: unknown extension {path.suffix!r}; use one of {', '.join(FORMATS)} "
            "(JSON Lines or Parquet)."
        )
    return fmt


# ---------------------------------------------------------------- reading


def iter_lines(stream: IO[bytes]) -> Iterator[Tuple[int, bytes]]:
    """(line number from 1, line) of a binary stream, split on b"\\n" only.

    Not str.splitlines (used by ray.data.read_text): it also splits on U+2028
    and U+0085, which JSON allows unescaped inside strings.
    """
    number, rest = 0, b""
    while True:
        chunk = stream.read(READ_CHUNK_BYTES)
        if not chunk:
            break
        lines = (rest + chunk).split(b"\n")
        rest = lines.pop()
        for line in lines:
            number += 1
            yield number, line
    if rest:
        yield number + 1, rest


def parse_line(line: bytes) -> Tuple[Optional[Dict[str, Any]], Optional[str]]:
    """The JSON object on a line, or the reason it is not one."""
    try:
        record = json.loads(line.decode("utf-8"))
    except UnicodeDecodeError as err:
        return None, f"the line is not valid UTF-8 ({err.reason} at byte {err.start})"
    except json.JSONDecodeError as err:
        return None, f"the line is not valid JSON ({err.msg}, column {err.colno})"
    if not isinstance(record, dict):
        return None, f"the line is a JSON {type(record).__name__}, expected an object"
    return record, None


def check_record(record: Dict[str, Any], settings: Settings) -> Optional[str]:
    """The reason a parsed record cannot be annotated, or None."""
    record_id, text = record.get(settings.id_field), record.get(settings.text_field)
    if settings.id_field not in record:
        return f"missing id field {settings.id_field!r} (set --id-field)"
    if record_id is None:
        return "the id is null"
    if isinstance(record_id, bool) or not isinstance(record_id, (str, int)):
        return f"the id must be a string or an integer, got {type(record_id).__name__}"
    if settings.text_field not in record:
        return f"missing text field {settings.text_field!r} (set --text-field)"
    if text is None:
        return "the text is null"
    if not isinstance(text, str):
        return f"the text must be a string, got {type(text).__name__}"
    if len(text) > settings.max_chars:
        return f"the text has {len(text):,} characters, more than --max-chars {settings.max_chars:,}"
    return None


def jsonl_rows(lines: Iterable[Tuple[int, bytes]], settings: Settings) -> Iterator[Row]:
    """The records of JSONL lines; blank lines are not records."""
    for number, line in lines:
        if not line.strip():
            continue
        record, error = parse_line(line)
        yield Row(number, record, error or check_record(record, settings))


def record_rows(records: Iterable[Dict[str, Any]], settings: Settings, start: int = 0) -> Iterator[Row]:
    """The rows of already parsed records (Parquet), numbered from `start`."""
    for position, record in enumerate(records, start):
        yield Row(position, record, check_record(record, settings))


def read_rows(path: Path, settings: Settings) -> Iterator[Row]:
    """The rows of a JSONL or Parquet file, in file order."""
    if file_format(path, "INPUT") == "jsonl":
        with path.open("rb") as stream:
            yield from jsonl_rows(iter_lines(stream), settings)
    else:
        import pyarrow.parquet as pq

        position = 0
        for batch in pq.ParquetFile(path).iter_batches(batch_size=settings.batch_size):
            records = batch.to_pylist()
            yield from record_rows(records, settings, position)
            position += len(records)


# ---------------------------------------------------------------- annotating


def load_pipeline(model: str) -> Language:
    """spacy.load(model), with an error message that names the fix."""
    try:
        return spacy.load(model)
    except (OSError, IOError, ValueError) as err:
        raise AnnotateError(
            f"Cannot load the pipeline {model!r}: {err}\nPass the folder of a trained pipeline "
            "(the one with config.cfg, e.g. training/model-best) or an installed pipeline package."
        ) from None


def spans_fields(nlp: Language, spans_field: str) -> Dict[str, str]:
    """{spans_key: output field} of the pipeline's efficient_globalpointer (and gplinker entity) components."""
    keys = [pipe.key for name, pipe in nlp.pipeline if nlp.get_pipe_meta(name).factory in SPAN_FACTORIES]
    keys = list(dict.fromkeys(keys))
    if not keys:
        raise AnnotateError(
            f"The pipeline has no efficient_globalpointer component (its components: {nlp.pipe_names}); "
            "annotate writes that component's spans."
        )
    if len(keys) == 1:
        return {keys[0]: spans_field}
    return {key: f"{spans_field}_{key}" for key in keys}


def has_relations(nlp: Language) -> bool:
    """Whether the pipeline has a gplinker whose Doc._.relations can be written."""
    if "gplinker" not in {nlp.get_pipe_meta(name).factory for name in nlp.pipe_names}:
        return False
    if not Doc.has_extension("relations"):
        logging.getLogger(__name__).warning("The gplinker component set no Doc._.relations: no relations written.")
        return False
    return True


def span_records(doc: Doc, key: str) -> List[Dict[str, Any]]:
    """[{start, end, label, score}] of doc.spans[key], with character offsets."""
    group = doc.spans.get(key)
    if group is None:
        return []
    scores = group.attrs.get("scores")
    return [
        {"start": span.start_char, "end": span.end_char, "label": span.label_,
         "score": None if scores is None else round(float(scores[i]), SCORE_DECIMALS)}
        for i, span in enumerate(group)
    ]


def _part(relation: Any, name: str, index: int) -> Any:
    """A part of a relation record: mapping key, attribute or tuple item (a gplinker Relation is a NamedTuple)."""
    if isinstance(relation, dict):
        return relation.get(name)
    if hasattr(relation, name):
        return getattr(relation, name)
    if isinstance(relation, (tuple, list)):
        return relation[index] if index < len(relation) else None
    return None


def _span_ref(span: Any) -> Optional[Dict[str, Any]]:
    if isinstance(span, Span):
        return {"start": span.start_char, "end": span.end_char, "label": span.label_}
    return None if span is None else {"start": _part(span, "start", 0), "end": _part(span, "end", 1),
                                      "label": _part(span, "label", 2)}


def relation_records(doc: Doc) -> List[Dict[str, Any]]:
    """[{head: {start, end, label}, label, tail: {...}, score}] of doc._.relations.

    gplinker's records are Relation(head, label, tail, score) NamedTuples of
    Spans; read defensively, a relation may also be a dict with those keys or a
    plain (head, label, tail, score) tuple, and an argument a dict or tuple of
    character offsets and label.
    """
    records = []
    for relation in getattr(doc._, "relations", None) or []:
        label = _part(relation, "label", 1)
        score = _part(relation, "score", 3)
        records.append({"head": _span_ref(_part(relation, "head", 0)), "label": None if label is None else str(label),
                        "tail": _span_ref(_part(relation, "tail", 2)),
                        "score": None if score is None else round(float(score), SCORE_DECIMALS)})
    return records


class Annotator:
    """A loaded pipeline and what to write of each doc."""

    def __init__(self, model: str, settings: Settings) -> None:
        self.model, self.settings = model, settings
        self.nlp = load_pipeline(model)
        self.fields = spans_fields(self.nlp, settings.spans_field)
        self.relations = has_relations(self.nlp)

    def annotations(self, doc: Doc) -> Dict[str, Any]:
        """The fields added to the record of `doc`."""
        fields: Dict[str, Any] = {field: span_records(doc, key) for key, field in self.fields.items()}
        if self.relations:
            fields[self.settings.relations_field] = relation_records(doc)
        return fields

    def annotate_texts(self, texts: List[str]) -> List[Tuple[Dict[str, Any], int]]:
        """(annotations, words) of each text, through nlp.pipe."""
        return [(self.annotations(doc), len(doc)) for doc in self.nlp.pipe(texts, batch_size=self.settings.batch_size)]

    def annotate(self, rows: Iterable[Row], n_process: int = 1) -> Iterator[Row]:
        """The rows, in order, the good ones annotated: here, or by a pool of `n_process` processes.

        Not nlp.pipe(n_process=...): it sends every Doc back through srsly's
        msgpack, which looks up its entry points on each call (a few ms a doc
        in an environment with many packages), so that 2 processes were
        slower than 1. The workers here send back the annotations only.
        """
        batches = (list(batch) for batch in spacy.util.minibatch(rows, self.settings.batch_size))
        if n_process == 1:
            for batch in batches:
                yield from _filled(batch, self.annotate_texts(self._texts(batch)))
        else:
            yield from self._annotate_in_pool(batches, n_process)

    def _texts(self, batch: List[Row]) -> List[str]:
        return [row.record[self.settings.text_field] for row in batch if row.error is None]

    def _annotate_in_pool(self, batches: Iterable[List[Row]], n_process: int) -> Iterator[Row]:
        with multiprocessing.Pool(n_process, initializer=_start_worker, initargs=(self.model, self.settings)) as pool:
            pending: Deque[Tuple[List[Row], Any]] = deque()
            for batch in batches:
                pending.append((batch, pool.apply_async(_annotate_in_worker, (self._texts(batch),))))
                # A bounded window: the input is read as fast as the workers go, not into memory.
                if len(pending) > 2 * n_process:
                    batch, result = pending.popleft()
                    yield from _filled(batch, result.get())
            for batch, result in pending:
                yield from _filled(batch, result.get())


def _filled(batch: List[Row], results: List[Tuple[Dict[str, Any], int]]) -> Iterator[Row]:
    """The batch's rows, the good ones given their (annotations, words) in order."""
    good = iter(results)
    for row in batch:
        if row.error is None:
            row.annotations, row.words = next(good)
        yield row


# The pipeline of a local worker process, loaded once by the pool's initializer.
_WORKER: Optional[Annotator] = None


def _start_worker(model: str, settings: Settings) -> None:
    global _WORKER
    _WORKER = Annotator(model, settings)


def _annotate_in_worker(texts: List[str]) -> List[Tuple[Dict[str, Any], int]]:
    assert _WORKER is not None, "the pool's initializer loads the pipeline"
    return _WORKER.annotate_texts(texts)


# ---------------------------------------------------------------- writing


def annotation_types(fields: Iterable[str], relations_field: Optional[str]) -> Dict[str, Any]:
    """The Arrow types of the added fields (explicit: a batch without spans must not make them null)."""
    import pyarrow as pa

    span = pa.struct([("start", pa.int64()), ("end", pa.int64()), ("label", pa.string()), ("score", pa.float64())])
    types = {field: pa.list_(span) for field in fields}
    if relations_field:
        ref = pa.struct([("start", pa.int64()), ("end", pa.int64()), ("label", pa.string())])
        types[relations_field] = pa.list_(pa.struct([("head", ref), ("label", pa.string()), ("tail", ref),
                                                     ("score", pa.float64())]))
    return types


class JsonlWriter:
    def __init__(self, path: Path) -> None:
        self.stream = path.open("w", encoding="utf-8")

    def write(self, records: List[Dict[str, Any]]) -> List[Tuple[Dict[str, Any], str]]:
        for record in records:
            # default=str: Parquet values without a JSON type (dates, decimals) become strings.
            self.stream.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
        return []

    def close(self) -> None:
        self.stream.close()


class ParquetWriter:
    """Row groups of records; the schema is the first group's, with the added fields typed explicitly."""

    def __init__(self, path: Path, types: Dict[str, Any]) -> None:
        self.path, self.types, self.writer = path, types, None

    def _schema(self, records: List[Dict[str, Any]]) -> Any:
        import pyarrow as pa

        inferred = pa.Table.from_pylist(records).schema if records else pa.schema([])
        fields = [field for field in inferred if field.name not in self.types]
        return pa.schema(fields + [pa.field(name, kind) for name, kind in self.types.items()])

    def write(self, records: List[Dict[str, Any]]) -> List[Tuple[Dict[str, Any], str]]:
        """Write records; RETURNS those that do not fit the schema, with the reason."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self.writer is None:
            self.writer = pq.ParquetWriter(self.path, self._schema(records))
        try:
            self.writer.write_table(pa.Table.from_pylist(records, schema=self.writer.schema))
            return []
        except (pa.ArrowException, TypeError, ValueError):
            return self._write_one_by_one(records)

    def _write_one_by_one(self, records: List[Dict[str, Any]]) -> List[Tuple[Dict[str, Any], str]]:
        import pyarrow as pa

        rejected, good = [], []
        for record in records:
            try:
                good.append(pa.Table.from_pylist([record], schema=self.writer.schema))
            except (pa.ArrowException, TypeError, ValueError) as err:
                rejected.append((record, f"its fields do not fit the Parquet schema of the first records ({err})"))
        if good:
            self.writer.write_table(pa.concat_tables(good))
        return rejected

    def close(self) -> None:
        import pyarrow.parquet as pq

        if self.writer is None:  # no record at all: an empty file with the added fields
            self.writer = pq.ParquetWriter(self.path, self._schema([]))
        self.writer.close()


@dataclass
class Summary:
    records: int = 0
    errors: int = 0
    words: int = 0
    seconds: float = 0.0

    @property
    def docs_per_second(self) -> float:
        return self.records / self.seconds if self.seconds else 0.0


class Output:
    """OUTPUT and its errors file: first id wins, progress on stderr, renamed into place on close."""

    def __init__(self, path: Path, errors: Path, settings: Settings, types: Dict[str, Any],
                 total: Optional[int], progress: bool, position_name: str) -> None:
        from tqdm import tqdm

        self.paths = [(partial_path(path), path), (partial_path(errors), errors)]
        self.settings, self.position_name = settings, position_name
        self.writer = JsonlWriter(self.paths[0][0]) if file_format(path, "OUTPUT") == "jsonl" \
            else ParquetWriter(self.paths[0][0], types)
        self.errors = self.paths[1][0].open("w", encoding="utf-8")
        self.seen: Dict[Any, int] = {}
        self.pending: List[Tuple[Dict[str, Any], int]] = []
        self.summary = Summary()
        self.start = time.perf_counter()
        self.bar = tqdm(total=total, unit="doc", file=sys.stderr, disable=not progress, smoothing=0.1)

    def add(self, row: Row) -> None:
        self.bar.update(1)
        error = row.error
        record_id = None if row.record is None else row.record.get(self.settings.id_field)
        if error is None and record_id in self.seen:
            error = f"duplicate id: already written from {self.position_name} {self.seen[record_id]}"
        if error is not None:
            return self.error(record_id, row.position, error)
        self.seen[record_id] = row.position
        self.summary.words += row.words
        self.pending.append(({**row.record, **row.annotations}, row.position))
        if len(self.pending) >= PARQUET_ROWS_PER_GROUP:
            self.flush()

    def error(self, record_id: Any, position: int, reason: str) -> None:
        self.summary.errors += 1
        entry = {"id": record_id, self.position_name: position, "reason": reason}
        self.errors.write(json.dumps(entry, ensure_ascii=False, default=str) + "\n")

    def flush(self) -> None:
        positions = {id(record): position for record, position in self.pending}
        rejected = self.writer.write([record for record, _ in self.pending])
        for record, reason in rejected:
            self.error(record.get(self.settings.id_field), positions[id(record)], reason)
        self.summary.records += len(self.pending) - len(rejected)
        self.pending = []

    def close(self) -> Summary:
        self.flush()
        self.writer.close()
        self.errors.close()
        self.bar.close()
        for partial, final in self.paths:
            os.replace(partial, final)
        self.summary.seconds = time.perf_counter() - self.start
        return self.summary


def partial_path(path: Path) -> Path:
    return path.with_name(path.name + ".partial")


# ---------------------------------------------------------------- Ray


def _jsonl_datasource(path: str) -> Any:
    """A Ray datasource of the non-blank lines of a JSONL file: _egp_line (number) and _egp_raw (bytes)."""
    import pyarrow as pa
    from ray.data.datasource import FileBasedDatasource

    class JsonLinesSource(FileBasedDatasource):
        # One file is one read task, so line numbers are exact.
        def _read_stream(self, f: Any, path: str) -> Iterator[Any]:
            numbers, lines = [], []
            for number, line in iter_lines(f):
                if not line.strip():
                    continue  # not a record, as in jsonl_rows
                numbers.append(number)
                lines.append(line)
                if len(lines) >= LINES_PER_BLOCK:
                    yield pa.table({f"{META}line": numbers, f"{META}raw": pa.array(lines, pa.binary())})
                    numbers, lines = [], []
            if lines:
                yield pa.table({f"{META}line": numbers, f"{META}raw": pa.array(lines, pa.binary())})

    return JsonLinesSource(path)


class RayAnnotator:
    """The Ray Data actor: loads the pipeline once, annotates batches of rows.

    JSONL batches (line numbers and raw lines) come back with the raw line;
    Parquet batches keep their columns. Both gain _egp_error, _egp_annotations
    (JSON) and _egp_words; the driver rebuilds the rows from them.
    """

    def __init__(self, model: str, settings: Settings, source: str) -> None:
        self.annotator = Annotator(model, settings)
        self.settings, self.source = settings, source

    def __call__(self, batch: Any) -> Any:
        import pyarrow as pa

        if self.source == "jsonl":
            pairs = zip(batch.column(f"{META}line").to_pylist(), batch.column(f"{META}raw").to_pylist())
            rows = list(jsonl_rows(pairs, self.settings))  # one a line: the datasource left out blank ones
        else:
            rows = list(record_rows(batch.to_pylist(), self.settings))
        rows = list(self.annotator.annotate(rows))
        batch = batch.append_column(f"{META}error", pa.array([row.error for row in rows], pa.string()))
        annotations = [None if row.annotations is None else json.dumps(row.annotations) for row in rows]
        batch = batch.append_column(f"{META}annotations", pa.array(annotations, pa.string()))
        return batch.append_column(f"{META}words", pa.array([row.words for row in rows], pa.int64()))


def _start_ray(address: Optional[str], n_actors: int) -> bool:
    """Connect to Ray (or start a quiet local one); RETURNS whether this call started it."""
    import ray

    if ray.is_initialized():
        return False
    options: Dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.ERROR}
    if address:
        ray.init(address=address, **options)
    else:
        # One CPU more than the actors: Ray Data's read task needs a slot too,
        # or the actors hold every CPU and the read never runs (a deadlock).
        # Ray runs its workers at nice 15: on a machine shared with other work
        # the actors would get less CPU than the local engine's processes.
        ray.init(num_cpus=n_actors + 1, _system_config={"worker_niceness": 0}, **options)
    return True


def ray_rows(model: str, path: Path, settings: Settings, n_actors: int, address: Optional[str]) -> Iterator[Row]:
    """The rows of INPUT annotated by Ray Data actors, in input order."""
    try:
        import ray
        import ray.data
    except ImportError:
        raise AnnotateError("--engine ray needs Ray Data: pip install 'spacy-egp[ray]'.") from None
    started = _start_ray(address, n_actors)
    try:
        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True  # OUTPUT in input order, as the local engine
        context.enable_progress_bars = False  # ours is on stderr
        context.print_on_execution_start = False
        logging.getLogger("ray.data").setLevel(logging.ERROR)  # else it warns that its bars are off
        source = file_format(path, "INPUT")
        absolute = str(path.resolve())
        data = ray.data.read_datasource(_jsonl_datasource(absolute)) if source == "jsonl" \
            else ray.data.read_parquet(absolute)
        # A read task makes large blocks (a whole file, a row group), and an actor
        # takes whole blocks: blocks of one batch let every actor work.
        data = data.repartition(target_num_rows_per_block=settings.batch_size)
        data = data.map_batches(RayAnnotator, fn_constructor_args=(model, settings, source),
                                batch_size=settings.batch_size, batch_format="pyarrow",
                                compute=ray.data.ActorPoolStrategy(size=n_actors), num_cpus=1)
        position = 0
        for batch in data.iter_batches(batch_format="pyarrow", batch_size=None):
            for values in batch.to_pylist():
                yield _driver_row(values, source, position)
                position += 1
    finally:
        if started:
            ray.shutdown()


def _driver_row(values: Dict[str, Any], source: str, position: int) -> Row:
    """A row rebuilt from an actor's output row."""
    error, words = values.pop(f"{META}error"), values.pop(f"{META}words")
    annotations = values.pop(f"{META}annotations")
    annotations = None if annotations is None else json.loads(annotations)
    if source == "jsonl":
        record, _ = parse_line(values[f"{META}raw"])
        return Row(values[f"{META}line"], record, error, annotations, words)
    return Row(position, values, error, annotations, words)


# ---------------------------------------------------------------- the command


def annotate(model: str, input_path: Path, output: Path, *, engine: str = "local", settings: Settings = Settings(),
             n_process: int = 1, address: Optional[str] = None, errors: Optional[Path] = None,
             overwrite: bool = False, progress: bool = True) -> Summary:
    """Annotate INPUT into OUTPUT (see the module's docstring).

    RETURNS (Summary): records written, errors, words of the written records, seconds.
    """
    if engine not in ("local", "ray"):
        raise AnnotateError(f"Unknown engine {engine!r}: use 'local' or 'ray'.")
    input_path, output = Path(input_path), Path(output)
    errors = Path(errors) if errors else output.with_name(output.name + ".errors.jsonl")
    source = _check_paths(input_path, output, errors, overwrite)
    annotator = Annotator(model, settings)  # also checks the model before Ray starts
    types = annotation_types(annotator.fields.values(), settings.relations_field if annotator.relations else None)
    total = _parquet_rows(input_path) if source == "parquet" else None
    sink = Output(output, errors, settings, types, total, progress, "line" if source == "jsonl" else "row")
    if engine == "ray":
        rows = ray_rows(model, input_path, settings, n_process, address)
    else:
        rows = annotator.annotate(read_rows(input_path, settings), n_process)
    for row in rows:
        sink.add(row)
    return sink.close()


def _check_paths(input_path: Path, output: Path, errors: Path, overwrite: bool) -> str:
    """The input's format, after checking that INPUT is readable and OUTPUT may be written."""
    source = file_format(input_path, "INPUT")
    file_format(output, "OUTPUT")
    if not input_path.is_file():
        raise AnnotateError(f"INPUT {input_path}: no such file.")
    if not os.access(input_path, os.R_OK):
        raise AnnotateError(f"INPUT {input_path}: not readable (check its permissions).")
    existing = [str(path) for path in (output, errors) if path.exists()]
    if existing and not overwrite:
        raise AnnotateError(
            f"{' and '.join(existing)} already exist(s): pass --overwrite to replace, or choose another OUTPUT. "
            "Runs never append, so no record is doubled."
        )
    if source == "parquet":
        _parquet_rows(input_path)  # fails here, before any work, on a file that is not Parquet
    return source


def _parquet_rows(path: Path) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path).metadata.num_rows
    except (pa.ArrowException, OSError) as err:
        raise AnnotateError(f"INPUT {path}: not a readable Parquet file ({err}).") from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m spacy_egp.annotate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="a trained pipeline: its folder or package name")
    parser.add_argument("input", type=Path, help="JSONL or Parquet file of records")
    parser.add_argument("output", type=Path, help="JSONL or Parquet file to write (by extension)")
    parser.add_argument("--engine", choices=["local", "ray"], default="local")
    parser.add_argument("--n-process", type=int, default=1, help="local: processes; ray: actors")
    parser.add_argument("--batch-size", type=int, default=256, help="docs per nlp.pipe batch (and Ray batch)")
    parser.add_argument("--address", default=None, help="ray: the address of a running cluster, e.g. auto or HOST:6379")
    parser.add_argument("--text-field", default="text")
    parser.add_argument("--id-field", default="id")
    parser.add_argument("--spans-field", default="spans", help="with several spans keys: FIELD_KEY")
    parser.add_argument("--relations-field", default="relations")
    parser.add_argument("--max-chars", type=int, default=DEFAULT_MAX_CHARS, help="longer texts go to the errors")
    parser.add_argument("--errors", type=Path, default=None, help="default: OUTPUT.errors.jsonl")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing OUTPUT and errors file")
    parser.add_argument("--no-progress", action="store_true")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """RETURNS 0 when the run finished (bad records are in the errors file), 2 on an unusable argument."""
    args = _parser().parse_args(argv)
    if args.n_process < 1 or args.batch_size < 1 or args.max_chars < 1:
        print("error: --n-process, --batch-size and --max-chars must be at least 1.", file=sys.stderr)
        return 2
    settings = Settings(text_field=args.text_field, id_field=args.id_field, spans_field=args.spans_field,
                        relations_field=args.relations_field, max_chars=args.max_chars, batch_size=args.batch_size)
    try:
        summary = annotate(args.model, args.input, args.output, engine=args.engine, settings=settings,
                           n_process=args.n_process, address=args.address, errors=args.errors,
                           overwrite=args.overwrite, progress=not args.no_progress)
    except AnnotateError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    errors = args.errors or args.output.with_name(args.output.name + ".errors.jsonl")
    print(f"{summary.records:,} records ({summary.words:,} words) in {summary.seconds:.1f} s "
          f"({summary.docs_per_second:,.0f} docs/s) -> {args.output}; {summary.errors:,} errors -> {errors}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

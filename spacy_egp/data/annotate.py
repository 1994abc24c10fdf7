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

Both files are written under a ".partial" name (a Parquet OUTPUT as a folder
of complete part files) and put in place when the run is complete, so a reader
never sees a half OUTPUT. An existing OUTPUT, errors file or work file is
refused unless --overwrite (start again) or --resume (continue an interrupted
run: the records in OUTPUT.partial, by id, and the errors, by input position,
are kept and neither annotated nor written again; a torn last line that a
killed run left is cut off and its record redone; a finished run is left as it
is).

Engines: `local` runs nlp.pipe here, or with --n-process > 1 in a pool of
worker processes (from a forkserver, never forked from this process: see
WorkerPool) that each load the pipeline once; a worker that dies has its batch annotated again by a new one,
or, when a batch killed its worker twice, the run stops with an error naming
it. `ray` runs it in --n-process Ray Data actors (each loads it once; Ray
restarts a killed actor and retries its batch), on a local Ray or on the
cluster at --address. With Ray, INPUT is read by Ray's read tasks (it must be
at the same path on every node: shared storage), the results stream back to
this process in input order (preserve_order) and this process writes OUTPUT:
the same records, in the same order, as the local engine.
"""

import importlib.util
import json
import logging
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import sys
import time
import traceback
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Deque, Dict, Iterable, Iterator, List, Optional, Set, Tuple

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
# Local worker processes are never forked from the caller: see WorkerPool (issue 25). A
# forkserver (a fresh process that imports this module once, runs no model, and forks the
# workers) starts them faster than spawn, which imports spaCy and torch again in each one.
DEFAULT_START_METHOD = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
# A batch whose worker process died this many times is taken to be the cause and stops the run.
MAX_BATCH_ATTEMPTS = 2


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
    done: bool = False  # written by an earlier run (--resume): neither annotated nor written again


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

    def annotate(self, rows: Iterable[Row]) -> Iterator[Row]:
        """The rows, in order, annotated here in batches; rows with an error or done (--resume) are not.

        More processes: WorkerPool. Not nlp.pipe(n_process=...): it sends
        every Doc back through srsly's msgpack, which looks up its entry points
        on each call (a few ms a doc in an environment with many packages), so
        that 2 processes were slower than 1; and it forks (see WorkerPool).
        """
        for batch in spacy.util.minibatch(rows, self.settings.batch_size):
            yield from _filled(batch, self.annotate_texts(_texts(batch, self.settings)))


def _texts(batch: List[Row], settings: Settings) -> List[str]:
    """The texts of the rows to annotate: no error, not done by an earlier run."""
    return [row.record[settings.text_field] for row in batch if row.error is None and not row.done]


def _filled(batch: List[Row], results: List[Tuple[Dict[str, Any], int]]) -> List[Row]:
    """The batch's rows, those that were annotated given their (annotations, words) in order."""
    good = iter(results)
    for row in batch:
        if row.error is None and not row.done:
            row.annotations, row.words = next(good)
    return batch


# ---------------------------------------------------------------- the local worker pool


@dataclass
class _Batch:
    number: int  # from 0, in input order
    rows: List[Row]
    attempts: int = 0  # workers that died while holding it


@dataclass(eq=False)  # a dict key: hashed by identity
class _Worker:
    process: Any  # multiprocessing's Process of the pool's context
    connection: Any  # the driver's end of a duplex Pipe
    ready: bool = False  # the pipeline is loaded
    batch: Optional[_Batch] = None  # the one batch it holds (never more: a death loses exactly that one)


class WorkerPool:
    """`n_process` worker processes that each load the pipeline once and annotate one batch at a time.

    Started with `start_method` "forkserver" (default where there is one) or
    "spawn", never by forking this process: after torch has run a layer here
    (a BiLSTM context, a transformer), its OpenMP (libgomp) thread team is in a
    state that a forked child inherits without the threads, and the child's
    first parallel torch call waits on them forever (issue 25).

    A worker that dies (SIGKILL from the out-of-memory killer, a crash in
    native code) is noticed through its process sentinel, never waited for:
    the one batch it held goes back to the front of the queue and a new
    worker is started. A batch whose worker died MAX_BATCH_ATTEMPTS times is
    taken to be the cause (a text too large for memory): the run stops with
    an AnnotateError naming the batch's lines, instead of killing workers
    forever. Results are yielded in input order.
    """

    def __init__(self, model: str, settings: Settings, n_process: int, start_method: str = DEFAULT_START_METHOD,
                 position_name: str = "line") -> None:
        if start_method not in multiprocessing.get_all_start_methods():
            raise AnnotateError(f"Unknown start method {start_method!r}: use one of "
                                f"{multiprocessing.get_all_start_methods()} (spawn is safe everywhere).")
        self.model, self.settings, self.n_process = model, settings, n_process
        self.context = multiprocessing.get_context(start_method)
        if start_method == "forkserver":
            # The server imports this module (spaCy, thinc, torch) once; it never runs a model, so
            # forking it is safe. (No effect when this process's forkserver is already running.)
            self.context.set_forkserver_preload([__name__])
        self.position_name = position_name
        self.workers: List[_Worker] = []
        self.workers_lost = 0
        # The cores shared out: n workers each with torch's default of one thread a core would
        # oversubscribe them, and an OpenMP barrier per LSTM step then waits on descheduled threads.
        self.threads_per_worker = max(1, len(os.sched_getaffinity(0)) // n_process)

    def __enter__(self) -> "WorkerPool":
        self.workers = [self._start_worker() for _ in range(self.n_process)]
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def _start_worker(self, attempts: int = 2) -> _Worker:
        driver_end, worker_end = self.context.Pipe(duplex=True)
        process = self.context.Process(target=_worker_main, args=(self.model, self.settings, worker_end,
                                                                  self.threads_per_worker),
                                       name="spacy_egp.annotate worker", daemon=True)
        try:
            process.start()
        except OSError:
            # The forkserver itself was killed (it died between multiprocessing's liveness check
            # and the request): the next start finds it dead and starts a new one.
            driver_end.close()
            worker_end.close()
            if attempts <= 1:
                raise
            return self._start_worker(attempts - 1)
        worker_end.close()  # the worker's copy stays open: its EOF then means the worker is gone
        return _Worker(process, driver_end)

    def close(self) -> None:
        """Ask the workers to stop; end those that do not within a few seconds."""
        for worker in self.workers:
            try:
                worker.connection.send(None)
            except (OSError, ValueError):
                pass  # already gone
        for worker in self.workers:
            worker.process.join(timeout=5)
            if worker.process.is_alive():
                worker.process.terminate()
                worker.process.join(timeout=5)
            worker.connection.close()
        self.workers = []

    def annotate(self, batches: Iterable[List[Row]]) -> Iterator[List[Row]]:
        """The batches, annotated, in input order; at most about 3 x n_process of them in memory."""
        batches = iter(batches)
        queue: Deque[_Batch] = deque()  # read, not yet given to a worker
        finished: Dict[int, List[Row]] = {}
        read = yielded = 0
        exhausted = False
        while True:
            while not exhausted and read - yielded < 3 * self.n_process:
                rows = next(batches, None)
                if rows is None:
                    exhausted = True
                elif _texts(rows, self.settings):
                    queue.append(_Batch(read, rows))
                    read += 1
                else:  # nothing to annotate (errors, or done by an earlier run)
                    finished[read] = rows
                    read += 1
            while yielded in finished:
                yield finished.pop(yielded)
                yielded += 1
            if exhausted and yielded == read:
                return
            if not queue and not any(worker.batch for worker in self.workers):
                continue  # nothing to wait for: every batch read was finished earlier (--resume); read on
            self._dispatch(queue)
            self._wait(queue, finished)

    def _dispatch(self, queue: Deque[_Batch]) -> None:
        for worker in self.workers:
            if worker.ready and worker.batch is None and queue:
                worker.batch = queue.popleft()
                try:
                    worker.connection.send((worker.batch.number, _texts(worker.batch.rows, self.settings)))
                except OSError:
                    pass  # it died: _wait sees its sentinel and puts the batch back

    def _wait(self, queue: Deque[_Batch], finished: Dict[int, List[Row]]) -> None:
        """Wait for a message or a death of any worker (never for a dead one)."""
        waitables = {worker.connection: worker for worker in self.workers}
        waitables.update({worker.process.sentinel: worker for worker in self.workers})
        for ready in multiprocessing.connection.wait(list(waitables)):
            worker = waitables[ready]
            if worker not in self.workers:
                continue  # replaced earlier in this loop (its pipe and its sentinel were both ready)
            # Messages first: a worker may have sent its batch back just before it died.
            if self._drain(worker, finished) and worker.process.is_alive():
                continue
            worker.process.join(timeout=10)  # its pipe closed: let it finish dying
            if worker.process.is_alive():
                worker.process.terminate()
                worker.process.join()
            self._replace_dead(worker, queue)

    def _drain(self, worker: _Worker, finished: Dict[int, List[Row]]) -> bool:
        """Receive every message waiting from `worker`; RETURNS False when its pipe is closed."""
        try:
            while worker.connection.poll():
                self._receive(worker, worker.connection.recv(), finished)
        except (EOFError, OSError):
            return False
        return True

    def _receive(self, worker: _Worker, message: Tuple[Any, ...], finished: Dict[int, List[Row]]) -> None:
        kind = message[0]
        if kind == "ready":
            worker.ready = True
        elif kind == "done":
            _, number, results = message
            assert worker.batch is not None and worker.batch.number == number
            finished[number] = _filled(worker.batch.rows, results)
            worker.batch = None
        else:  # "failed" to load, or "error" in a batch: a Python exception, the same on any worker
            raise AnnotateError(f"A worker process raised an error{self._batch_name(worker.batch)}:\n{message[-1]}")

    def _replace_dead(self, worker: _Worker, queue: Deque[_Batch]) -> None:
        code = worker.process.exitcode
        cause = f"exit code {code}" + (f", killed by {signal.Signals(-code).name}" if code is not None and code < 0
                                       and -code in signal.valid_signals() else "")
        if not worker.ready:
            raise AnnotateError(
                f"A worker process ended ({cause}) before its pipeline was loaded; its error, if any, is above. "
                f"Workers start with {self.context.get_start_method()!r} and import the main module again: a "
                "script that calls annotate() must do so under `if __name__ == \"__main__\":`."
            )
        self.workers_lost += 1
        batch, worker.batch = worker.batch, None
        if batch is not None:
            batch.attempts += 1
            if batch.attempts >= MAX_BATCH_ATTEMPTS:
                raise AnnotateError(
                    f"The worker process annotating{self._batch_name(batch)} died {batch.attempts} times "
                    f"(last: {cause}; -9 is SIGKILL, e.g. by the out-of-memory killer). The run stops rather than "
                    "kill workers forever: lower --max-chars or --batch-size, or leave those records out, and "
                    "continue with --resume."
                )
            queue.appendleft(batch)
            logging.getLogger(__name__).warning(
                "A worker process died (%s)%s; annotating it again with a new worker.", cause,
                self._batch_name(batch).replace(" batch", ": its batch", 1))
        worker.connection.close()
        self.workers[self.workers.index(worker)] = self._start_worker()

    def _batch_name(self, batch: Optional[_Batch]) -> str:
        if batch is None:
            return ""
        return (f" batch {batch.number} ({self.position_name}s {batch.rows[0].position}"
                f"-{batch.rows[-1].position} of the input)")


def _worker_main(model: str, settings: Settings, connection: Any, threads: int) -> None:
    """A worker process: load the pipeline, then annotate (number, texts) messages until None or EOF.

    threads (int): torch's intra-op threads here (as torch's DataLoader workers limit theirs).
    """
    try:
        if "torch" in sys.modules or importlib.util.find_spec("torch") is not None:
            import torch

            torch.set_num_threads(threads)
        annotator = Annotator(model, settings)
    except BaseException:
        connection.send(("failed", traceback.format_exc()))
        return
    connection.send(("ready", os.getpid()))
    while True:
        try:
            message = connection.recv()
        except EOFError:  # the driver is gone: nothing to annotate for
            return
        if message is None:
            return
        number, texts = message
        try:
            connection.send(("done", number, annotator.annotate_texts(texts)))
        except Exception:
            connection.send(("error", number, traceback.format_exc()))


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
    """OUTPUT.partial as JSON Lines, appended to by a resumed run (after its torn last line is cut off)."""

    def __init__(self, path: Path, append: bool = False) -> None:
        self.path = path
        self.stream = path.open("a" if append else "w", encoding="utf-8")

    def write(self, records: List[Dict[str, Any]]) -> List[Tuple[Dict[str, Any], str]]:
        for record in records:
            # default=str: Parquet values without a JSON type (dates, decimals) become strings.
            self.stream.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
        self.stream.flush()  # whole lines reach the file: a killed driver loses at most the last batch
        return []

    def finish(self, final: Path) -> None:
        self.stream.close()
        os.replace(self.path, final)


class ParquetWriter:
    """OUTPUT.partial as a folder of complete Parquet files, one a row group, merged into OUTPUT at the end.

    A Parquet file is readable only once its footer is written, so a killed
    run's single file could not be resumed: each part is written under a
    temporary name and renamed when complete. The schema is the first part's,
    with the added fields typed explicitly.
    """

    def __init__(self, folder: Path, types: Dict[str, Any]) -> None:
        import pyarrow.parquet as pq

        self.folder, self.types = folder, types
        folder.mkdir(exist_ok=True)
        self.parts = parquet_parts(folder)
        self.schema = pq.read_schema(self.parts[0]) if self.parts else None

    def _schema(self, records: List[Dict[str, Any]]) -> Any:
        import pyarrow as pa

        inferred = pa.Table.from_pylist(records).schema if records else pa.schema([])
        fields = [field for field in inferred if field.name not in self.types]
        return pa.schema(fields + [pa.field(name, kind) for name, kind in self.types.items()])

    def write(self, records: List[Dict[str, Any]]) -> List[Tuple[Dict[str, Any], str]]:
        """Write records as one part; RETURNS those that do not fit the schema, with the reason."""
        import pyarrow as pa

        if not records:
            return []
        if self.schema is None:
            self.schema = self._schema(records)
        try:
            table, rejected = pa.Table.from_pylist(records, schema=self.schema), []
        except (pa.ArrowException, TypeError, ValueError):
            table, rejected = self._one_by_one(records)
        if table is not None:
            self._write_part(table)
        return rejected

    def _one_by_one(self, records: List[Dict[str, Any]]) -> Tuple[Any, List[Tuple[Dict[str, Any], str]]]:
        import pyarrow as pa

        rejected, good = [], []
        for record in records:
            try:
                good.append(pa.Table.from_pylist([record], schema=self.schema))
            except (pa.ArrowException, TypeError, ValueError) as err:
                rejected.append((record, f"its fields do not fit the Parquet schema of the first records ({err})"))
        return (pa.concat_tables(good) if good else None), rejected

    def _write_part(self, table: Any) -> None:
        import pyarrow.parquet as pq

        part = self.folder / f"part-{len(self.parts):06d}.parquet"
        temporary = part.with_name(part.name + ".tmp")
        pq.write_table(table, temporary)
        os.replace(temporary, part)
        self.parts.append(part)

    def finish(self, final: Path) -> None:
        """Merge the parts (row group by row group, not into memory) into `final`, then remove the folder."""
        import pyarrow.parquet as pq

        merged = self.folder / "merged.tmp"
        with pq.ParquetWriter(merged, self.schema or self._schema([])) as writer:
            for part in self.parts:
                source = pq.ParquetFile(part)
                for group in range(source.num_row_groups):
                    writer.write_table(source.read_row_group(group))
        os.replace(merged, final)
        shutil.rmtree(self.folder)


def parquet_parts(folder: Path) -> List[Path]:
    """The complete parts of a Parquet OUTPUT.partial folder, in order (temporary files are not parts)."""
    return sorted(folder.glob("part-*.parquet"))


@dataclass
class Summary:
    records: int = 0  # written by this run
    errors: int = 0  # written by this run
    words: int = 0
    seconds: float = 0.0
    resumed: int = 0  # records and errors already written by the interrupted run, skipped
    torn_lines: int = 0  # incomplete last lines of the interrupted run's files, cut off and redone
    workers_lost: int = 0  # local worker processes that died and were replaced
    finished_before: bool = False  # --resume found the job finished: nothing done

    @property
    def docs_per_second(self) -> float:
        return self.records / self.seconds if self.seconds else 0.0


@dataclass
class Resume:
    """What an interrupted run already wrote: the ids in OUTPUT.partial, the input positions in the errors."""

    ids: Set[Any] = field(default_factory=set)
    positions: Set[int] = field(default_factory=set)
    torn_lines: int = 0

    def mark(self, row: Row, settings: Settings) -> Row:
        """Mark `row` done when an earlier run wrote it (its id in OUTPUT, or its position in the errors)."""
        if row.position in self.positions or (row.error is None and row.record[settings.id_field] in self.ids):
            row.done = True
        return row

    def __len__(self) -> int:
        return len(self.ids) + len(self.positions)


def read_resume(output_partial: Path, errors_partial: Path, settings: Settings, position_name: str) -> Resume:
    """Repair the interrupted run's files (torn last lines cut off) and collect what they hold."""
    resume = Resume()
    if output_partial.is_dir():  # Parquet parts
        import pyarrow.parquet as pq

        for temporary in output_partial.glob("*.tmp"):
            temporary.unlink()  # a part or a merge the run did not finish
        for part in parquet_parts(output_partial):
            resume.ids.update(pq.read_table(part, columns=[settings.id_field]).column(0).to_pylist())
    elif output_partial.exists():
        lines, resume.torn_lines = _complete_lines(output_partial)
        for number, line in lines:
            record, error = parse_line(line)
            if error is not None or settings.id_field not in record:
                raise AnnotateError(f"{output_partial}, line {number}: {error or 'no id field'}; it is not the "
                                    "work file of an annotate run with these options: pass --overwrite to start again.")
            resume.ids.add(record[settings.id_field])
    if errors_partial.exists():
        lines, torn = _complete_lines(errors_partial)
        resume.torn_lines += torn
        for number, line in lines:
            entry, error = parse_line(line)
            if error is not None or position_name not in entry:
                raise AnnotateError(f"{errors_partial}, line {number}: {error or f'no {position_name}'}; pass "
                                    "--overwrite to start again.")
            resume.positions.add(entry[position_name])
    return resume


def _complete_lines(path: Path) -> Tuple[Iterator[Tuple[int, bytes]], int]:
    """The complete non-blank lines of a JSONL work file, after cutting off a torn last line.

    RETURNS (lines, 1 if a torn line was cut off else 0).
    """
    torn = _cut_torn_line(path)

    def lines() -> Iterator[Tuple[int, bytes]]:
        with path.open("rb") as stream:
            yield from ((number, line) for number, line in iter_lines(stream) if line.strip())

    return lines(), torn


def _cut_torn_line(path: Path) -> int:
    """Cut off the last line of `path` if it lacks its newline; RETURNS 1 if it did, else 0.

    Every line is written with its newline, so a line without one is what a
    killed run left half written: its record is annotated and written again.
    """
    with path.open("rb+") as stream:
        end = stream.seek(0, os.SEEK_END)
        if end == 0:
            return 0
        stream.seek(end - 1)
        if stream.read(1) == b"\n":
            return 0
        position = end
        while position > 0:  # back to the last newline, a chunk at a time (the file may be large)
            start = max(0, position - READ_CHUNK_BYTES)
            stream.seek(start)
            newline = stream.read(position - start).rfind(b"\n")
            if newline >= 0:
                stream.truncate(start + newline + 1)
                return 1
            position = start
        stream.truncate(0)
        return 1


class Output:
    """OUTPUT and its errors file: first id wins, progress on stderr, renamed into place when complete.

    Both are written under a ".partial" name (a Parquet OUTPUT as a folder of
    parts): OUTPUT appears only when the run is complete, so a reader never
    sees a half file; a killed run's work files are what --resume continues.
    """

    def __init__(self, path: Path, errors: Path, settings: Settings, types: Dict[str, Any],
                 total: Optional[int], progress: bool, position_name: str, resume: Optional[Resume] = None) -> None:
        from tqdm import tqdm

        self.paths = [(partial_path(path), path), (partial_path(errors), errors)]
        self.settings, self.position_name, self.resume = settings, position_name, resume
        if file_format(path, "OUTPUT") == "jsonl":
            self.writer: Any = JsonlWriter(self.paths[0][0], append=resume is not None)
            self.group_size = settings.batch_size  # whole lines, often: a kill loses little
        else:
            self.writer = ParquetWriter(self.paths[0][0], types)
            self.group_size = PARQUET_ROWS_PER_GROUP  # one part a group: fewer, larger parts
        self.errors = self.paths[1][0].open("a" if resume is not None else "w", encoding="utf-8")
        self.seen: Dict[Any, int] = {}
        self.pending: List[Tuple[Dict[str, Any], int]] = []
        self.summary = Summary(torn_lines=resume.torn_lines if resume else 0)
        self.start = time.perf_counter()
        self.bar = tqdm(total=total, unit="doc", file=sys.stderr, disable=not progress, smoothing=0.1)

    def add(self, row: Row) -> None:
        self.bar.update(1)
        error = row.error
        record_id = None if row.record is None else row.record.get(self.settings.id_field)
        if row.done and self._written_before(row, record_id):
            self.summary.resumed += 1
            return
        if error is None and record_id in self.seen:
            error = f"duplicate id: already written from {self.position_name} {self.seen[record_id]}"
        if error is not None:
            return self.error(record_id, row.position, error)
        assert row.annotations is not None, "rows without an error are annotated"
        self.seen[record_id] = row.position
        self.summary.words += row.words
        self.pending.append(({**row.record, **row.annotations}, row.position))
        if len(self.pending) >= self.group_size:
            self.flush()

    def _written_before(self, row: Row, record_id: Any) -> bool:
        """Whether the interrupted run wrote this done row (else it is a later record with a written id)."""
        assert self.resume is not None
        if row.position in self.resume.positions:
            return True
        if record_id in self.seen:
            return False  # the first record with this id was the one written: this one is a duplicate
        self.seen[record_id] = row.position
        return True

    def error(self, record_id: Any, position: int, reason: str) -> None:
        self.summary.errors += 1
        entry = {"id": record_id, self.position_name: position, "reason": reason}
        self.errors.write(json.dumps(entry, ensure_ascii=False, default=str) + "\n")

    def flush(self) -> None:
        positions = {id(record): position for record, position in self.pending}
        rejected = self.writer.write([record for record, _ in self.pending])
        for record, reason in rejected:
            self.error(record.get(self.settings.id_field), positions[id(record)], reason)
        self.errors.flush()
        self.summary.records += len(self.pending) - len(rejected)
        self.pending = []

    def close(self) -> Summary:
        """Write what is pending and put both files in place: the errors first, OUTPUT (the sign of a finished
        run) last."""
        self.flush()
        self.bar.close()
        self.errors.close()
        (errors_partial, errors), (_, output) = self.paths[1], self.paths[0]
        os.replace(errors_partial, errors)
        self.writer.finish(output)
        self.summary.seconds = time.perf_counter() - self.start
        return self.summary


def partial_path(path: Path) -> Path:
    """The work file (or, for Parquet OUTPUT, folder) of `path` while the run is not finished."""
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
    (JSON) and _egp_words; the driver rebuilds the rows from them. Records
    whose id is in `done_ids` (written by an interrupted run, --resume) are
    not annotated.
    """

    def __init__(self, model: str, settings: Settings, source: str, done_ids: Optional[Set[Any]] = None) -> None:
        self.annotator = Annotator(model, settings)
        self.settings, self.source = settings, source
        self.resume = Resume(ids=done_ids) if done_ids else None

    def __call__(self, batch: Any) -> Any:
        import pyarrow as pa

        if self.source == "jsonl":
            pairs = zip(batch.column(f"{META}line").to_pylist(), batch.column(f"{META}raw").to_pylist())
            rows = list(jsonl_rows(pairs, self.settings))  # one a line: the datasource left out blank ones
        else:
            rows = list(record_rows(batch.to_pylist(), self.settings))
        if self.resume is not None:
            rows = [self.resume.mark(row, self.settings) for row in rows]
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


def ray_rows(model: str, path: Path, settings: Settings, n_actors: int, address: Optional[str],
             resume: Optional[Resume] = None) -> Iterator[Row]:
    """The rows of INPUT annotated by Ray Data actors, in input order (those done by `resume` marked, not
    annotated).

    A killed actor is Ray Data's to handle: it restarts the actor and runs the
    lost batch again (the driver still gets each row once, in order).
    """
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
        done_ids = ray.put(resume.ids) if resume and resume.ids else None  # once to the object store, not per actor
        data = data.map_batches(RayAnnotator, fn_constructor_args=(model, settings, source, done_ids),
                                batch_size=settings.batch_size, batch_format="pyarrow",
                                compute=ray.data.ActorPoolStrategy(size=n_actors), num_cpus=1,
                                # a killed actor is restarted and its batch retried, once: a batch that
                                # kills its actor twice is taken to be the cause, as in WorkerPool
                                max_restarts=-1, max_task_retries=MAX_BATCH_ATTEMPTS - 1)
        position, last = 0, None
        try:
            for batch in data.iter_batches(batch_format="pyarrow", batch_size=None):
                for values in batch.to_pylist():
                    row = _driver_row(values, source, position)
                    yield row if resume is None else resume.mark(row, settings)
                    last, position = row.position, position + 1
        except ray.exceptions.RayError as err:
            where = "the first batch" if last is None else f"a batch after {_position_name(source)} {last}"
            raise AnnotateError(
                f"A Ray actor annotating {where} (the last one received, in input order) died "
                f"{MAX_BATCH_ATTEMPTS} times: the run stops rather than kill actors forever. Lower --max-chars "
                f"or --batch-size, or leave the records out, and continue with --resume. Ray said: "
                f"{type(err).__name__}: {str(err)[:500]}"
            ) from None
    finally:
        if started:
            ray.shutdown()


def _position_name(source: str) -> str:
    return "line" if source == "jsonl" else "row"


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
             overwrite: bool = False, resume: bool = False, progress: bool = True,
             start_method: str = DEFAULT_START_METHOD) -> Summary:
    """Annotate INPUT into OUTPUT (see the module's docstring).

    overwrite (bool): replace an existing OUTPUT and errors file (and an interrupted run's work files).
    resume (bool): continue an interrupted run with the same INPUT and options: what it wrote is kept and
        not annotated again; a finished run (OUTPUT in place) is left as it is.
    start_method (str): how local worker processes start: "forkserver" (default where there is one) or
        "spawn". "fork" starts faster but hangs in a process where torch has already run a layer (issue 25).
    RETURNS (Summary): records written, errors, words of the written records, seconds, records skipped.
    """
    if engine not in ("local", "ray"):
        raise AnnotateError(f"Unknown engine {engine!r}: use 'local' or 'ray'.")
    if overwrite and resume:
        raise AnnotateError("--overwrite starts again and --resume continues: pass one of them.")
    input_path, output = Path(input_path), Path(output)
    errors = Path(errors) if errors else output.with_name(output.name + ".errors.jsonl")
    source = _check_paths(input_path, output, errors, overwrite, resume)
    if resume and output.exists() and not partial_path(output).exists():
        return Summary(finished_before=True)  # the interrupted run finished after all: nothing to do
    position_name = _position_name(source)
    done = _start_resume(output, errors, settings, position_name) if resume else None
    annotator = Annotator(model, settings)  # also checks the model before Ray starts
    types = annotation_types(annotator.fields.values(), settings.relations_field if annotator.relations else None)
    total = _parquet_rows(input_path) if source == "parquet" else None
    sink = Output(output, errors, settings, types, total, progress, position_name, done)
    if engine == "ray":
        for row in ray_rows(model, input_path, settings, n_process, address, done):
            sink.add(row)
        return sink.close()
    rows = read_rows(input_path, settings)
    if done is not None:
        rows = (done.mark(row, settings) for row in rows)
    if n_process == 1:
        for row in annotator.annotate(rows):
            sink.add(row)
    else:
        with WorkerPool(model, settings, n_process, start_method, position_name) as pool:
            for batch in pool.annotate(spacy.util.minibatch(rows, settings.batch_size)):
                for row in batch:
                    sink.add(row)
        sink.summary.workers_lost = pool.workers_lost
    return sink.close()


def _start_resume(output: Path, errors: Path, settings: Settings, position_name: str) -> Optional[Resume]:
    """The interrupted run's work, or None when there is none (then the run starts from the beginning)."""
    output_partial, errors_partial = partial_path(output), partial_path(errors)
    if not output_partial.exists():
        for path in (errors_partial, errors):
            if path.exists():
                path.unlink()  # errors without their OUTPUT: the run that wrote them did not get far
        return None
    if errors.exists() and not errors_partial.exists():
        os.replace(errors, errors_partial)  # killed between putting the errors and OUTPUT in place
    if not errors_partial.exists():
        errors_partial.touch()
    return read_resume(output_partial, errors_partial, settings, position_name)


def _check_paths(input_path: Path, output: Path, errors: Path, overwrite: bool, resume: bool = False) -> str:
    """The input's format, after checking that INPUT is readable and OUTPUT may be written."""
    source = file_format(input_path, "INPUT")
    file_format(output, "OUTPUT")
    if not input_path.is_file():
        raise AnnotateError(f"INPUT {input_path}: no such file.")
    if not os.access(input_path, os.R_OK):
        raise AnnotateError(f"INPUT {input_path}: not readable (check its permissions).")
    work = [partial_path(output), partial_path(errors)]
    if overwrite:
        for path in work:
            _remove(path)
    elif not resume:
        existing = [str(path) for path in (output, errors) if path.exists()]
        if existing:
            raise AnnotateError(
                f"{' and '.join(existing)} already exist(s): pass --overwrite to replace, --resume to continue "
                "an interrupted run, or choose another OUTPUT. Runs never append, so no record is doubled."
            )
        interrupted = [str(path) for path in work if path.exists()]
        if interrupted:
            raise AnnotateError(
                f"{' and '.join(interrupted)}: the work of an interrupted run. Pass --resume to continue it (same "
                "INPUT and options), or --overwrite to start again."
            )
    if source == "parquet":
        _parquet_rows(input_path)  # fails here, before any work, on a file that is not Parquet
    return source


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def _parquet_rows(path: Path) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path).metadata.num_rows
    except (pa.ArrowException, OSError) as err:
        raise AnnotateError(f"INPUT {path}: not a readable Parquet file ({err}).") from None

"""Throughput and faults of `python -m spacy_egp.annotate`: local and Ray engines, 1 and 2 workers.

    python -m spacy_egp.benchmark.annotation [--model PATH] [--repeat 20] [--output results/annotate.json]

The input is "CLUENER dev x REPEAT": the 1,343 texts of CLUENER's dev.json,
repeated with unique ids. Each run annotates it into a fresh file and is timed
from the first record read to OUTPUT in place (the driver's own model load
left out; Ray's start-up and the workers' model loads left in). Ray's fixed
start-up cost is the time of the same command on a tiny input (ray.init,
actors started and their pipelines loaded, one batch); "docs/s without
start-up" subtracts it. Scaling efficiency is the throughput with 2 workers
over twice the throughput with 1 (1.0: linear).

The model is the one users run: by default training/cluener/model-best, the
pipeline `spacy project run all` trains from configs/cluener_cnn.cfg; the
table names the model and what its config holds (tok2vec, context layer,
training steps). --untrained times an untrained default efficient_globalpointer
instead (its speed is not the trained pipeline's: it has no context layer and
predicts almost no spans).

Beside throughput: the start-up of the local engine's 2 worker processes with
the start method it uses (forkserver) against spawn and fork (each in a fresh
process, where fork is still safe); the cost of a worker killed with SIGKILL halfway through
a 2-worker run, on each engine (extra seconds, and whether every record is in
OUTPUT exactly once); and the cost of --resume: a run whose OUTPUT.partial
already holds half, or all, of the records.
The figures go to results/annotate.json and a table to results/annotate.md.
"""


import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import spacy
from spacy.training import Example

from ..data.annotate import Settings, annotate, partial_path
from .compare import machine_description

DEFAULT_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "cluener" / "dev.json"
RUNS: List[Tuple[str, int]] = [("local", 1), ("local", 2), ("ray", 1), ("ray", 2)]
TINY_RECORDS = 8
DEFAULT_MODEL = Path("training") / "cluener" / "model-best"  # what `spacy project run all` trains
WORKER_NAME = "spacy_egp.annotate worker"  # the local engine's worker processes (WorkerPool)
RAY_WORKER_TITLE = b"ray::MapWorker"  # the process title of a Ray Data actor


def read_texts(data: Path) -> List[Dict[str, Any]]:
    """The records of CLUENER's dev.json (JSON Lines of {text, label})."""
    if not data.is_file():
        raise SystemExit(f"error: {data}: no such file; pass --data with CLUENER's dev.json (see README.md).")
    return [json.loads(line) for line in data.read_text(encoding="utf-8").splitlines() if line.strip()]


def build_corpus(records: List[Dict[str, Any]], repeat: int, path: Path) -> int:
    """Write the texts `repeat` times as JSONL {id, text}; RETURNS the number of records."""
    with path.open("w", encoding="utf-8") as out:
        for copy in range(repeat):
            for i, record in enumerate(records):
                out.write(json.dumps({"id": f"{copy}-{i}", "text": record["text"]}, ensure_ascii=False) + "\n")
    return repeat * len(records)


def untrained_pipeline(records: List[Dict[str, Any]], path: Path) -> str:
    """Save spacy.blank("zh") + an untrained efficient_globalpointer initialized on 20 CLUENER docs."""
    nlp = spacy.blank("zh")
    nlp.add_pipe("efficient_globalpointer")
    examples = []
    for record in records[:20]:
        reference = nlp.make_doc(record["text"])
        spans = [reference.char_span(start, end + 1, label=label)  # CLUENER's ends are inclusive
                 for label, surfaces in record.get("label", {}).items()
                 for offsets in surfaces.values() for start, end in offsets]
        reference.spans["sc"] = [span for span in spans if span is not None]
        examples.append(Example(nlp.make_doc(record["text"]), reference))
    nlp.initialize(lambda: examples)
    nlp.to_disk(path)
    return str(path)


def timed_run(model: str, corpus: Path, output: Path, engine: str, workers: int, batch_size: int) -> Dict[str, Any]:
    """Annotate `corpus` once; RETURNS the run's figures."""
    summary = annotate(model, corpus, output, engine=engine, n_process=workers, overwrite=True, progress=False,
                       settings=Settings(batch_size=batch_size))
    return {"engine": engine, "workers": workers, "records": summary.records, "errors": summary.errors,
            "words": summary.words, "seconds": round(summary.seconds, 3),
            "docs_per_s": round(summary.records / summary.seconds, 1),
            "words_per_s": round(summary.words / summary.seconds, 1)}


def span_keys(path: Path) -> List[List[Tuple[int, int, str]]]:
    """The spans of each output record, without scores (they may differ in float32's last bit)."""
    with path.open(encoding="utf-8") as lines:
        return [[(s["start"], s["end"], s["label"]) for s in json.loads(line)["spans"]] for line in lines]


def scaling(runs: List[Dict[str, Any]], engine: str, key: str) -> Optional[float]:
    """Throughput with 2 workers / (2 x throughput with 1) of one engine."""
    by_workers = {run["workers"]: run.get(key) for run in runs if run["engine"] == engine}
    if not by_workers.get(1) or not by_workers.get(2):
        return None
    return round(by_workers[2] / (2 * by_workers[1]), 3)


def describe_model(path: str) -> str:
    """What the timed pipeline is, from its own config: its folder, tok2vec, context layer and training steps."""
    config = spacy.util.load_config(Path(path) / "config.cfg", interpolate=False)
    parts = []
    for name, component in config["components"].items():
        model = component.get("model", {})
        if component.get("factory") not in ("efficient_globalpointer", "gplinker"):
            continue
        tok2vec = model.get("tok2vec", {})
        encode = tok2vec.get("encode", {}).get("@architectures") or tok2vec.get("@architectures", "?")
        context = (model.get("context") or {}).get("@architectures", "none")
        parts.append(f"{name}: {model.get('@architectures')}, tok2vec encoder {encode}, context layer {context}")
    steps = config.get("training", {}).get("max_steps")
    train = config.get("paths", {}).get("train")
    return f"{path} ({'; '.join(parts)}; trained {steps} steps on {train})"


def worker_startup(model: str, tiny: Path, output: Path, method: str) -> float:
    """Seconds of a 2-worker local run on the tiny input, in a fresh Python (where fork is still safe):
    the workers' start and their pipeline loads, and one small batch."""
    code = ("import sys; from pathlib import Path; from spacy_egp.data.annotate import annotate\n"
            "summary = annotate(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), n_process=2, overwrite=True, "
            "progress=False, start_method=sys.argv[4]); print(summary.seconds)")
    done = subprocess.run([sys.executable, "-c", code, model, str(tiny), str(output), method], check=True,
                          capture_output=True, text=True)
    return round(float(done.stdout.split()[-1]), 2)


def _count_lines(path: Path) -> int:
    try:
        with path.open("rb") as stream:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: stream.read(1 << 20), b""))
    except FileNotFoundError:
        return 0


def _worker_pid(engine: str) -> Optional[int]:
    """A worker process of the running annotate: a local WorkerPool process, or a Ray Data actor."""
    if engine == "local":
        import multiprocessing

        pids = [process.pid for process in multiprocessing.active_children() if process.name == WORKER_NAME]
        return pids[0] if pids else None
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "cmdline").read_bytes().startswith(RAY_WORKER_TITLE):
                return int(entry.name)
        except OSError:
            continue
    return None


def killed_run(run: Callable[[], Dict[str, Any]], output: Path, engine: str, after: int) -> Dict[str, Any]:
    """`run()`, with one of its workers killed (SIGKILL) once OUTPUT.partial holds `after` records."""
    stop, killed = threading.Event(), {}

    def watch() -> None:
        while not stop.is_set():
            written = _count_lines(partial_path(output))
            pid = _worker_pid(engine) if written >= after else None
            if pid:
                os.kill(pid, signal.SIGKILL)
                killed.update(pid=pid, after_records=written)
                return
            time.sleep(0.1)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        figures = run()
    finally:
        stop.set()
        watcher.join()
    return {**figures, "killed_after_records": killed.get("after_records")}


def record_ids(path: Path) -> List[Any]:
    with path.open(encoding="utf-8") as lines:
        return [json.loads(line)["id"] for line in lines if line.strip()]


def resume_run(model: str, corpus: Path, complete: Path, output: Path, done: int, batch_size: int) -> Dict[str, Any]:
    """--resume on a run whose OUTPUT.partial holds the first `done` records of `complete`."""
    with complete.open(encoding="utf-8") as lines, partial_path(output).open("w", encoding="utf-8") as partial:
        for _, line in zip(range(done), lines):
            partial.write(line)
    partial_path(output.with_name(output.name + ".errors.jsonl")).write_text("")
    summary = annotate(model, corpus, output, resume=True, progress=False, settings=Settings(batch_size=batch_size))
    return {"done_before": done, "resumed": summary.resumed, "records": summary.records,
            "seconds": round(summary.seconds, 2),
            "exactly_once": record_ids(output) == record_ids(complete)}


def run_benchmark(model: Optional[str], data: Path, repeat: int, batch_size: int, workdir: Path) -> Dict[str, Any]:
    """Every run of RUNS, Ray's start-up, the workers' start-up, a killed worker, --resume; RETURNS the figures."""
    workdir.mkdir(parents=True, exist_ok=True)
    records = read_texts(data)
    load = os.getloadavg()[0]
    model_path = model or untrained_pipeline(records, workdir / "untrained-egp")
    corpus, tiny = workdir / "corpus.jsonl", workdir / "tiny.jsonl"
    n_records = build_corpus(records, repeat, corpus)
    build_corpus(records[:TINY_RECORDS], 1, tiny)
    # Fresh processes first: fork is safe only where nothing has run torch yet.
    local_startup = {method: worker_startup(model_path, tiny, workdir / f"tiny-{method}.jsonl", method)
                     for method in ("forkserver", "spawn", "fork")}
    startup = {workers: timed_run(model_path, tiny, workdir / f"tiny-ray{workers}.jsonl", "ray", workers,
                                  batch_size)["seconds"]
               for workers in sorted({workers for engine, workers in RUNS if engine == "ray"})}
    runs = []
    for engine, workers in RUNS:
        output = workdir / f"out-{engine}{workers}.jsonl"
        run = timed_run(model_path, corpus, output, engine, workers, batch_size)
        if engine == "ray":
            steady = run["seconds"] - startup[workers]
            run["startup_seconds"] = startup[workers]
            run["docs_per_s_without_startup"] = round(run["records"] / steady, 1) if steady > 0 else None
        run["same_spans_as_local_1"] = span_keys(output) == span_keys(workdir / "out-local1.jsonl")
        runs.append(run)
        print(json.dumps(run), file=sys.stderr)
    reference = record_ids(workdir / "out-local1.jsonl")
    killed = []
    for engine in ("local", "ray"):
        output = workdir / f"killed-{engine}2.jsonl"
        run = killed_run(lambda: timed_run(model_path, corpus, output, engine, 2, batch_size), output, engine,
                         n_records // 2)
        unkilled = next(other for other in runs if (other["engine"], other["workers"]) == (engine, 2))
        run["extra_seconds"] = round(run["seconds"] - unkilled["seconds"], 1)
        run["exactly_once"] = record_ids(output) == reference
        killed.append(run)
        print(json.dumps(run), file=sys.stderr)
    resumes = [resume_run(model_path, corpus, workdir / "out-local1.jsonl", workdir / f"resume-{done}.jsonl", done,
                          batch_size) for done in (n_records // 2, n_records)]
    for run in resumes:
        print(json.dumps(run), file=sys.stderr)
    return {
        "input": f"CLUENER dev x {repeat} ({data.name}, {n_records:,} records, unique ids)",
        "model": describe_model(model_path) if model else
                 "untrained default efficient_globalpointer (CNN tok2vec, no context layer), spacy.blank('zh')",
        "batch_size": batch_size,
        "machine": {**machine_description(), "load_average_before": round(load, 2),
                    "load_average_after": round(os.getloadavg()[0], 2)},
        "runs": runs,
        "ray_startup_seconds": startup,
        "local_worker_startup_seconds": local_startup,
        "scaling_efficiency": {
            "local": scaling(runs, "local", "docs_per_s"),
            "ray": scaling(runs, "ray", "docs_per_s"),
            "ray_without_startup": scaling(runs, "ray", "docs_per_s_without_startup"),
        },
        "killed_worker": killed,
        "resume": resumes,
        "command": "python -m spacy_egp.benchmark annotate" + (f" --model {model}" if model else " --untrained")
                   + (f" --repeat {repeat}" if repeat != 20 else ""),
    }


def format_markdown(results: Dict[str, Any]) -> str:
    """The table of results/annotate.md."""
    lines = [
        "# Annotation throughput", "",
        f"Generated by `{results['command']}` (spacy_egp/benchmark/annotation.py); do not edit by hand.", "",
        f"Input: {results['input']}. Model: {results['model']}. Batch size {results['batch_size']}. "
        f"Machine: {results['machine']['cpu_cores']} CPU cores (load average {results['machine']['load_average_before']}"
        " before the runs).", "",
        "| engine | workers | docs | seconds | docs/s | words/s | docs/s without start-up | same spans as local x1 |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for run in results["runs"]:
        steady = run.get("docs_per_s_without_startup")
        lines.append(f"| {run['engine']} | {run['workers']} | {run['records']:,} | {run['seconds']:.1f} | "
                     f"{run['docs_per_s']:,.0f} | {run['words_per_s']:,.0f} | "
                     f"{'' if steady is None else f'{steady:,.0f}'} | {'yes' if run['same_spans_as_local_1'] else 'NO'} |")
    efficiency = results["scaling_efficiency"]
    startup = ", ".join(f"{seconds:.1f} s with {workers} actor(s)"
                        for workers, seconds in results["ray_startup_seconds"].items())
    lines += ["", f"Scaling efficiency (docs/s with 2 / (2 x docs/s with 1)): local {efficiency['local']}, "
              f"Ray {efficiency['ray']} ({efficiency['ray_without_startup']} without start-up).", "",
              f"Ray's fixed start-up cost (ray.init, actors started with their pipeline loaded, "
              f"{TINY_RECORDS} records): {startup}.", ""]
    local_startup = results.get("local_worker_startup_seconds")
    if local_startup:
        lines += [f"The local engine's 2 worker processes, started, their pipeline loaded, {TINY_RECORDS} records "
                  f"(a fresh process each): {local_startup['forkserver']:.1f} s with forkserver (what it uses), "
                  f"{local_startup['spawn']:.1f} s with spawn, {local_startup['fork']:.1f} s with fork (which hangs "
                  "once torch has run in the calling process).", ""]
    return "\n".join(lines + format_faults(results))


def format_faults(results: Dict[str, Any]) -> List[str]:
    """The tables of a killed worker and of --resume (absent from results of older versions)."""
    lines: List[str] = []
    if results.get("killed_worker"):
        lines += ["A worker killed with SIGKILL halfway (2 workers; the same run without the kill above):", "",
                  "| engine | killed after | docs | seconds | extra seconds | every record exactly once |",
                  "| --- | ---: | ---: | ---: | ---: | --- |"]
        for run in results["killed_worker"]:
            after = run["killed_after_records"]
            lines.append(f"| {run['engine']} | {'not killed' if after is None else f'{after:,} records'} | "
                         f"{run['records']:,} | {run['seconds']:.1f} | {run['extra_seconds']:+.1f} | "
                         f"{'yes' if run['exactly_once'] else 'NO'} |")
        lines.append("")
    if results.get("resume"):
        lines += ["`--resume` (local engine, 1 process) of a run whose OUTPUT.partial already holds some records:", "",
                  "| records done before | skipped | annotated | seconds | every record exactly once |",
                  "| ---: | ---: | ---: | ---: | --- |"]
        for run in results["resume"]:
            lines.append(f"| {run['done_before']:,} | {run['resumed']:,} | {run['records']:,} | {run['seconds']:.1f} | "
                         f"{'yes' if run['exactly_once'] else 'NO'} |")
        lines.append("")
    return lines


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m spacy_egp.benchmark.annotation", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(DEFAULT_MODEL),
                        help="the trained pipeline to time (default: the one `spacy project run all` trains)")
    parser.add_argument("--untrained", action="store_true",
                        help="time an untrained default efficient_globalpointer instead (no context layer)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="CLUENER's dev.json")
    parser.add_argument("--repeat", type=int, default=20, help="copies of the dev texts in the input")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/spacy_egp_annotate_benchmark"),
                        help="where the input, the pipeline and the outputs go")
    parser.add_argument("--output", type=Path, default=Path("results") / "annotate.json")
    parser.add_argument("--markdown", type=Path, default=Path("results") / "annotate.md")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """`python -m spacy_egp.benchmark annotate`: run the benchmark, write the JSON and the table."""
    args = _parser().parse_args(argv)
    model = None if args.untrained else args.model
    if model and not (Path(model) / "config.cfg").is_file():
        raise SystemExit(f"error: {model}: no trained pipeline there. Train it (`spacy project run all`), pass "
                         "--model with a trained pipeline's folder, or --untrained to time an untrained one.")
    results = run_benchmark(model, args.data, args.repeat, args.batch_size, args.workdir)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    args.markdown.parent.mkdir(parents=True, exist_ok=True)
    args.markdown.write_text(format_markdown(results))
    print(format_markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())

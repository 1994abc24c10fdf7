"""Throughput of `python -m spacy_egp.annotate`: the local and the Ray engine, 1 and 2 workers.

    python -m spacy_egp.benchmark.annotation [--model PATH] [--repeat 20] [--output results/annotate.json]

The input is "CLUENER dev x REPEAT": the 1,343 texts of CLUENER's dev.json,
repeated with unique ids. Each run annotates it into a fresh file and is timed
from the first record read to OUTPUT in place (the driver's own model load
left out; Ray's start-up and the actors' model loads left in). Ray's fixed
start-up cost is the time of the same command on a tiny input (ray.init,
actors started and their pipelines loaded, one batch); "docs/s without
start-up" subtracts it. Scaling efficiency is the throughput with 2 workers
over twice the throughput with 1 (1.0: linear).

Without --model the pipeline is the default efficient_globalpointer (CNN
tok2vec) untrained, initialized on a few CLUENER docs: its speed is the
trained pipeline's (the weights do not change the cost), but it predicts
almost no spans, so writing spans costs less than with a trained model.
The figures go to results/annotate.json and a table to results/annotate.md.
"""

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import spacy
from spacy.training import Example

from ..annotate import Settings, annotate
from .compare import machine_description

DEFAULT_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "cluener" / "dev.json"
RUNS: List[Tuple[str, int]] = [("local", 1), ("local", 2), ("ray", 1), ("ray", 2)]
TINY_RECORDS = 8


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


def run_benchmark(model: Optional[str], data: Path, repeat: int, batch_size: int, workdir: Path) -> Dict[str, Any]:
    """Every run of RUNS plus Ray's start-up cost; RETURNS the figures for results/annotate.json."""
    workdir.mkdir(parents=True, exist_ok=True)
    records = read_texts(data)
    load = os.getloadavg()[0]
    model_path = model or untrained_pipeline(records, workdir / "untrained-egp")
    corpus, tiny = workdir / "corpus.jsonl", workdir / "tiny.jsonl"
    n_records = build_corpus(records, repeat, corpus)
    build_corpus(records[:TINY_RECORDS], 1, tiny)
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
    return {
        "input": f"CLUENER dev x {repeat} ({data.name}, {n_records:,} records, unique ids)",
        "model": model or "untrained default efficient_globalpointer (CNN tok2vec), spacy.blank('zh')",
        "batch_size": batch_size,
        "machine": {**machine_description(), "load_average_before": round(load, 2)},
        "runs": runs,
        "ray_startup_seconds": startup,
        "scaling_efficiency": {
            "local": scaling(runs, "local", "docs_per_s"),
            "ray": scaling(runs, "ray", "docs_per_s"),
            "ray_without_startup": scaling(runs, "ray", "docs_per_s_without_startup"),
        },
        "command": "python -m spacy_egp.benchmark.annotation" + (f" --model {model}" if model else "")
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
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m spacy_egp.benchmark.annotation", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="a trained pipeline (default: an untrained default EGP)")
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
    results = run_benchmark(args.model, args.data, args.repeat, args.batch_size, args.workdir)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    args.markdown.parent.mkdir(parents=True, exist_ok=True)
    args.markdown.write_text(format_markdown(results))
    print(format_markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Distillation, measured: a teacher, the CNN student it teaches, and the CNN trained on gold alone.

    python -m spacy_egp.benchmark distill DATASET --teacher T --gold-only G --student-config C --corpus DIR
        [--unlabelled FILE] [--floor 0.05] [--weight 0.5] [--output results/DATASET-distill]

Rows, each scored on DIR/test.spacy by the comparison's own evaluation (exact
labelled span F1 over all gold spans; inference words/s on one CPU thread,
the best of three passes, in a process of its own):

- teacher: the pipeline T (e.g. CLUENER EGP on me5s-zh-char);
- gold only: the pipeline G, trained from C on gold alone (the project's `all`
  trains it: training/DATASET/model-best), so the student's budget is its budget;
- student: C trained on the teacher's targets for DIR/train.spacy mixed with
  gold (distill_weight), as `spacy egp distill T C ...` does: `spacy egp teach`,
  then `spacy train` with distill_key (a finished teaching is kept on a re-run);
- student + unlabelled: the same with FILE's texts taught as unlabelled docs too.

A row is written to OUTPUT/parts/NAME.json as soon as it is measured, with
the sha256 of what determines it (models' meta, config, corpus files,
settings); a re-run with the same inputs skips it. OUTPUT/distillation.json
merges the parts, and `benchmark report` renders it.
"""

import argparse
import hashlib
import json
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Dict, List, Optional

from ..cli.distill import student_component
from ..data.datasets import file_sha256
from ..data.teach import DEFAULT_TEACHER_KEY, teach
from ..training.resumable import total_wall_seconds
from .compare import _evaluate_in_subprocess, machine_description

STUDENT_FOLDERS = {"student": "student", "student-unlabelled": "student-unlabelled"}


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m spacy_egp.benchmark distill",
                                     description=__doc__.split("\n\n", 2)[2].split("\n\nA row")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", help="a name for the results, e.g. cluener")
    parser.add_argument("--teacher", type=Path, required=True, help="the teacher pipeline's folder")
    parser.add_argument("--teacher-row", type=Path, default=None,
                        help="take the teacher's row from this `benchmark compare` part (OUTPUT/parts/NAME.json, "
                             "whose training/NAME/model-best is the teacher) instead of measuring it again")
    parser.add_argument("--gold-only", type=Path, required=True,
                        help="the student config trained on gold alone (e.g. training/cluener/model-best)")
    parser.add_argument("--student-config", type=Path, required=True, help="e.g. configs/cluener_cnn.cfg")
    parser.add_argument("--corpus", type=Path, required=True, help="folder with train.spacy, dev.spacy, test.spacy")
    parser.add_argument("--unlabelled", type=Path, default=None, help="texts taught as unlabelled docs (a 2nd student)")
    parser.add_argument("--unlabelled-max-docs", type=int, default=None,
                        help="teach only the first N docs of --unlabelled (default: all)")
    parser.add_argument("--floor", type=float, default=0.05, help="teacher probabilities stored from this floor")
    parser.add_argument("--weight", type=float, default=0.5, help="distill_weight of the student")
    parser.add_argument("--output", type=Path, default=None, help="default: results/DATASET-distill")
    parser.add_argument("--batch-size", type=int, default=256, help="nlp.pipe batch size at inference")
    parser.add_argument("--remeasure-speed", action="store_true",
                        help="time the gold-only and student rows' inference again, one after the other, so that "
                             "their words/s come from the same conditions (rows measured at other times may not)")
    parser.add_argument("--set", nargs="*", default=[], metavar="SECTION.KEY=VALUE",
                        help="spacy train overrides for the students, e.g. training.max_steps=3000")
    return parser


def _meta_hash(model: Path) -> str:
    """sha256 of a pipeline's weights files: changes whenever it is retrained."""
    digest = hashlib.sha256()
    for path in sorted(p for p in model.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(model)).encode() + file_sha256(path).encode())
    return digest.hexdigest()


def _part_hash(identity: Dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()


def _teach(args: argparse.Namespace, source: Path, target: Path, unlabelled: bool, identity: str) -> Dict[str, Any]:
    """`spacy egp teach` SOURCE → TARGET, unless TARGET was taught with the same inputs; RETURNS its summary."""
    stamp = target.with_suffix(".json")
    if stamp.exists() and json.loads(stamp.read_text()).get("sha256") == identity:
        print(f"{target}: taught with these inputs, kept", flush=True)
        return json.loads(stamp.read_text())
    print(f"teaching {source} → {target}", flush=True)
    summary = asdict(teach(args.teacher, source, target, floor=args.floor, key=DEFAULT_TEACHER_KEY,
                           unlabelled=unlabelled, max_docs=args.unlabelled_max_docs if unlabelled else None))
    summary["sha256"] = identity
    stamp.write_text(json.dumps(summary, indent=2))
    return summary


def teaching_identity(args: argparse.Namespace, teacher_hash: str, source: Path, unlabelled: bool) -> str:
    """What a taught file depends on: the teacher's weights, the floor, the source file and, for unlabelled
    text, how many of its docs are taught."""
    return _part_hash({"teacher": teacher_hash, "floor": args.floor, "source": file_sha256(source),
                       "max_docs": args.unlabelled_max_docs if unlabelled else None})


def _train_student(args: argparse.Namespace, folder: Path, unlabelled: Optional[Path],
                   teacher_hash: str) -> Dict[str, Any]:
    """Teach (kept when done), then train the student config on folder/teacher/ (logged to folder/train.log)
    with `spacy egp train`, which resumes a stopped training from its checkpoint.

    RETURNS the training's wall time and what teaching stored.
    """
    taught = folder / "teacher"
    taught.mkdir(parents=True, exist_ok=True)
    sources = [(args.corpus / "train.spacy", taught / "train.spacy", False)]
    if unlabelled is not None:
        sources.append((unlabelled, taught / "unlabelled.spacy", True))
    summaries = {target.stem: _teach(args, source, target, flag, teaching_identity(args, teacher_hash, source, flag))
                 for source, target, flag in sources}
    component = student_component(args.student_config, None)
    command = [sys.executable, "-m", "spacy_egp.train", str(args.student_config), "--output", str(folder),
               "--paths.train", str(taught), "--paths.dev", str(args.corpus / "dev.spacy"),
               f"--components.{component}.distill_key", DEFAULT_TEACHER_KEY,
               f"--components.{component}.distill_weight", str(args.weight)]
    command += [arg for item in args.set for arg in (f"--{item.split('=', 1)[0]}", item.split("=", 1)[1])]
    print(f"training {folder.name}: {' '.join(command)}", flush=True)
    started = time.perf_counter()
    with open(folder / "train.log", "w") as log:
        status = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT).returncode
    if status != 0:
        raise RuntimeError(f"training the student in {folder} failed: see {folder / 'train.log'}")
    return {"train_wall_seconds": total_wall_seconds(folder) or time.perf_counter() - started,
            "taught_bytes": {name: summary["output_bytes"] for name, summary in summaries.items()},
            "taught_cells_per_doc": {name: summary["cells"] / max(1, summary["docs"])
                                     for name, summary in summaries.items()}}


def run_distillation(args: argparse.Namespace) -> Dict[str, Any]:
    """Measure every row not yet measured with the same inputs; write OUTPUT/distillation.json."""
    output = args.output or Path("results") / f"{args.dataset}-distill"
    corpus = {split: file_sha256(args.corpus / f"{split}.spacy") for split in ("train", "dev", "test")}
    settings = {"floor": args.floor, "weight": args.weight, "set": args.set,
                "config": args.student_config.read_text(), "corpus": corpus}
    rows: Dict[str, Optional[Path]] = {"teacher": args.teacher, "gold-only": args.gold_only, "student": None}
    if args.unlabelled is not None:
        rows["student-unlabelled"] = None
        settings["unlabelled"] = [file_sha256(args.unlabelled), args.unlabelled_max_docs]
    teacher_hash = _meta_hash(args.teacher)
    parts = []
    for name, model in rows.items():
        identity = {"corpus": corpus, "model": _meta_hash(model)} if model is not None else \
            dict(settings, teacher=teacher_hash, unlabelled=settings.get("unlabelled") if "unlabelled" in name else None)
        part_path, part_hash = output / "parts" / f"{name}.json", _part_hash(identity)
        if part_path.exists() and json.loads(part_path.read_text()).get("sha256") == part_hash:
            print(f"{name}: done with these inputs ({part_path}), skipped", flush=True)
            parts.append(json.loads(part_path.read_text()))
            continue
        trained: Dict[str, Any] = {}
        if model is None:
            model_folder = output / "training" / STUDENT_FOLDERS[name]
            trained = _train_student(args, model_folder, args.unlabelled if "unlabelled" in name else None,
                                     teacher_hash)
            model = model_folder / "model-best"
        if name == "teacher" and args.teacher_row is not None:
            measured = _compare_row(args.teacher_row, args.teacher)
        else:
            measured = _evaluate_in_subprocess(model, args.corpus / "test.spacy", args.batch_size)
        part = {"pipeline": name, "model": str(model), "sha256": part_hash, **trained, **measured}
        part_path.parent.mkdir(parents=True, exist_ok=True)
        part_path.write_text(json.dumps(part, indent=2))
        print(f"measured {name}: {part_path}", flush=True)
        parts.append(part)
    if args.remeasure_speed:
        _remeasure_speed(args, output, parts)
    results = {"dataset": args.dataset, "student_config": str(args.student_config), "floor": args.floor,
               "weight": args.weight, "overrides": args.set, "machine": machine_description(), "rows": parts}
    (output / "distillation.json").write_text(json.dumps(results, indent=2))
    return results


def _remeasure_speed(args: argparse.Namespace, output: Path, parts: List[Dict[str, Any]]) -> None:
    """Inference words/s of every row but the teacher, measured again back to back; the parts are rewritten."""
    for part in parts:
        if part["pipeline"] == "teacher":
            continue
        measured = _evaluate_in_subprocess(Path(part["model"]), args.corpus / "test.spacy", args.batch_size)
        part["inference_words_per_second"] = measured["inference_words_per_second"]
        (output / "parts" / f"{part['pipeline']}.json").write_text(json.dumps(part, indent=2))
        print(f"remeasured {part['pipeline']}: {part['inference_words_per_second']:,.0f} words/s", flush=True)


def _compare_row(part_path: Path, teacher: Path) -> Dict[str, Any]:
    """The EGP row of a `benchmark compare` part whose model is the teacher (measured there the same way)."""
    part = json.loads(part_path.read_text())
    if Path(part_path).parent.parent / "training" / part["pipeline"] / "model-best" != teacher:
        raise ValueError(f"{part_path} is not the part of the teacher {teacher} (its model-best is "
                         f"{Path(part_path).parent.parent / 'training' / part['pipeline'] / 'model-best'}).")
    row = next(row for row in part["rows"] if row["pipeline"] == part["pipeline"])
    return {key: value for key, value in row.items() if key != "pipeline"}


def format_distillation_table(results: Dict[str, Any]) -> str:
    """One row per model: test P/R/F, inference words/s on one thread, and the student's cost."""
    names = {"teacher": "teacher", "gold-only": "CNN, gold only", "student": "CNN student",
             "student-unlabelled": "CNN student, + unlabelled"}
    lines = ["| model | P | R | F | infer words/s (1 thread) | train min | teacher targets stored |",
             "|---|---|---|---|---|---|---|"]
    for row in results["rows"]:
        stored = ", ".join(f"{name} {size / 2**20:.1f} MiB" for name, size in row.get("taught_bytes", {}).items())
        minutes = f"{row['train_wall_seconds'] / 60:.0f}" if "train_wall_seconds" in row else "–"
        lines.append(f"| {names.get(row['pipeline'], row['pipeline'])} | {row['test_p'] * 100:.2f} | "
                     f"{row['test_r'] * 100:.2f} | **{row['test_f'] * 100:.2f}** | "
                     f"{row['inference_words_per_second']:,.0f} | {minutes} | {stored or '–'} |")
    return "\n".join(lines)


def distillation_sections(results_dir: Path) -> List[str]:
    """Heading, caption and table of each results/*/distillation.json (written by `benchmark distill`)."""
    parts: List[str] = []
    for path in sorted(results_dir.glob("*/distillation.json")):
        results = json.loads(path.read_text())
        by_name = {row["pipeline"]: row for row in results["rows"]}
        caption = (f"Teacher `{by_name['teacher']['model']}`; students `{results['student_config']}` taught "
                   f"with floor {results['floor']} and distill_weight {results['weight']}"
                   f"{', overrides ' + ' '.join(results['overrides']) if results['overrides'] else ''}; "
                   f"scored on test. Generated by `python -m spacy_egp.benchmark distill`.")
        if {"student", "gold-only"} <= set(by_name):
            student, gold = by_name["student"], by_name["gold-only"]
            caption += (f" Targets: student F ≥ gold-only F + 2 "
                        f"({student['test_f'] * 100:.2f} vs {gold['test_f'] * 100 + 2:.2f}: "
                        f"{'met' if student['test_f'] >= gold['test_f'] + 0.02 else 'missed'}); student speed ≥ "
                        f"0.9 × gold-only ({student['inference_words_per_second'] / gold['inference_words_per_second']:.2f}"
                        f" ×: {'met' if student['inference_words_per_second'] >= 0.9 * gold['inference_words_per_second'] else 'missed'}).")
        parts += [f"### {results['dataset']} distillation: teacher → CNN student", caption,
                  format_distillation_table(results)]
    return parts


def main(argv: Optional[List[str]] = None) -> int:
    args = parser().parse_args(argv)
    results = run_distillation(args)
    print(format_distillation_table(results))
    return 0

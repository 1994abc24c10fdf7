"""README tables of the trainings run on a lent GPU machine (results/*/device_run.sh beside them).

Such a folder holds one subfolder per `benchmark compare` invocation, each with
its configs/*.cfg, logs/*.jsonl (spacy_egp.ThroughputLogger) and console.txt;
parts/*.json where the test figures were computed before the machine went
back. A run cut off by the machine's time limit still has its dev curve, so
the table reports how far each got: steps reached of the schedule's steps, the
best dev F1 and the dev F1 at a common step, next to the CPU run of the same
config where there is one.
"""

import json
import re
from pathlib import Path
from typing import Any, Dict, List, Optional

from thinc.api import Config

from .logger import training_words_per_second

MIXED_PRECISION = "--components.transformer.model.mixed_precision true"


def device_sections(results_dir: Path) -> List[str]:
    """One README section per folder of device runs."""
    sections = []
    for script in sorted(results_dir.glob("*/device_run.sh")):
        folder = script.parent
        runs = [run_row(path) for path in sorted(folder.iterdir()) if (path / "logs").is_dir()]
        cpu = cpu_reference(results_dir, folder.name)
        if cpu:
            runs.append(cpu)
        concurrent = sum(1 for run in runs if not run["run"].startswith("egp on CPU"))
        sections += [f"### On a GPU: {folder.name} ({device_name(folder)})",
                     f"The {concurrent} runs of `{script.relative_to(results_dir)}` trained at the same time on one "
                     "GPU, so each one's words/s is its share of it; runs the machine's time limit cut off keep their "
                     "dev curve (steps reached below the schedule's) and have no test row.",
                     device_table(runs, common_step(runs))]
    return sections


def run_row(folder: Path, name: Optional[str] = None) -> Dict[str, Any]:
    """The figures of one compare run: its schedule, how far it got, its dev curve, its test row if any."""
    log = next((folder / "logs").glob("*.jsonl"))
    evaluations = [json.loads(line) for line in log.read_text().splitlines()]
    config = Config().from_disk(next((folder / "configs").glob("*.cfg")), interpolate=False)
    console = folder / "console.txt"
    part = next((folder / "parts").glob("*.json"), None) if (folder / "parts").is_dir() else None
    best = max(evaluations, key=lambda e: e["score"])
    return {
        "run": name or folder.name,
        "pipeline": log.stem,
        "schedule_steps": config["training"]["max_steps"],
        "reached_steps": evaluations[-1]["step"],
        "mixed_precision": console.exists() and MIXED_PRECISION in console.read_text(),
        "best_dev_f": best["score"],
        "best_step": best["step"],
        "dev_f_by_step": {e["step"]: e["score"] for e in evaluations},
        "train_words_per_second": training_words_per_second(evaluations),
        "seconds": evaluations[-1]["seconds"],
        "test_f": json.loads(part.read_text())["rows"][0]["test_f"] if part else None,
    }


def cpu_reference(results_dir: Path, folder_name: str) -> Optional[Dict[str, Any]]:
    """The EGP run of the same dataset on CPU (results/cluener-me5s for cluener-me5s-h200), if there is one."""
    cpu_folder = results_dir / re.sub(r"-[^-]+$", "", folder_name)
    if not (cpu_folder / "logs" / "egp.jsonl").exists():
        return None
    return run_row(cpu_folder, name=f"egp on CPU ({cpu_folder.name})")


def common_step(runs: List[Dict[str, Any]]) -> int:
    """The last step every EGP run evaluated, to compare them at the same point."""
    steps = [set(run["dev_f_by_step"]) for run in runs if run["pipeline"] == "egp"]
    shared = set.intersection(*steps) if steps else set()
    return max(shared) if shared else 0


def device_name(folder: Path) -> str:
    for part in sorted(folder.glob("*/parts/*.json")):
        gpu = json.loads(part.read_text())["machine"].get("gpu")
        if gpu:
            return gpu
    return "GPU"


def device_table(runs: List[Dict[str, Any]], step: int) -> str:
    lines = [f"| run | pipeline | steps reached / scheduled | mixed precision | best dev F @ step | dev F @ {step} "
             "| train words/s | test F |", "|---|---|---|---|---|---|---|---|"]
    for run in runs:
        lines.append(
            f"| {run['run']} | {run['pipeline']} | {run['reached_steps']:,} / {run['schedule_steps']:,} "
            f"| {'yes' if run['mixed_precision'] else 'no'} | {_pct(run['best_dev_f'])} @ {run['best_step']:,} "
            f"| {_pct(run['dev_f_by_step'].get(step))} | {run['train_words_per_second']:,.0f} | {_pct(run['test_f'])} |")
    return "\n".join(lines)


def _pct(value: Optional[float]) -> str:
    return "–" if value is None else f"{100 * value:.2f}"

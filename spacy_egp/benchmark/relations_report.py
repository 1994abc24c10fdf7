"""Markdown of the relation benchmark, from the OUTPUT/relations.json files that `relations` writes.

`python -m spacy_egp.benchmark report` puts `relation_sections(results/)` into
results/README.md and README.md's generated Results section; no figure is typed in.
"""

import json
import re
from pathlib import Path
from typing import NamedTuple
from typing import Any, Dict, List, Optional, Sequence, Tuple

from thinc.api import Config

NAMES = {
    "gplinker-egp": "gplinker, EGP pair pointers",
    "gplinker-gp": "gplinker, GP pair pointers",
    "baseline": "spaCy ner + pair classifier",
}
TARGET_MARGIN, TARGET_FLOOR = 5.0, 55.0  # issue 19: with MiniLM, gplinker ≥ baseline + 5 and ≥ 55 strict F
RUN_LABEL = re.compile(r" \((?P<label>[^()]*)\)$")  # what a run's --tok2vec label sets apart: "MiniLM (seed 1)"


def _pct(value: Any) -> str:
    return "–" if value is None else f"{value * 100:.2f}"


def _relation_types(results: Dict[str, Any]) -> List[str]:
    return sorted({label for row in results["rows"] for label in row.get("test_relations_per_type", {})})


def format_relations_table(results: Dict[str, Any]) -> str:
    """One row per pipeline: strict and untyped relation P/R/F, entity F, F per relation type, cost."""
    types = _relation_types(results)
    # the entity/linking split, in results evaluated since the scorer reports it
    split = any("test_relations_args_found" in row for row in results["rows"])
    header = (["pipeline", "strict P", "strict R", "strict F", "untyped P", "untyped R", "untyped F", "entity F"]
              + (["gold relations with both args found", "linked, given both args"] if split else [])
              + [f"{t} F" for t in types]
              + ["strict F, spaCy tokenizer", "train min", "infer words/s (1 thread)"])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in results["rows"]:
        per_type = row.get("test_relations_per_type", {})
        cells = [
            NAMES.get(row["pipeline"], row["pipeline"]),
            _pct(row["test_relations_p"]), _pct(row["test_relations_r"]), f"**{_pct(row['test_relations_f'])}**",
            _pct(row["test_relations_untyped_p"]), _pct(row["test_relations_untyped_r"]),
            _pct(row["test_relations_untyped_f"]), _pct(row["test_spans_sc_f"]),
        ] + ([_pct(row.get("test_relations_args_found")), _pct(row.get("test_relations_linked_given_args"))]
             if split else []) + [_pct(per_type[t]["f"]) if t in per_type else "–" for t in types] + [
            _pct(row["test_spacy_tokens_relations_f"]),
            f"{row['train_wall_seconds'] / 60:.1f}",
            f"{row['inference_words_per_second']:,.0f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def encoder_name(results: Dict[str, Any]) -> str:
    """The encoder of a run, without what its label sets apart ("MiniLM (seed 1)" -> "MiniLM")."""
    return RUN_LABEL.sub("", results["tok2vec"])


def run_label(results: Dict[str, Any]) -> Optional[str]:
    """What a run's label sets apart from the encoder's main run ("MiniLM (seed 1)" -> "seed 1"), if anything."""
    match = RUN_LABEL.search(results["tok2vec"])
    return match["label"] if match else None


class Recipe(NamedTuple):
    """What a pipeline of a run trained with, read from its config: the rest is the template's."""

    seed: Optional[int]
    learn_rate: Optional[float]  # the optimizer's (initial) rate: the encoder's
    head_lr_scale: float  # the heads' rate is learn_rate x this
    loss_weighting: str = "reference"  # gplinker's loss_weighting

    @property
    def rates(self) -> str:
        """Encoder / heads, e.g. "5e-5 / 1e-3", and the loss weighting where it is not the reference's."""
        if self.learn_rate is None:
            return "–"
        rates = " / ".join(f"{rate:.0e}".replace("e-0", "e-") for rate in (self.learn_rate,
                                                                           self.learn_rate * self.head_lr_scale))
        return rates if self.loss_weighting == "reference" else f"{rates}, loss {self.loss_weighting}"


def run_recipe(folder: Path, pipeline: str) -> Optional[Recipe]:
    """The recipe a pipeline of the run in FOLDER trained with (FOLDER/configs/PIPELINE.cfg), if kept."""
    path = folder / "configs" / f"{pipeline}.cfg"
    if not path.exists():
        return None
    config = Config().from_disk(path, interpolate=False)
    rate = config.get("training", {}).get("optimizer", {}).get("learn_rate")
    components = config.get("components", {}).values()
    scales = [c["head_lr_scale"] for c in components if "head_lr_scale" in c]
    weightings = [c["loss_weighting"] for c in components if "loss_weighting" in c]
    return Recipe(seed=config.get("system", {}).get("seed"),
                  learn_rate=rate.get("initial_rate") if isinstance(rate, dict) else rate,
                  head_lr_scale=max(scales, default=1.0), loss_weighting=weightings[0] if weightings else "reference")


def relations_heading(results: Dict[str, Any]) -> str:
    rows = results["rows"]
    steps = "; ".join(f"{r['pipeline']} {r['train_steps']:,}" for r in rows)
    retokenized = rows[0]["test_sentences_retokenized"] if rows else 0
    label = run_label(results)
    apart = "" if label is None else f", {label}"
    return (
        f"### {results['dataset']} relations — {encoder_name(results)} encoder{apart} (`{results['template']}`)\n\n"
        f"Test split of SPLITS.md ({rows[0]['test_docs']:,} sentences). Every pipeline is generated from the "
        "same gplinker config: same encoder, seed, batcher, optimizer and budget (step of the last dev "
        f"evaluation: {steps}); model-best selected on dev by strict relation F. The baseline is spaCy `ner` plus a "
        "pairwise classifier built as in explosion's rel_component tutorial (candidate pairs of `doc.ents` "
        "within the same `max_pair_distance`, mean-pooled entity vectors of the shared encoder concatenated, "
        f"a ReLU layer of {results.get('baseline_hidden_width', '?')}, a sigmoid per relation type; trained on "
        "the gold entities), scored by the same "
        "scorer. The `ner`, the classifier and gplinker's heads all learn at the config's `head_lr_scale` "
        "times the optimizer's rate, the encoder at the rate itself (spaCy's `ner` has no scale of its own: "
        "where it is not 1, the benchmark's subclass `bench_scaled_ner` adds it). Strict = both arguments' boundaries "
        "and entity types and the relation type right; untyped = argument boundaries and relation type; "
        "entity F = exact typed entities (doc.spans[\"sc\"]; the baseline's are its doc.ents); where shown, "
        "\"both args found\" = the share of gold relations whose two arguments are predicted entities and "
        "\"linked\" = the share of those predicted: entity errors apart from linking errors. "
        "Scored on CoNLL04's own tokens (training and dev too: `gold_preproc`), as SpERT reports; the "
        "\"spaCy tokenizer\" column scores the same pipelines on the raw text through spaCy's English "
        f"tokenizer, which re-splits {retokenized} of the {rows[0]['test_docs']} test sentences. Inference: "
        "raw text through `nlp.pipe`, one process, one thread, CPU, best of 3."
    )


def format_relation_targets(all_results: List[Dict[str, Any]], seed_lines: Sequence[str] = ()) -> str:
    """Issue 19's MiniLM targets, computed from the same files (only where the rows exist), then `seed_lines`."""
    lines = []
    for results in all_results:
        rows = {row["pipeline"]: row for row in results["rows"]}
        if results["tok2vec"] == "CNN" or "gplinker-egp" not in rows:
            continue
        egp = rows["gplinker-egp"]["test_relations_f"] * 100
        label = run_label(results)
        name = f"{results['dataset']} ({encoder_name(results)}{'' if label is None else ', ' + label})"
        if "baseline" in rows:
            gap = egp - rows["baseline"]["test_relations_f"] * 100
            lines.append(f"| gplinker strict F ≥ baseline + {TARGET_MARGIN:g} | {name} | {gap:+.2f} points | "
                         f"{'yes' if gap >= TARGET_MARGIN else '**no**'} |")
        lines.append(f"| gplinker strict F ≥ {TARGET_FLOOR:g} | {name} | {egp:.2f} | "
                     f"{'yes' if egp >= TARGET_FLOOR else '**no**'} |")
    lines += list(seed_lines)
    return "\n".join(["| target | dataset | measured | met |", "|---|---|---|---|"] + lines) if lines else ""


RecipeKey = Tuple[str, str, str, str, str]  # dataset, encoder, template, pipeline, learning rates (Recipe.rates)


def seed_scores(runs: List[Tuple[Path, Dict[str, Any]]]) -> Dict[RecipeKey, Dict[int, float]]:
    """Strict test F (%) by seed of each pipeline and learning rates, over the runs whose configs were kept."""
    by_recipe: Dict[RecipeKey, Dict[int, float]] = {}
    for folder, results in runs:
        for row in results["rows"]:
            recipe = run_recipe(folder, row["pipeline"])
            if recipe is not None and recipe.seed is not None:
                key = (results["dataset"], encoder_name(results), results["template"], row["pipeline"], recipe.rates)
                by_recipe.setdefault(key, {})[recipe.seed] = row["test_relations_f"] * 100
    return by_recipe


def _mean(scores: Dict[int, float]) -> float:
    return sum(scores.values()) / len(scores)


def format_seed_table(by_recipe: Dict[RecipeKey, Dict[int, float]]) -> str:
    """Strict F of each pipeline by learning rates and seed: mean and spread over the seeds."""
    lines = [f"| {dataset} | {encoder} | {NAMES.get(pipeline, pipeline)} | {rates} | "
             + ", ".join(f"{seed}: {f:.2f}" for seed, f in sorted(scores.items()))
             + f" | **{_mean(scores):.2f}** | "
             + (f"{max(scores.values()) - min(scores.values()):.2f}" if len(scores) > 1 else "–") + " |"
             for (dataset, encoder, _, pipeline, rates), scores in sorted(by_recipe.items())]
    header = ["| dataset | encoder | pipeline | learning rate: encoder / heads (loss weighting, if not the "
              "reference's) | strict F by seed | mean "
              "| spread (max − min) |", "|---|---|---|---|---|---|---|"]
    return "\n".join(header + lines) if lines else ""


def seed_mean_targets(by_recipe: Dict[RecipeKey, Dict[int, float]]) -> List[str]:
    """gplinker ≥ baseline + 5 on the means over the seeds both were trained with (two or more), same rates."""
    lines = []
    for (dataset, encoder, template, pipeline, rates), egp in sorted(by_recipe.items()):
        baseline = by_recipe.get((dataset, encoder, template, "baseline", rates), {})
        shared = sorted(set(egp) & set(baseline))
        if pipeline != "gplinker-egp" or encoder == "CNN" or len(shared) < 2:
            continue
        gap = _mean({seed: egp[seed] for seed in shared}) - _mean({seed: baseline[seed] for seed in shared})
        seeds = ", ".join(str(seed) for seed in shared)
        lines.append(f"| gplinker strict F ≥ baseline + {TARGET_MARGIN:g}, means over seeds {seeds} | "
                     f"{dataset} ({encoder}, rates {rates}) | {gap:+.2f} points | "
                     f"{'yes' if gap >= TARGET_MARGIN else '**no**'} |")
    return lines


SEED_CAPTION = (
    "Seeds and learning rates: each pipeline of the runs above, grouped by its learning rates (the encoder's, the "
    "optimizer's initial rate; the heads', that times `head_lr_scale`) and gplinker's `loss_weighting` where it "
    "is not the reference's, and listed by `system.seed`, all read from "
    "the run's `configs/`; the rest of each run is the template's. The spread over seeds is the noise a gap "
    "between two single-seed rows has to beat."
)


def format_diagnosis_table(diagnosis: Dict[str, Any]) -> str:
    """One row per pipeline of a diagnosis.json (`benchmark relations-diagnosis`): where the errors come from."""
    header = ["pipeline", "dev best (step)", "dev last (step)", "test strict F", "gold args found",
              "linked, given args", "gold beyond max_pair_distance (test)", "dev F, thresholds tuned on dev",
              "test strict F, thresholds tuned on dev"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in diagnosis["rows"]:
        cells = [
            NAMES.get(row["pipeline"], row["pipeline"]),
            f"{_pct(row['dev_best_score'])} ({row['dev_best_step']:,})",
            f"{_pct(row['dev_last_score'])} ({row['dev_last_step']:,})",
            _pct(row["test_relations_f"]), _pct(row["test_relations_args_found"]),
            _pct(row["test_relations_linked_given_args"]),
            f"{row['test_gold_beyond_distance']} of {row['test_gold_relations']} (distance {row['max_pair_distance']})",
            f"{_pct(row['dev_untuned']['f'])} → {_pct(row['dev_tuned']['f'])}",
            f"**{_pct(row['test_tuned']['f'])}** (P {_pct(row['test_tuned']['p'])} / R {_pct(row['test_tuned']['r'])})",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


DIAGNOSIS_CAPTION = (
    "Where the errors come from (`python -m spacy_egp.benchmark relations-diagnosis`, the trained pipelines above "
    "re-read on the dataset's tokens): the dev curve's best and last evaluation; recall split into gold relations "
    "whose two arguments are predicted entities and the share of those linked; gold relations farther apart than "
    "the pipeline's `max_pair_distance` (unreachable at any threshold); and each relation type's threshold tuned "
    "on dev with the exact search of `spacy egp tune` (gplinker's entity thresholds first), then applied to test. "
    "The baseline's single classifier threshold is tuned per type the same way."
)


def relation_sections(results_dir: Path) -> List[str]:
    """Heading, caption and table of each results/*/relations.json, its diagnosis where run, and the targets."""
    paths = [p for p in sorted(results_dir.glob("*/relations.json")) if json.loads(p.read_text()).get("rows")]
    all_results = [json.loads(p.read_text()) for p in paths]
    parts: List[str] = []
    for path, results in zip(paths, all_results):
        parts += [relations_heading(results), format_relations_table(results)]
        diagnosis = path.parent / "diagnosis.json"
        if diagnosis.exists():
            parts += [DIAGNOSIS_CAPTION, format_diagnosis_table(json.loads(diagnosis.read_text()))]
    by_seed = seed_scores([(path.parent, results) for path, results in zip(paths, all_results)])
    seed_table = format_seed_table(by_seed)
    if seed_table:
        parts += ["### Relation results across seeds and learning rates", SEED_CAPTION, seed_table]
    targets = format_relation_targets(all_results, seed_mean_targets(by_seed))
    if targets:
        parts += ["### Relation targets (issue 19, MiniLM, test)", targets]
    return parts

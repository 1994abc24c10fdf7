"""spaCy's training loop with checkpoints: a run that is stopped goes on where it stopped.

A CPU training of a transformer pipeline can outlast the process that runs it
(a session, a job slot, a laptop lid). `train` is `spacy train` step for step:
the same seed, batches, dropout, updates, evaluations and model-best/model-last.
Every `checkpoint_every` steps it also writes OUTPUT/checkpoint.pkl, which
holds what spaCy keeps only in memory:

- the raw weights of every component (model-last holds the averaged ones);
- the optimizer's moments, update counts and weight averages, keyed by each
  parameter's place in the pipeline (thinc keys them by object ids, which a
  new process does not reproduce);
- the Python, numpy and torch random states;
- the position in the batch stream: the step, and Python's random state
  before each epoch's shuffle, so that a new process replays the same
  shuffles and batches (the batch-size schedule runs on across epochs);
- the evaluations logged so far, which the logger is given again.

It also fixes glibc's mmap threshold for the process (spacy_egp.pipeline.heap),
whatever the pipeline, so that a long training's RSS stays bounded.

Run the same command again and it resumes from the checkpoint. On CPU the
resumed run ends with the same weights as an uninterrupted one
(tests/test_resumable_training.py). On a GPU it resumes too, but cupy's
random state is not restored, so dropout masks differ from an uninterrupted run.
"""

import hashlib
import json
import pickle
import random
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple

import numpy
import torch
from spacy.errors import Errors
from spacy.language import Language
from spacy.schemas import ConfigSchemaTraining
from spacy.training.example import Example
from spacy.training.initialize import init_nlp
from spacy.training.loop import (DIR_MODEL_BEST, DIR_MODEL_LAST, clean_output_dir, create_before_to_disk_callback,
                                 create_evaluation_callback, subdivide_batch, update_meta)
from spacy.util import registry, resolve_dot_names
from thinc.api import Config, Model, Optimizer, constant, fix_random_seed, get_current_ops
from thinc.backends import get_array_ops

from ..pipeline.heap import fix_mmap_threshold

CHECKPOINT = "checkpoint.pkl"
SESSIONS = "training-sessions.json"
FORMAT = 1
# the optimizer's per-parameter state, keyed by (object id, parameter name)
OPTIMIZER_TABLES = ("mom1", "mom2", "averages", "nr_update", "last_seen")

StableKey = Tuple[str, str, str]  # ("model" | "shim", component/node path, parameter name)


class CheckpointError(ValueError):
    """A checkpoint that cannot be resumed with this config or pipeline."""


@dataclass
class TrainingState:
    """Where a training run stands after `step` (the last step done; -1 before the first)."""

    config_sha256: str
    step: int = -1
    words_seen: int = 0
    seconds: float = 0.0
    results: List[Tuple[float, int]] = field(default_factory=list)
    losses: Dict[str, float] = field(default_factory=dict)
    logged: List[Dict[str, Any]] = field(default_factory=list)
    shuffle_states: List[Any] = field(default_factory=list)
    random_states: Dict[str, Any] = field(default_factory=dict)
    optimizer: Dict[str, Any] = field(default_factory=dict)
    weights: Dict[str, bytes] = field(default_factory=dict)


@dataclass
class TrainingOutcome:
    """What `train` leaves: the pipeline, the folder of model-last, and whether the run reached its end."""

    nlp: Language
    model_last: Optional[Path]
    finished: bool
    last_step: int


def config_sha256(config: Config) -> str:
    """The identity of a run: its config text, overrides applied, before interpolation."""
    return hashlib.sha256(config.to_str(interpolate=False).encode("utf8")).hexdigest()


class ResumableBatches:
    """spaCy's `create_train_batches` (the same shuffles and batches) that records where it is.

    Each epoch shuffles the examples in place with Python's `random`, and the
    batcher's size schedule runs on across epochs, so a position in the stream
    depends on every shuffle before it. The random state before each shuffle is
    recorded; given those states, a new instance replays the same stream
    whatever else used `random` in between.
    """

    def __init__(self, nlp: Language, corpus: Callable[[Language], Iterable[Example]],
                 batcher: Callable[[Iterable[Example]], Iterable[List[Example]]], max_epochs: int,
                 shuffle_states: Iterable[Any] = ()):
        self.nlp = nlp
        self.corpus = corpus
        self.batcher = batcher
        self.max_epochs = max_epochs
        self.shuffle_states = list(shuffle_states)

    def __iter__(self) -> Iterator[Tuple[int, List[Example]]]:
        epoch = 0
        if self.max_epochs >= 0:
            examples = list(self.corpus(self.nlp))
            if not examples:
                raise ValueError(Errors.E986)
        while self.max_epochs < 1 or epoch != self.max_epochs:
            if self.max_epochs >= 0:
                self._shuffle(examples, epoch)
            else:
                examples = self.corpus(self.nlp)
            for batch in self.batcher(examples):
                yield epoch, batch
            epoch += 1

    def _shuffle(self, examples: List[Example], epoch: int) -> None:
        if epoch < len(self.shuffle_states):
            random.setstate(self.shuffle_states[epoch])
        else:
            self.shuffle_states.append(random.getstate())
        random.shuffle(examples)


def train(config: Config, output_path: Path, *, use_gpu: int = -1, checkpoint_every: Optional[int] = None,
          stop_after_steps: Optional[int] = None, restart: bool = False, stdout: IO = sys.stdout,
          stderr: IO = sys.stderr) -> TrainingOutcome:
    """Train the pipeline of `config` into `output_path`, resuming from its checkpoint if there is one.

    config (Config): the training config, overrides applied, not interpolated.
    output_path (Path): model-best, model-last, checkpoint.pkl and training-sessions.json go here.
    use_gpu (int): the GPU id, -1 for CPU (call spaCy's `setup_gpu` first).
    checkpoint_every (Optional[int]): write the checkpoint every this many steps (default: eval_frequency).
    stop_after_steps (Optional[int]): pause after this many steps of this call: checkpoint, model-last, return.
    restart (bool): ignore an existing checkpoint and train from step 0.
    RETURNS (TrainingOutcome): the pipeline, model-last's folder and whether max_steps (or max_epochs) was reached.
    """
    started = time.perf_counter()
    # for every pipeline, not only ours: spaCy's spancat on me5s-zh-char + CNN (the benchmark's CLUENER row,
    # n-grams 1-20) grew by about 4.5 MB a step with glibc's dynamic threshold and was OOM-killed at 18.6 GB
    fix_mmap_threshold()
    output_path.mkdir(parents=True, exist_ok=True)
    identity = config_sha256(config)
    state = None if restart else load_checkpoint(output_path, identity)
    nlp = init_nlp(config, use_gpu=use_gpu)
    run = _Run(nlp, output_path, state or TrainingState(config_sha256=identity), checkpoint_every)
    if state is None:
        clean_output_dir(output_path)
        _write_sessions(output_path, [])
    else:
        run.restore()
        _record_killed_call(output_path, state)
        stdout.write(f"Resuming from {output_path / CHECKPOINT} after step {state.step}\n")
    first_step = run.state.step + 1
    finished = run.loop(stop_after_steps, stdout, stderr)
    _append_session(output_path, first_step, run.state.step, time.perf_counter() - started, finished,
                    checkpoint_seconds=run.state.seconds)
    return TrainingOutcome(nlp, output_path / DIR_MODEL_LAST, finished, run.state.step)


def load_checkpoint(output_path: Path, identity: str) -> Optional[TrainingState]:
    """The checkpoint in `output_path`, None if there is none; an error if another config wrote it."""
    path = output_path / CHECKPOINT
    if not path.exists():
        return None
    with path.open("rb") as stream:
        saved = pickle.load(stream)
    if saved.get("format") != FORMAT:
        raise CheckpointError(f"{path} has checkpoint format {saved.get('format')}, this version reads {FORMAT}: "
                              f"train again with --restart (or delete the file).")
    state: TrainingState = saved["state"]
    if state.config_sha256 != identity:
        raise CheckpointError(f"{path} was written by a different config or different overrides: resume with the "
                              f"same config and overrides, or start over with --restart (or delete the file).")
    return state


class _Run:
    """One call's share of a training run: spaCy's loop, plus the checkpoint."""

    def __init__(self, nlp: Language, output_path: Path, state: TrainingState, checkpoint_every: Optional[int]):
        self.nlp = nlp
        self.output_path = output_path
        self.state = state
        config = nlp.config.interpolate()
        self.seed = config["training"]["seed"]
        if self.seed is not None:
            fix_random_seed(self.seed)
        self.T = registry.resolve(config["training"], schema=ConfigSchemaTraining)
        train_corpus, dev_corpus = resolve_dot_names(config, [self.T["train_corpus"], self.T["dev_corpus"]])
        self.optimizer: Optimizer = self.T["optimizer"]
        self.batches = ResumableBatches(nlp, train_corpus, self.T["batcher"], self.T["max_epochs"],
                                        state.shuffle_states)
        self.evaluate = create_evaluation_callback(nlp, dev_corpus, self.T["score_weights"])
        self.before_to_disk = create_before_to_disk_callback(self.T["before_to_disk"])
        dropout = self.T["dropout"]
        self.dropouts = constant(dropout) if isinstance(dropout, float) else dropout
        self.checkpoint_every = checkpoint_every or self.T["eval_frequency"]
        if self.checkpoint_every < 1:
            raise ValueError(f"checkpoint_every must be a positive number of steps, not {self.checkpoint_every}")

    def restore(self) -> None:
        """Weights, optimizer state and schedules, then the batch stream, then the random states."""
        state = self.state
        for name, proc in self.nlp.pipeline:
            if name in state.weights:
                proc.model.from_bytes(state.weights[name])
        restore_optimizer(self.optimizer, state.optimizer, self.nlp)
        for _ in range(state.step + 1):
            self.optimizer.step_schedules()
            next(self.dropouts)

    def loop(self, stop_after_steps: Optional[int], stdout: IO, stderr: IO) -> bool:
        """Train from state.step + 1 until max_steps, max_epochs or patience, or a pause; RETURNS whether it ended."""
        T, state = self.T, self.state
        frozen, annotating = T["frozen_components"], T["annotating_components"]
        stream = iter(self.batches)
        for _ in range(state.step + 1):  # the batches of the steps done before
            next(stream)
        if state.random_states:
            set_random_states(state.random_states)
        with self.nlp.select_pipes(disable=frozen):
            log_step, finalize_logger = T["logger"](self.nlp, stdout, stderr)
        for info in state.logged:
            log_step(info)
        steps_this_call = 0
        start = time.perf_counter() - state.seconds
        try:
            for epoch, batch in stream:
                step = state.step + 1
                self._update(step, epoch, batch, frozen, annotating)
                info = self._evaluate_and_save(step, epoch, batch, start, frozen)
                log_step(info if info["score"] is not None else None)
                if info["score"] is not None:
                    state.logged.append(info)
                    state.losses = {}
                state.step = step
                steps_this_call += 1
                if self._should_stop(step):
                    return True
                if stop_after_steps is not None and steps_this_call >= stop_after_steps:
                    self.save_checkpoint(start)
                    return False
                if not step % self.checkpoint_every and step > 0:
                    self.save_checkpoint(start)
            return True
        finally:
            finalize_logger()
            self._save_model(self.output_path / DIR_MODEL_LAST)

    def _update(self, step: int, epoch: int, batch: List[Example], frozen: List[str], annotating: List[str]) -> None:
        if self.T["before_update"]:
            self.T["before_update"](self.nlp, {"step": step, "epoch": epoch})
        dropout = next(self.dropouts)
        for subbatch in subdivide_batch(batch, self.T["accumulate_gradient"]):
            self.nlp.update(subbatch, drop=dropout, losses=self.state.losses, sgd=False, exclude=frozen,
                            annotates=annotating)
        for name, proc in self.nlp.pipeline:
            if (name not in frozen and getattr(proc, "is_trainable", False)
                    and proc.model not in (True, False, None)):
                proc.finish_update(self.optimizer)
        self.optimizer.step_schedules()

    def _evaluate_and_save(self, step: int, epoch: int, batch: List[Example], start: float,
                           frozen: List[str]) -> Dict[str, Any]:
        """spaCy's info dict for this step; on an evaluation step, model-last (and model-best if it is best)."""
        state = self.state
        score, other_scores, is_best = None, None, None
        if not step % self.T["eval_frequency"]:
            with self.nlp.use_params(self.optimizer.averages or {}):
                score, other_scores = self.evaluate()
            state.results.append((score, step))
            is_best = score == max(state.results)[0]
        state.words_seen += sum(len(eg) for eg in batch)
        info = {"epoch": epoch, "step": step, "score": score, "other_scores": other_scores,
                "losses": dict(state.losses), "checkpoints": list(state.results),
                "seconds": int(time.perf_counter() - start), "words": state.words_seen}
        if is_best is not None:
            with self.nlp.select_pipes(disable=frozen):
                update_meta(self.T, self.nlp, info)
            self._save_model(self.output_path / DIR_MODEL_LAST)
            if is_best:
                self._copy_to_model_best()
            info["output_path"] = str(self.output_path / DIR_MODEL_LAST)
        return info

    def _copy_to_model_best(self) -> None:
        """model-last becomes model-best; a process stopped meanwhile leaves the old one or the new one whole."""
        best = self.output_path / DIR_MODEL_BEST
        partial = best.with_name(best.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        shutil.copytree(self.output_path / DIR_MODEL_LAST, partial)
        shutil.rmtree(best, ignore_errors=True)
        partial.rename(best)

    def _should_stop(self, step: int) -> bool:
        """spaCy's stopping rules: patience steps without improvement, or max_steps reached."""
        results = self.state.results
        if self.T["patience"] and results:
            best_step = -max((score, -at) for score, at in results)[1]
            if step - best_step >= self.T["patience"]:
                return True
        return bool(self.T["max_steps"]) and step >= self.T["max_steps"]

    def _save_model(self, path: Path) -> None:
        with self.nlp.use_params(self.optimizer.averages or {}):
            self.before_to_disk(self.nlp).to_disk(path)

    def save_checkpoint(self, start: float) -> None:
        """Write checkpoint.pkl atomically (a new file renamed over the old one)."""
        state = self.state
        state.seconds = time.perf_counter() - start
        state.shuffle_states = list(self.batches.shuffle_states)
        state.random_states = get_random_states()
        state.optimizer = optimizer_state(self.optimizer, self.nlp)
        state.weights = {name: proc.model.to_bytes() for name, proc in self.nlp.pipeline
                         if isinstance(getattr(proc, "model", None), Model)}
        path = self.output_path / CHECKPOINT
        partial = path.with_suffix(".partial")
        with partial.open("wb") as stream:
            pickle.dump({"format": FORMAT, "state": state}, stream, protocol=pickle.HIGHEST_PROTOCOL)
        partial.replace(path)
        state.weights, state.optimizer = {}, {}  # only the file needs them


def parameter_keys(nlp: Language) -> Dict[Tuple[int, str], StableKey]:
    """thinc's optimizer key (object id, parameter name) -> the parameter's place in the pipeline.

    Layers are numbered in `Model.walk` order within their component, and a
    layer's torch shims by their position; the first component that reaches a
    shared layer names it.
    """
    keys: Dict[Tuple[int, str], StableKey] = {}
    for name, proc in nlp.pipeline:
        model = getattr(proc, "model", None)
        if not isinstance(model, Model):
            continue
        for index, node in enumerate(model.walk()):
            for param in node.param_names:
                keys.setdefault((node.id, param), ("model", f"{name}/{index}", param))
            for position, shim in enumerate(node.shims):
                torch_model = getattr(shim, "_model", None)
                if isinstance(torch_model, torch.nn.Module):
                    for param, _ in torch_model.named_parameters():
                        keys.setdefault((shim.id, param), ("shim", f"{name}/{index}/{position}", param))
    return keys


def optimizer_state(optimizer: Optimizer, nlp: Language) -> Dict[str, Any]:
    """The optimizer's per-parameter tables keyed by place, as numpy arrays."""
    keys = parameter_keys(nlp)
    saved: Dict[str, Any] = {}
    for table in OPTIMIZER_TABLES:
        values = getattr(optimizer, table)
        if values is None:
            saved[table] = None
            continue
        missing = [key for key in values if key not in keys]
        if missing:
            raise CheckpointError(f"the optimizer holds state for parameters outside the pipeline ({missing[:3]}): "
                                  f"a component was removed or replaced during training, which cannot be resumed")
        saved[table] = {keys[key]: _to_numpy(value) for key, value in values.items()}
    saved["_radam_buffer"] = optimizer._radam_buffer
    return saved


def restore_optimizer(optimizer: Optimizer, saved: Dict[str, Any], nlp: Language) -> None:
    """Put `optimizer_state`'s tables back, keyed by this process's object ids."""
    by_place = {place: key for key, place in parameter_keys(nlp).items()}
    for table in OPTIMIZER_TABLES:
        values = saved.get(table)
        if values is None:
            continue
        missing = [place for place in values if place not in by_place]
        if missing:
            raise CheckpointError(f"the checkpoint holds optimizer state for parameters this pipeline lacks "
                                  f"({missing[:3]}): resume with the config that wrote it, or use --restart")
        target = getattr(optimizer, table)
        target.clear()
        for place, value in values.items():
            target[by_place[place]] = _from_numpy(value)
    optimizer._radam_buffer = saved["_radam_buffer"]


def _to_numpy(value: Any) -> Any:
    return value if isinstance(value, int) else get_array_ops(value).to_numpy(value)


def _from_numpy(value: Any) -> Any:
    return value if isinstance(value, int) else get_current_ops().asarray(value)


def get_random_states() -> Dict[str, Any]:
    """Python's, numpy's and torch's (CPU) random states."""
    return {"python": random.getstate(), "numpy": numpy.random.get_state(), "torch": torch.get_rng_state()}


def set_random_states(states: Dict[str, Any]) -> None:
    random.setstate(states["python"])
    numpy.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])


def _write_sessions(output_path: Path, sessions: List[Dict[str, Any]]) -> None:
    (output_path / SESSIONS).write_text(json.dumps(sessions, indent=2))


def _append_session(output_path: Path, first_step: int, last_step: int, wall_seconds: float,
                    finished: bool, checkpoint_seconds: float, killed: bool = False) -> None:
    """One line per call of `train`: the steps it trained and its wall time, initialisation included.

    checkpoint_seconds: the training loop's seconds over all calls that the
    call's last checkpoint holds, so that a later call killed after a
    checkpoint of its own can be told apart and its time counted.
    """
    path = output_path / SESSIONS
    sessions = json.loads(path.read_text()) if path.exists() else []
    session = {"first_step": first_step, "last_step": last_step, "wall_seconds": round(wall_seconds, 1),
               "finished": finished, "checkpoint_seconds": round(checkpoint_seconds, 3)}
    sessions.append(dict(session, killed=True) if killed else session)
    _write_sessions(output_path, sessions)
    if finished:
        (output_path / CHECKPOINT).unlink(missing_ok=True)


def _record_killed_call(output_path: Path, state: TrainingState) -> None:
    """A call killed after a checkpoint (no line of its own): its steps up to that checkpoint and their loop time.

    Its steps after the checkpoint, and its initialisation, are lost: the
    resuming call trains those steps again and counts them itself.
    """
    path = output_path / SESSIONS
    sessions = json.loads(path.read_text()) if path.exists() else []
    last_step = sessions[-1]["last_step"] if sessions else -1
    if state.step <= last_step:
        return
    recorded = sessions[-1].get("checkpoint_seconds", 0.0) if sessions else 0.0
    _append_session(output_path, last_step + 1, state.step, max(state.seconds - recorded, 0.0), False,
                    checkpoint_seconds=state.seconds, killed=True)


def total_wall_seconds(output_path: Path) -> Optional[float]:
    """The wall time of all calls that trained the run in `output_path`, None if it has no sessions file."""
    path = output_path / SESSIONS
    if not path.exists():
        return None
    return sum(session["wall_seconds"] for session in json.loads(path.read_text()))

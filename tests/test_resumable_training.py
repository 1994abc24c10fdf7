"""`spacy egp train`: spacy train step for step, and a paused run resumes to the same weights."""

import json
from pathlib import Path

import pytest
import spacy
import torch
from spacy.cli.train import train as spacy_train
from spacy.util import load_config

from spacy_egp.cli.convert import main as convert
from spacy_egp.cli.train import main as egp_train
from spacy_egp.training.resumable import CHECKPOINT, SESSIONS, CheckpointError, total_wall_seconds, train

from conftest import REPO

CONFIG = REPO / "configs" / "cluener_cnn.cfg"
STEPS, EVAL = 7, 3


@pytest.fixture(scope="module")
def corpus(shared_data, tmp_path_factory) -> Path:
    """40 CLUENER train docs and 20 dev docs: several epochs in a few steps, so shuffles are replayed."""
    out = tmp_path_factory.mktemp("cluener")
    assert convert(["dataset", "cluener", str(shared_data), str(out), "--lang", "zh", "--limit", "40"]) == 0
    return out


def overrides(corpus: Path, **changes) -> dict:
    # batches of 600+ words: the 40 docs make two or three per epoch, so the steps cross epochs
    values = {"paths.train": str(corpus / "train.spacy"), "paths.dev": str(corpus / "dev.spacy"),
              "training.max_steps": STEPS, "training.eval_frequency": EVAL, "training.batcher.size.start": 600}
    values.update(changes)
    return values


def weights(model_dir: Path) -> dict:
    """Every component's serialised model, byte for byte."""
    return {path.parent.name: path.read_bytes() for path in sorted(model_dir.glob("*/model"))}


def scores(output: Path) -> list:
    """The evaluations the benchmark logger wrote, without their timings."""
    records = [json.loads(line) for line in (output / "log.jsonl").read_text().splitlines()]
    for record in records:
        del record["seconds"], record["scores"]["speed"]
    return records



def config_for(corpus: Path, output: Path, **changes):
    values = overrides(corpus, **changes)
    config = load_config(CONFIG, overrides=values, interpolate=False)
    config["training"]["logger"] = {"@loggers": "spacy_egp.ThroughputLogger.v1", "log_path": str(output / "log.jsonl")}
    return config


def test_an_uninterrupted_run_is_spacy_train_step_for_step(corpus, tmp_path):
    spacy_train(CONFIG, tmp_path / "spacy", overrides=overrides(corpus))
    outcome = train(config_for(corpus, tmp_path / "egp"), tmp_path / "egp")
    assert outcome.finished and outcome.last_step == STEPS
    assert weights(tmp_path / "egp" / "model-last") == weights(tmp_path / "spacy" / "model-last")
    assert weights(tmp_path / "egp" / "model-best") == weights(tmp_path / "spacy" / "model-best")
    assert not (tmp_path / "egp" / CHECKPOINT).exists()
    assert [s["finished"] for s in json.loads((tmp_path / "egp" / SESSIONS).read_text())] == [True]


def test_a_paused_run_resumes_to_the_weights_of_an_uninterrupted_one(corpus, tmp_path):
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    train(config_for(corpus, whole), whole)
    # pauses that fall between checkpoints and inside epochs; each call is a fresh pipeline with new object ids
    for stop_after in (2, 4):
        outcome = train(config_for(corpus, parts), parts, checkpoint_every=EVAL, stop_after_steps=stop_after)
        assert not outcome.finished and (parts / CHECKPOINT).exists()
    outcome = train(config_for(corpus, parts), parts)
    assert outcome.finished and outcome.last_step == STEPS and not (parts / CHECKPOINT).exists()
    assert weights(parts / "model-last") == weights(whole / "model-last")
    assert weights(parts / "model-best") == weights(whole / "model-best")
    assert scores(parts) == scores(whole)
    assert scores(whole)[-1]["epoch"] >= 2
    sessions = json.loads((parts / SESSIONS).read_text())
    assert [(s["first_step"], s["last_step"], s["finished"]) for s in sessions] == [
        (0, 1, False), (2, 5, False), (6, STEPS, True)]


def test_a_killed_call_counts_its_steps_up_to_its_checkpoint(corpus, tmp_path):
    """A call killed after its checkpoint writes no line: the resuming call adds one from the checkpoint's time."""
    output = tmp_path / "run"
    train(config_for(corpus, output), output, checkpoint_every=EVAL, stop_after_steps=4)
    (paused,) = json.loads((output / SESSIONS).read_text())
    (output / SESSIONS).write_text("[]")  # as a call killed right after that checkpoint leaves it
    assert train(config_for(corpus, output), output).finished
    killed, resumed = json.loads((output / SESSIONS).read_text())
    assert (killed["first_step"], killed["last_step"], killed["killed"]) == (0, 3, True)
    assert 0 < killed["wall_seconds"] <= paused["wall_seconds"]
    assert killed["checkpoint_seconds"] == paused["checkpoint_seconds"] == pytest.approx(killed["wall_seconds"], abs=0.1)
    assert (resumed["first_step"], resumed["last_step"], resumed["finished"]) == (4, STEPS, True)
    assert "killed" not in resumed
    assert total_wall_seconds(output) == killed["wall_seconds"] + resumed["wall_seconds"]


def test_a_checkpoint_of_another_config_is_refused_until_restart(corpus, tmp_path):
    output = tmp_path / "run"
    train(config_for(corpus, output), output, stop_after_steps=1)
    changed = config_for(corpus, output, **{"training.dropout": 0.2})
    with pytest.raises(CheckpointError, match="different config"):
        train(changed, output)
    assert (output / CHECKPOINT).exists()  # nothing lost
    outcome = train(changed, output, restart=True, stop_after_steps=1)
    assert outcome.last_step == 0


def test_the_command_pauses_resumes_and_names_bad_options(corpus, tmp_path, capsys):
    output = tmp_path / "cli"
    args = [str(CONFIG), "--output", str(output), "--paths.train", str(corpus / "train.spacy"),
            "--paths.dev", str(corpus / "dev.spacy"), "--training.max_steps", "3", "--training.eval_frequency", "2"]
    assert egp_train(args + ["--stop-after-steps", "2"]) == 0
    assert "Paused after step 1" in capsys.readouterr().err
    assert egp_train(args + ["--training.dropout", "0.3"]) == 2
    assert "different config" in capsys.readouterr().err
    assert egp_train(args) == 0
    assert "Finished at step 3" in capsys.readouterr().err
    assert egp_train(args + ["--checkpoint-every", "0"]) == 2
    assert "--checkpoint-every must be a positive number" in capsys.readouterr().err


def test_a_paused_transformer_run_resumes_to_the_same_weights(shared_data, tmp_path):
    """MiniLM through a TransformerListener: the torch weights, their Adam moments and torch's random state."""
    from test_training import minilm_path

    corpus = tmp_path / "genia"
    assert convert(["dataset", "genia_small", str(shared_data), str(corpus), "--lang", "en", "--limit", "12"]) == 0
    values = {"paths.train": str(corpus / "train.spacy"), "paths.dev": str(corpus / "dev.spacy"),
              "paths.transformer": minilm_path(), "training.max_steps": 4, "training.eval_frequency": 2,
              "training.batcher.size": 4, "training.dropout": 0.2}
    config = load_config(REPO / "configs" / "genia_small_trf_offline.cfg", overrides=values, interpolate=False)
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    train(config, whole)
    assert not train(config, parts, stop_after_steps=3).finished
    assert train(config, parts).finished
    ours, theirs = weights(parts / "model-last"), weights(whole / "model-last")
    assert ours["efficient_globalpointer"] == theirs["efficient_globalpointer"]
    # the transformer's file also holds its Hugging Face config, whose _name_or_path is a temporary folder
    ours, theirs = transformer_tensors(parts / "model-last"), transformer_tensors(whole / "model-last")
    assert len(ours) > 100 and ours.keys() == theirs.keys()
    assert all(torch.equal(ours[name], theirs[name]) for name in ours)


def transformer_tensors(model_dir: Path) -> dict:
    """The torch state dict of the pipeline's transformer."""
    model = spacy.load(model_dir).get_pipe("transformer").model
    (shim,) = [shim for node in model.walk() for shim in node.shims]
    return shim._model.state_dict()

"""python -m spacy_egp.tune on a small trained gplinker: entity thresholds, then one relation threshold per type."""

import json
from pathlib import Path
from typing import Dict, List

import pytest
import spacy
from spacy.tokens import DocBin
from spacy.training import Example

from conftest import train
from spacy_egp.cli.convert import main as convert_main
from spacy_egp.pipeline.gplinker import relations_score
from spacy_egp.cli.tune import main
from spacy_egp.pipeline.thresholds import LabelTuning, TuneError, tune_relation_thresholds, tune_thresholds

SMALL_TOK2VEC = {
    "@architectures": "spacy.HashEmbedCNN.v2", "width": 64, "depth": 2, "embed_size": 2000,
    "window_size": 1, "maxout_pieces": 3, "subword_features": True, "pretrained_vectors": None,
}


def conll04_examples(nlp, shared_data: Path, folder: Path, split: str, limit: int) -> List[Example]:
    path = folder / f"{split}{limit}.spacy"
    assert convert_main(["conll04", str(shared_data / "conll04" / f"{split}.json"), str(path), "--lang", "en",
                         "--limit", str(limit)]) == 0
    return [Example(nlp.make_doc(doc.text), doc) for doc in DocBin().from_disk(path).get_docs(nlp.vocab)]


@pytest.fixture(scope="module")
def trained(shared_data, tmp_path_factory):
    """A gplinker (EGP pair pointers) trained for 12 epochs on 150 CoNLL04 training sentences; 60 dev sentences."""
    folder = tmp_path_factory.mktemp("tune_gplinker")
    spacy.util.fix_random_seed(0)
    nlp = spacy.blank("en")
    nlp.add_pipe("gplinker", config={"model": {"tok2vec": SMALL_TOK2VEC, "head_size": 32, "pair_head_size": 32,
                                               "max_span_length": 16}})
    train(nlp, conll04_examples(nlp, shared_data, folder, "train", 150), n_epochs=12, learn_rate=0.003)
    nlp.to_disk(folder / "model")
    conll04_examples(nlp, shared_data, folder, "dev", 60)
    return folder


def dev_examples(nlp, folder: Path) -> List[Example]:
    return [Example(nlp.make_doc(doc.text), doc) for doc in DocBin().from_disk(folder / "dev60.spacy").get_docs(nlp.vocab)]


def pipeline_scores(nlp, examples: List[Example]) -> Dict:
    predicted = [Example(doc, eg.reference) for doc, eg in zip(nlp.pipe(eg.reference.text for eg in examples), examples)]
    return relations_score(predicted, spans_key="sc")


def test_relation_thresholds_give_the_counted_f1_and_beat_other_thresholds(trained):
    nlp = spacy.load(trained / "model")
    pipe = nlp.get_pipe("gplinker")
    examples = dev_examples(nlp, trained)
    tune_thresholds(nlp, examples)
    before = pipeline_scores(nlp, examples)
    report: Dict[str, LabelTuning] = {}
    thresholds = tune_relation_thresholds(nlp, examples, report=report)
    assert set(thresholds) == set(pipe.relation_labels) == set(pipe.cfg["relation_thresholds"])
    assert nlp.get_pipe_config("gplinker")["relation_thresholds"] == pipe.cfg["relation_thresholds"]
    after = pipeline_scores(nlp, examples)
    per_type = after["relations_per_type"]
    for label, result in report.items():
        if not result.n_gold:
            continue
        # the search's counts are exactly what the pipeline then predicts (strict, as the scorer counts)
        counted = per_type.get(label, {"f": 0.0})["f"]
        assert result.f1_after == pytest.approx(counted, abs=1e-9), label
        assert result.f1_after >= result.f1_before
    assert after["relations_f"] >= before["relations_f"] - 1e-9
    assert after["relations_f"] > 0.05, after  # the model learned something to tune
    # no single other threshold for one type does better on dev than its tuned one
    tuned = dict(pipe.cfg["relation_thresholds"])
    for label in [label for label, r in report.items() if r.n_gold][:2]:
        for other in (0.2, 0.5, 0.8):
            pipe.cfg["relation_thresholds"] = {**tuned, label: other}
            score = pipeline_scores(nlp, examples)["relations_per_type"].get(label, {"f": 0.0})["f"]
            assert score <= report[label].f1_after + 1e-9, (label, other)
    pipe.cfg["relation_thresholds"] = tuned


def test_cli_tunes_a_gplinker_and_spacy_load_uses_the_thresholds(trained, capsys):
    output = trained / "tuned"
    assert main([str(trained / "model"), str(trained / "dev60.spacy"), "--output", str(output)]) == 0
    out = capsys.readouterr().out
    assert "span F1" in out and "strict relation F1" in out and "relation_thresholds = {" in out
    nlp = spacy.load(output)
    pipe = nlp.get_pipe("gplinker")
    assert set(pipe.cfg["relation_thresholds"]) <= set(pipe.relation_labels) and pipe.cfg["relation_thresholds"]
    config = spacy.util.load_config(output / "config.cfg")
    # config.cfg and the cfg file round the floats (10 and ~15 digits)
    saved = json.loads((output / "gplinker" / "cfg").read_text())["relation_thresholds"]
    for thresholds in (config["components"]["gplinker"]["relation_thresholds"], saved):
        assert thresholds == pytest.approx(pipe.cfg["relation_thresholds"], rel=1e-8)


def test_relation_tuning_needs_a_gplinker_and_relations(trained):
    nlp = spacy.load(trained / "model")
    examples = [Example(nlp.make_doc("a b"), nlp.make_doc("a b"))]
    with pytest.raises(TuneError, match="no example has relations"):
        tune_relation_thresholds(nlp, examples)
    other = spacy.blank("en")
    other.add_pipe("efficient_globalpointer")
    with pytest.raises(TuneError, match="gplinker"):
        tune_relation_thresholds(other, examples)


def test_diagnosis_tunes_a_gplinker_on_dev(trained):
    """benchmark relations-diagnosis on a gplinker: its entity and relation thresholds tuned on dev, then test."""
    from spacy_egp.benchmark.relations_diagnosis import diagnose_pipeline

    dev = trained / "dev60.spacy"
    row = diagnose_pipeline(trained / "model", dev, dev)
    assert row["max_pair_distance"] == spacy.load(trained / "model").get_pipe("gplinker").max_pair_distance
    assert row["test_relations_f"] > 0
    assert row["dev_tuned"]["f"] >= row["dev_untuned"]["f"] and row["dev_tuned"] == row["test_tuned"]
    assert row["test_tuned"]["f"] >= row["test_relations_f"]  # entity and relation thresholds tuned on these docs

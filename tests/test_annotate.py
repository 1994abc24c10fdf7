"""python -m spacy_egp.annotate: both engines, bad records, refusal, Parquet, the command line."""

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Dict, List

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import spacy
from spacy.tokens import Doc, Span

from conftest import nested_examples, one_ray_at_a_time, train
from spacy_egp.cli.annotate import main
from spacy_egp.data.annotate import AnnotateError, Settings, annotate, relation_records, spans_fields
from test_component import small_pipeline

SETTINGS = Settings(max_chars=300, batch_size=8)
N_GOOD = 24


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A small pipeline trained briefly on the synthetic nested corpus: it predicts some spans."""
    nlp = small_pipeline()
    train(nlp, nested_examples(nlp, 40, seed=1), n_epochs=6)
    path = tmp_path_factory.mktemp("annotate") / "model"
    nlp.to_disk(path)
    return str(path)


@pytest.fixture(scope="module")
def texts() -> List[str]:
    nlp = spacy.blank("en")
    return [eg.predicted.text for eg in nested_examples(nlp, N_GOOD, seed=5)]


@pytest.fixture(scope="module")
def ray_session() -> Any:
    """One local Ray for the module (annotate reuses a running Ray instead of starting its own)."""
    import ray

    with one_ray_at_a_time():
        ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False)
        yield ray
        ray.shutdown()


def write_corpus(path: Path, texts: List[str]) -> Dict[int, str]:
    """A JSONL corpus: the good records, then one bad record of each kind; RETURNS {line: expected reason}."""
    # U+2028 is valid unescaped in JSON, and a line break to str.splitlines: it must not split a record.
    texts = [text + "\u2028" if i == 2 else text for i, text in enumerate(texts)]
    lines = [json.dumps({"id": f"doc{i}", "text": text, "meta": {"n": i, "tags": ["a", "b"]}}, ensure_ascii=False)
             for i, text in enumerate(texts)]
    bad = {
        "{not json": "not valid JSON",
        json.dumps({"id": "no-text"}): "missing text field 'text'",
        json.dumps({"id": "null-text", "text": None}): "the text is null",
        json.dumps({"id": "number", "text": 5}): "the text must be a string, got int",
        json.dumps({"id": "long", "text": "x" * 301}): "more than --max-chars 300",
        json.dumps({"text": "no id"}): "missing id field 'id'",
        json.dumps({"id": "doc0", "text": "again"}): "duplicate id: already written from line 1",
        json.dumps([1, 2]): "expected an object",
        b"\xff\xfe".decode("latin-1"): "not valid JSON",
    }
    expected = {}
    for line, reason in bad.items():
        lines.append(line)
        expected[len(lines)] = reason
    lines.insert(3, "")  # a blank line is not a record
    expected = {number + 1 if number > 3 else number: reason for number, reason in expected.items()}
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return expected


def read_jsonl(path: Path) -> List[Dict[str, Any]]:
    # split("\n"), not splitlines(): a text may hold U+2028
    return [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line]


def assert_same_annotations(records: List[Dict[str, Any]], expected: List[Dict[str, Any]]) -> None:
    """The same records and spans; scores may differ in float32's last bit (the engines batch and thread
    differently), never more."""
    def without_scores(rows):
        return [{**row, "spans": [{**span, "score": None} for span in row["spans"]]} for row in rows]

    assert without_scores(records) == without_scores(expected)
    scores = [span["score"] for row in records for span in row["spans"]]
    assert scores == pytest.approx([span["score"] for row in expected for span in row["spans"]], abs=2e-6)


def test_both_engines_and_process_counts_give_the_same_records_and_errors(model, texts, ray_session, tmp_path):
    corpus = tmp_path / "in.jsonl"
    expected_errors = write_corpus(corpus, texts)
    local = annotate(model, corpus, tmp_path / "local.jsonl", settings=SETTINGS, progress=False)
    on_ray = annotate(model, corpus, tmp_path / "ray.jsonl", engine="ray", n_process=2, settings=SETTINGS,
                      progress=False)
    assert (local.records, local.errors) == (on_ray.records, on_ray.errors) == (N_GOOD, len(expected_errors))
    records = read_jsonl(tmp_path / "local.jsonl")
    assert [record["id"] for record in records] == [f"doc{i}" for i in range(N_GOOD)]
    assert_same_annotations(read_jsonl(tmp_path / "ray.jsonl"), records)  # same ids, order and spans
    annotate(model, corpus, tmp_path / "local2.jsonl", n_process=2, settings=SETTINGS, progress=False)
    assert_same_annotations(read_jsonl(tmp_path / "local2.jsonl"), records)
    assert sum(len(record["spans"]) for record in records) > N_GOOD  # the model does predict
    span = records[0]["spans"][0]
    assert set(span) == {"start", "end", "label", "score"} and 0.5 <= span["score"] <= 1
    assert records[0]["text"][span["start"]:span["end"]].strip()  # character offsets
    assert records[5]["meta"] == {"n": 5, "tags": ["a", "b"]}  # carried over unchanged
    assert records[2]["text"].endswith("\u2028")
    errors = read_jsonl(tmp_path / "local.jsonl.errors.jsonl")
    assert read_jsonl(tmp_path / "ray.jsonl.errors.jsonl") == errors
    assert {error["line"]: error["reason"] for error in errors}.keys() == expected_errors.keys()
    for error in errors:
        assert expected_errors[error["line"]] in error["reason"]
    assert {error["id"] for error in errors} >= {"no-text", "number", "long", "doc0", None}


def test_the_command_starts_and_stops_its_own_ray(model, texts, tmp_path):
    corpus = tmp_path / "in.jsonl"
    corpus.write_text("".join(json.dumps({"id": i, "text": text}) + "\n" for i, text in enumerate(texts[:6])))
    command = [sys.executable, "-m", "spacy_egp.annotate", model, str(corpus), str(tmp_path / "out.jsonl"),
               "--engine", "ray", "--n-process", "2", "--batch-size", "2"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert [record["id"] for record in read_jsonl(tmp_path / "out.jsonl")] == list(range(6))
    assert "6 records" in done.stderr and "docs/s" in done.stderr


def test_ray_reads_and_writes_parquet(model, texts, ray_session, tmp_path):
    table = pa.table({"id": [f"p{i}" for i in range(len(texts))], "text": texts,
                      "source": ["web"] * len(texts), "n": list(range(len(texts))),
                      "tags": [["x", str(i)] for i in range(len(texts))]})
    pq.write_table(table, tmp_path / "in.parquet")
    annotate(model, tmp_path / "in.parquet", tmp_path / "local.parquet", settings=SETTINGS, progress=False)
    summary = annotate(model, tmp_path / "in.parquet", tmp_path / "ray.parquet", engine="ray", n_process=1,
                       settings=SETTINGS, progress=False)
    assert (summary.records, summary.errors) == (len(texts), 0)
    local, on_ray = pq.read_table(tmp_path / "local.parquet"), pq.read_table(tmp_path / "ray.parquet")
    assert on_ray.drop_columns(["spans"]).equals(local.drop_columns(["spans"]))
    assert_same_annotations(on_ray.to_pylist(), local.to_pylist())
    assert local.select(["id", "text", "source", "n", "tags"]).equals(table)  # carried over, types kept
    assert local.schema.field("spans").type.value_type.names == ["start", "end", "label", "score"]
    assert sum(len(spans) for spans in local.column("spans").to_pylist()) > 0


def test_jsonl_to_parquet_and_back(model, texts, tmp_path):
    corpus = tmp_path / "in.jsonl"
    write_corpus(corpus, texts)
    annotate(model, corpus, tmp_path / "out.parquet", settings=SETTINGS, progress=False)
    annotate(model, corpus, tmp_path / "out.jsonl", settings=SETTINGS, progress=False)
    assert pq.read_table(tmp_path / "out.parquet").to_pylist() == read_jsonl(tmp_path / "out.jsonl")


def test_existing_output_is_refused_unless_overwrite(model, texts, tmp_path, capsys):
    corpus, output = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_corpus(corpus, texts)
    args = [model, str(corpus), str(output), "--max-chars", "300", "--no-progress"]
    assert main(args) == 0
    first = output.read_text()
    assert main(args) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert output.read_text() == first
    assert main(args + ["--overwrite"]) == 0
    assert output.read_text() == first  # replaced, not appended
    assert sorted(path.name for path in tmp_path.iterdir()) == ["in.jsonl", "out.jsonl", "out.jsonl.errors.jsonl"]


def test_the_command_names_the_fix(model, tmp_path, capsys):
    corpus = tmp_path / "in.jsonl"
    corpus.write_text(json.dumps({"id": 1, "text": "big red dog"}) + "\n")
    cases = [
        ([str(tmp_path / "no-model"), str(corpus), str(tmp_path / "a.jsonl")], "Cannot load the pipeline"),
        ([model, str(tmp_path / "missing.jsonl"), str(tmp_path / "b.jsonl")], "no such file"),
        ([model, str(corpus), str(tmp_path / "c.csv")], "unknown extension '.csv'"),
    ]
    (tmp_path / "broken.parquet").write_bytes(b"not parquet")
    cases.append(([model, str(tmp_path / "broken.parquet"), str(tmp_path / "d.jsonl")], "not a readable Parquet"))
    for args, message in cases:
        assert main(args) == 2
        assert message in capsys.readouterr().err
    command = [sys.executable, "-m", "spacy_egp.annotate", str(tmp_path / "no-model"), str(corpus),
               str(tmp_path / "e.jsonl")]
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 2 and "error: Cannot load the pipeline" in done.stderr
    assert "Traceback" not in done.stderr


def test_several_spans_keys_get_one_field_each():
    nlp = spacy.blank("en")
    nlp.add_pipe("efficient_globalpointer", name="a", config={"spans_key": "people"})
    nlp.add_pipe("efficient_globalpointer", name="b", config={"spans_key": "places"})
    assert spans_fields(nlp, "spans") == {"people": "spans_people", "places": "spans_places"}
    with pytest.raises(AnnotateError, match="no efficient_globalpointer"):
        spans_fields(spacy.blank("en"), "spans")


def test_relations_are_written_whatever_their_record_type():
    doc = Doc(spacy.blank("en").vocab, words=["Ann", "lives", "in", "Paris"])
    head, tail = Span(doc, 0, 1, "PER"), Span(doc, 3, 4, "LOC")
    relations = [SimpleNamespace(head=head, label="lives_in", tail=tail, score=0.9),
                 {"head": head, "label": "near", "tail": tail, "score": 0.6}, (head, "x", tail, 0.7)]
    records = relation_records(SimpleNamespace(_=SimpleNamespace(relations=relations)))
    assert records[0] == {"head": {"start": 0, "end": 3, "label": "PER"}, "label": "lives_in",
                          "tail": {"start": 13, "end": 18, "label": "LOC"}, "score": 0.9}
    assert [record["label"] for record in records] == ["lives_in", "near", "x"]


def test_gplinker_relations_are_written():
    nlp = spacy.blank("en")
    nlp.add_pipe("gplinker", config={"spans_key": "ents"})
    assert spans_fields(nlp, "spans") == {"ents": "spans"} and Doc.has_extension("relations")
    doc = nlp.make_doc("Ann lives in Paris")
    doc._.relations = [(Span(doc, 0, 1, "PER"), "lives_in", Span(doc, 3, 4, "LOC"), 0.75)]
    assert relation_records(doc) == [{"head": {"start": 0, "end": 3, "label": "PER"}, "label": "lives_in",
                                      "tail": {"start": 13, "end": 18, "label": "LOC"}, "score": 0.75}]


def test_benchmark_table_is_generated_from_the_figures():
    from spacy_egp.benchmark.annotation import format_markdown, scaling

    runs = [{"engine": engine, "workers": workers, "records": 100, "seconds": 1.0, "docs_per_s": rate,
             "words_per_s": 10 * rate, "same_spans_as_local_1": True}
            for engine, workers, rate in [("local", 1, 100.0), ("local", 2, 150.0), ("ray", 1, 50.0), ("ray", 2, 100.0)]]
    assert scaling(runs, "local", "docs_per_s") == 0.75 and scaling(runs, "ray", "docs_per_s") == 1.0
    results = {"command": "python -m spacy_egp.benchmark.annotation", "input": "CLUENER dev x 1", "model": "m",
               "batch_size": 256, "machine": {"cpu_cores": 2, "load_average_before": 1.0}, "runs": runs,
               "ray_startup_seconds": {1: 9.5, 2: 11.0},
               "scaling_efficiency": {"local": 0.75, "ray": 1.0, "ray_without_startup": None}}
    table = format_markdown(results)
    assert "| local | 2 | 100 | 1.0 | 150 | 1,500 |  | yes |" in table
    assert "local 0.75, Ray 1.0" in table and "9.5 s with 1 actor(s)" in table
    assert "killed" not in table and "--resume" not in table  # results without those runs: no empty tables
    results.update(local_worker_startup_seconds={"forkserver": 3.0, "spawn": 4.25, "fork": 1.5},
                   killed_worker=[{"engine": "local", "killed_after_records": 50, "records": 100, "seconds": 3.0,
                                   "extra_seconds": 2.0, "exactly_once": True},
                                  {"engine": "ray", "killed_after_records": None, "records": 100, "seconds": 1.0,
                                   "extra_seconds": 0.0, "exactly_once": False}],
                   resume=[{"done_before": 100, "resumed": 100, "records": 0, "seconds": 0.5, "exactly_once": True}])
    table = format_markdown(results)
    assert "3.0 s with forkserver (what it uses), 4.2 s with spawn, 1.5 s with fork" in table
    assert "| local | 50 records | 100 | 3.0 | +2.0 | yes |" in table
    assert "| ray | not killed | 100 | 1.0 | +0.0 | NO |" in table
    assert "| 100 | 100 | 0 | 0.5 | yes |" in table


def test_benchmark_input_and_untrained_pipeline(shared_data, tmp_path):
    from spacy_egp.benchmark.annotation import build_corpus, read_texts, untrained_pipeline

    records = read_texts(shared_data / "cluener" / "dev.json")
    assert len(records) == 1343
    assert build_corpus(records, 2, tmp_path / "corpus.jsonl") == 2686
    ids = [record["id"] for record in read_jsonl(tmp_path / "corpus.jsonl")]
    assert len(set(ids)) == 2686
    nlp = spacy.load(untrained_pipeline(records, tmp_path / "model"))
    assert nlp.pipe_names == ["efficient_globalpointer"] and len(nlp.get_pipe("efficient_globalpointer").labels) == 10


def test_benchmark_names_the_model_it_timed_from_its_config(tmp_path):
    from spacy_egp.benchmark.annotation import describe_model

    nlp = spacy.blank("en")
    context = {"@architectures": "spacy.TorchBiLSTMEncoder.v1", "width": 32, "depth": 1, "dropout": 0.0}
    nlp.add_pipe("efficient_globalpointer", name="ents", config={"model": {
        "@architectures": "spacy_egp.EfficientGlobalPointer.v2", "head_size": 16, "context": context,
        "tok2vec": {"@architectures": "spacy.HashEmbedCNN.v2", "width": 32, "depth": 1, "embed_size": 500,
                    "window_size": 1, "maxout_pieces": 2, "subword_features": True, "pretrained_vectors": None}}})
    nlp.to_disk(tmp_path / "model")
    description = describe_model(str(tmp_path / "model"))
    assert description.startswith(str(tmp_path / "model"))
    assert "ents: spacy_egp.EfficientGlobalPointer.v2, tok2vec encoder spacy.HashEmbedCNN.v2" in description
    assert "context layer spacy.TorchBiLSTMEncoder.v1" in description

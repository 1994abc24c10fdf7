"""The benchmark's fairness, metrics and report, and one tiny end-to-end comparison."""

import json
import subprocess
import sys

import pytest
import spacy
from spacy.tokens import Doc, DocBin, Span
from spacy.training import Example
from thinc.api import Config

from conftest import REPO
from spacy_egp.benchmark.evaluation import nested_spans, prf
from spacy_egp.benchmark.params import head_parameters
from spacy_egp.benchmark.pipelines import PIPELINES, flat_ents, pipeline_config, suggester_max_length
from spacy_egp.benchmark.report import format_dataset_table, format_targets, write_report
from spacy_egp.ml.heads import egp_parameter_count, gp_parameter_count

TEMPLATE = REPO / "configs" / "genia_small_cnn.cfg"


def configs():
    template = Config().from_disk(TEMPLATE, interpolate=False)
    return {name: pipeline_config(template, name, ngram_max=7, max_steps=123, eval_frequency=45, log_path="x.jsonl")
            for name in PIPELINES}


def test_every_pipeline_gets_the_same_tok2vec_seed_and_budget():
    resolved = {name: config.interpolate() for name, config in configs().items()}
    tok2vecs = []
    for name, config in resolved.items():
        component = config["components"][config["nlp"]["pipeline"][-1]]
        tok2vecs.append(component["model"]["tok2vec"])
        assert config["training"]["max_steps"] == 123 and config["training"]["patience"] == 0
        assert config["training"]["seed"] == 0 and config["training"]["max_epochs"] == 0
        assert config["training"]["optimizer"] == resolved["egp"]["training"]["optimizer"]
        assert config["training"]["batcher"] == resolved["egp"]["training"]["batcher"]
    assert all(t == tok2vecs[0] for t in tok2vecs)
    # the template's head context (a BiLSTM) is part of the shared tok2vec, so the heads are compared alike
    template = Config().from_disk(TEMPLATE).interpolate()["components"]["efficient_globalpointer"]["model"]
    assert tok2vecs[0] == {"@layers": "chain.v1", "*": {"tok2vec": template["tok2vec"], "context": template["context"]}}
    assert "context" not in resolved["egp"]["components"]["efficient_globalpointer"]["model"]
    assert resolved["spancat"]["components"]["spancat"]["suggester"]["max_size"] == 7
    assert resolved["gp"]["components"]["efficient_globalpointer"]["model"]["@architectures"] == "spacy_egp.GlobalPointer.v2"


def test_egp_reads_the_same_chain_with_the_context_shared():
    """Moving the context into the tok2vec leaves EGP's model as it was: same layers, same parameter count."""
    from spacy_egp.benchmark.evaluation import parameter_count

    def built(config):
        nlp = spacy.util.load_model_from_config(config, auto_fill=True, validate=True)
        doc = nlp.make_doc("IL-2 gene")
        nlp.initialize(lambda: [Example.from_dict(doc, {"spans": {"sc": [(0, 9, "DNA")]}})])
        return nlp.get_pipe("efficient_globalpointer").model

    template = Config().from_disk(TEMPLATE, interpolate=False)
    template["initialize"]["components"] = {}
    generated = pipeline_config(template, "egp", ngram_max=7, max_steps=1, eval_frequency=1, log_path="x.jsonl")
    own, shared = built(template), built(generated)
    assert parameter_count(own) == parameter_count(shared) > 0
    assert own.get_ref("context").name == shared.get_ref("tok2vec").layers[-1].name


@pytest.mark.parametrize("name", PIPELINES)
def test_generated_configs_build_a_pipeline(name):
    nlp = spacy.util.load_model_from_config(configs()[name], auto_fill=True, validate=True)
    assert nlp.pipe_names == [configs()[name]["nlp"]["pipeline"][-1]]
    # model-best is picked on the F of what the component writes: its spans_key, or doc.ents for ner
    component = nlp.config["components"][nlp.pipe_names[0]]
    main = "ents_f" if name == "ner" else f"spans_{component['spans_key']}_f"
    weighted = {key for key, weight in nlp.config["training"]["score_weights"].items() if weight}
    assert weighted == {main}


def test_no_context_rows_read_the_template_tok2vec_alone_and_need_a_context_to_leave_out():
    template = Config().from_disk(TEMPLATE, interpolate=False)
    own_tok2vec = Config().from_disk(TEMPLATE).interpolate()["components"]["efficient_globalpointer"]["model"]["tok2vec"]
    for name in ("spancat", "ner"):
        config = pipeline_config(template, f"{name}-no-context", ngram_max=7, max_steps=123, eval_frequency=45,
                                 log_path="x")
        assert config["nlp"]["pipeline"] == [name] and config["components"][name]["factory"] == name
        assert config.interpolate()["components"][name]["model"]["tok2vec"] == own_tok2vec
        like_for_like = configs()[name].interpolate()["components"][name]["model"]["tok2vec"]
        assert like_for_like["@layers"] == "chain.v1"
        spacy.util.load_model_from_config(config, auto_fill=True, validate=True)
    trf = Config().from_disk(REPO / "configs" / "genia_small_trf_offline.cfg", interpolate=False)
    with pytest.raises(ValueError, match="has none: use 'ner'"):
        pipeline_config(trf, "ner-no-context", ngram_max=7, max_steps=1, eval_frequency=1, log_path="x")
    with pytest.raises(ValueError, match="unknown pipeline"):
        pipeline_config(template, "crf", ngram_max=7, max_steps=1, eval_frequency=1, log_path="x")


def test_a_baseline_head_scale_builds_the_scaled_spacy_heads_and_leaves_egp_and_gp_alone():
    template = Config().from_disk(REPO / "configs" / "cluener_trf_offline.cfg", interpolate=False)

    def config(name, scale):
        return pipeline_config(template, name, ngram_max=7, max_steps=1344, eval_frequency=336, log_path="x",
                               baseline_head_lr_scale=scale)

    for name, factory in (("spancat", "bench_scaled_spancat"), ("ner", "bench_scaled_ner")):
        scaled = config(name, 20.0)
        assert scaled["components"][name]["factory"] == factory
        assert scaled["components"][name]["head_lr_scale"] == 20.0
        nlp = spacy.util.load_model_from_config(scaled, auto_fill=True, validate=True)
        assert nlp.get_pipe(name).head_lr_scale == 20.0
        assert config(name, 1.0)["components"][name]["factory"] == name
    for name in ("egp", "gp"):
        assert config(name, 20.0).to_str() == config(name, 1.0).to_str()


def test_a_transformer_schedule_in_numbers_ends_at_the_benchmark_budget():
    """cluener_trf_offline.cfg decays over 6,720 steps (10 epochs) after 672 of warm-up; 2 epochs: 1,344 and 134."""
    template = Config().from_disk(REPO / "configs" / "cluener_trf_offline.cfg", interpolate=False)
    written = template["training"]["optimizer"]["learn_rate"]
    for name in PIPELINES:
        config = pipeline_config(template, name, ngram_max=7, max_steps=1344, eval_frequency=336, log_path="x")
        rate = config["training"]["optimizer"]["learn_rate"]
        assert rate["total_steps"] == 1344 and config["training"]["max_steps"] == 1344
        assert rate["warmup_steps"] == round(1344 * written["warmup_steps"] / written["total_steps"]) == 134
        assert rate["initial_rate"] == written["initial_rate"]
    assert template["training"]["optimizer"]["learn_rate"] == written  # the template itself is untouched


def test_suggester_covers_the_requested_share_of_span_lengths():
    nlp = spacy.blank("en")
    doc = Doc(nlp.vocab, words=["w"] * 30)
    lengths = [1] * 90 + [2] * 5 + [3] * 4 + [9]  # 99 % have length <= 3
    doc.spans["sc"] = [Span(doc, 0, n, "X") for n in lengths]
    assert suggester_max_length([doc], coverage=0.99) == 3
    assert suggester_max_length([doc], coverage=0.995) == 9
    assert suggester_max_length([doc], coverage=0.9) == 1


def test_flat_ents_keeps_a_non_overlapping_selection_longest_first():
    nlp = spacy.blank("en")
    doc = Doc(nlp.vocab, words="a b c d e f".split())
    doc.spans["sc"] = [Span(doc, 0, 3, "A"), Span(doc, 1, 2, "B"), Span(doc, 2, 5, "C"), Span(doc, 5, 6, "D")]
    assert [(e.start, e.end, e.label_) for e in flat_ents(doc).ents] == [(0, 3, "A"), (5, 6, "D")]


def test_nested_scores_by_hand():
    gold = {(0, 0, 10, "A"), (0, 2, 5, "B"), (0, 20, 25, "C"), (1, 0, 3, "A")}
    pred = {(0, 0, 10, "A"), (0, 2, 5, "X"), (0, 20, 25, "C"), (1, 0, 3, "A"), (1, 0, 9, "B")}
    assert nested_spans(gold) == {(0, 0, 10, "A"), (0, 2, 5, "B")}
    assert nested_spans(pred) == {(0, 0, 10, "A"), (0, 2, 5, "X"), (1, 0, 3, "A"), (1, 0, 9, "B")}
    scores = prf(nested_spans(gold), nested_spans(pred), gold_all=gold)
    assert scores["r"] == pytest.approx(1 / 2)  # B was labelled X
    assert scores["p"] == pytest.approx(2 / 4)  # (0,0,10,A) and (1,0,3,A) are gold spans
    overall = prf(gold, pred)
    assert (overall["p"], overall["r"]) == pytest.approx((3 / 5, 3 / 4))


def test_head_parameters_are_counted_on_built_heads_and_match_the_closed_forms():
    for row in head_parameters(width=48, head_size=8, label_counts=[3, 10]):
        assert row["egp"] == egp_parameter_count(48, 8, row["labels"])
        assert row["gp"] == gp_parameter_count(48, 8, row["labels"])


def test_tiny_comparison_end_to_end(shared_data, tmp_path):
    """Four pipelines trained for a few steps on 40 GENIA sentences; the report is generated from them."""
    from spacy_egp.cli.convert import main as convert

    corpus = tmp_path / "corpus"
    assert convert(["dataset", "genia_small", str(shared_data), str(corpus), "--lang", "en", "--limit", "40"]) == 0
    results_dir = tmp_path / "results"
    command = [sys.executable, "-m", "spacy_egp.benchmark", "compare", "tiny", "--template", str(TEMPLATE),
               "--corpus", str(corpus), "--output", str(results_dir / "tiny"), "--max-steps", "4",
               "--eval-frequency", "2", "--jobs", "2", "--batch-size", "8"]
    run = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    results = json.loads((results_dir / "tiny" / "results.json").read_text())
    assert [row["pipeline"] for row in results["rows"]] == ["egp", "egp-tuned", "gp", "spancat", "ner"]
    n_test = len(DocBin().from_disk(corpus / "test.spacy"))
    for row in results["rows"]:
        assert row["test_docs"] == n_test and row["train_steps"] == 4
        assert 0 <= row["test_f"] <= 1 and row["inference_words_per_second"] > 0
        assert row["train_peak_rss_mb"] > 100 and row["inference_peak_rss_mb"] > 100
    heads = {row["pipeline"]: row["head_parameters"] for row in results["rows"]}
    n_labels, width = 5, 96
    # the template's context layer is part of the shared tok2vec: the heads are the pointers alone
    assert heads["egp"] == egp_parameter_count(width, 64, n_labels)
    assert heads["gp"] == gp_parameter_count(width, 64, n_labels)
    assert "| EGP, tuned thresholds |" in format_dataset_table(results)
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- results:start (generated by python -m spacy_egp.benchmark report) -->\nold\n<!-- results:end -->\nrest\n")
    write_report(results_dir, readme)
    text = readme.read_text()
    assert "\nold\n" not in text and text.startswith("intro") and text.rstrip().endswith("rest")
    assert "| spaCy spancat |" in text and "results/f1.png" in text
    assert (results_dir / "f1.png").stat().st_size > 1000 and (results_dir / "README.md").exists()

    # resume: the same command finds every part done with the same config and trains nothing
    again = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "training " not in again.stdout and again.stdout.count("skipped") == 4
    assert json.loads((results_dir / "tiny" / "results.json").read_text())["rows"] == results["rows"]
    # a changed config retrains the selected pipeline; parts of other configs no longer merge in
    changed = command[:command.index("--eval-frequency")] + ["--eval-frequency", "4", "--pipelines", "egp"]
    rerun = subprocess.run(changed, capture_output=True, text=True, cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "training egp" in rerun.stdout and "skipped" not in rerun.stdout
    merged = json.loads((results_dir / "tiny" / "results.json").read_text())
    assert [row["pipeline"] for row in merged["rows"]] == ["egp", "egp-tuned"]
    part = json.loads((results_dir / "tiny" / "parts" / "egp.json").read_text())
    assert part["rows"] == merged["rows"] and len(part["config_sha256"]) == 64


def test_loss_memory_benchmark_compares_equal_losses():
    from spacy_egp.benchmark.long_docs import measure_update

    dense, sparse = measure_update(400, sparse_loss=False), measure_update(400, sparse_loss=True)
    assert dense["loss_value"] == pytest.approx(sparse["loss_value"], rel=1e-5)
    assert dense["peak_rss_mb"] > 0 and sparse["seconds"] > 0


def test_targets_compare_a_pretrained_encoders_egp_with_the_cnn_configs():
    """The transformer row's target is computed from both result files: +3 points over the CNN's EGP."""
    def results(tok2vec: str, dataset: str, f: float) -> dict:
        row = {"pipeline": "egp", "test_f": f, "head_share_of_inference": 0.1}
        return {"dataset": dataset, "tok2vec": tok2vec, "rows": [row]}

    table = format_targets([results("CNN", "genia_small", 0.6321), results("MiniLM", "genia_small", 0.6650),
                            results("MiniLM", "conll2003", 0.9)], [])
    line = next(line for line in table.splitlines() if "EGP (MiniLM) F1 ≥ EGP (CNN) F1 + 3" in line)
    assert line == "| EGP (MiniLM) F1 ≥ EGP (CNN) F1 + 3 | genia_small | +3.29 points | yes |"
    assert "conll2003" not in table.split("EGP (MiniLM)")[-1]  # no CNN run to compare with
    short = format_targets([results("CNN", "genia_small", 0.6321), results("MiniLM", "genia_small", 0.65)], [])
    assert "| +1.79 points | **no** |" in short
    me5s = results("me5s", "cluener", 0.70)
    me5s["rows"][0]["dev_best_score"] = 0.7512
    assert "| EGP (me5s) dev F1 ≥ 75 | cluener | 75.12 | yes |" in format_targets([me5s], [])
    me5s["rows"][0]["dev_best_score"] = 0.6543
    assert "| EGP (me5s) dev F1 ≥ 75 | cluener | 65.43 | **no** |" in format_targets([me5s], [])
    with_cnn = results("me5s+cnn", "cluener", 0.70)
    with_cnn["rows"][0]["dev_best_score"] = 0.7501
    assert "| EGP (me5s+cnn) dev F1 ≥ 75 | cluener | 75.01 | yes |" in format_targets([with_cnn], [])


def test_targets_hold_the_cpu_accuracy_issues_margins_and_absolute_rows():
    """spancat + 1, GP - 0.5, CLUENER's EGP >= 73.5 and CMeEE-5k's recall against spancat's, from the rows."""
    def row(name, f, r=0.5):
        return {"pipeline": name, "test_f": f, "test_r": r, "head_share_of_inference": 0.1,
                "inference_words_per_second": 1000.0}

    cluener = {"dataset": "cluener", "tok2vec": "CNN",
               "rows": [row("egp", 0.7404), row("spancat", 0.7310), row("gp", 0.7450), row("ner", 0.3968),
                        row("ner-no-context", 0.6950)]}
    table = format_targets([cluener], [])
    assert "| EGP F1 ≥ spaCy spancat F1 + 1 | cluener (CNN) | +0.94 points | **no** |" in table
    assert "| EGP F1 ≥ spaCy ner F1 + 5 | cluener (CNN) | +34.36 points | yes |" in table
    assert "| EGP F1 ≥ spaCy ner, no context layer F1 + 5 | cluener (CNN) | +4.54 points | **no** |" in table
    assert "| EGP F1 ≥ GP F1 − 0.5 | cluener (CNN) | -0.46 points | yes |" in table
    assert "| EGP F1 ≥ 73.5 | cluener (CNN) | 74.04 | yes |" in table
    cluener["rows"][0]["test_f"] = 0.7349
    assert "| EGP F1 ≥ 73.5 | cluener (CNN) | 73.49 | **no** |" in format_targets([cluener], [])
    cmeee = {"dataset": "cmeee5k", "tok2vec": "CNN", "rows": [row("egp", 0.5, r=0.48), row("spancat", 0.45, r=0.5)]}
    assert ("| EGP recall ≥ spaCy spancat recall (default threshold) | cmeee5k (CNN) | -2.00 points | **no** |"
            in format_targets([cmeee], []))
    assert "73.5" not in format_targets([cmeee], []) and "recall" not in table

@pytest.mark.parametrize("student_f, verdict", [(0.745, "met"), (0.735, "missed")])
def test_distillation_section_judges_the_student_against_gold_only_plus_two(tmp_path, student_f, verdict):
    """The generated section states the targets from the rows: F >= gold-only + 2 points, speed >= 0.9x."""
    from spacy_egp.benchmark.distillation import distillation_sections

    def row(name, f, speed, **extra):
        return dict(pipeline=name, model=f"models/{name}", test_p=f, test_r=f, test_f=f,
                    inference_words_per_second=speed, **extra)

    rows = [row("teacher", 0.80, 1500.0), row("gold-only", 0.72, 20000.0),
            row("student", student_f, 19000.0, train_wall_seconds=600.0, taught_bytes={"train": 3 * 2**20})]
    folder = tmp_path / "cluener-distill"
    folder.mkdir()
    (folder / "distillation.json").write_text(json.dumps(
        {"dataset": "cluener", "student_config": "configs/cluener_cnn.cfg", "floor": 0.05, "weight": 0.5,
         "overrides": [], "rows": rows}))
    heading, caption, table = distillation_sections(tmp_path)
    assert heading == "### cluener distillation: teacher → CNN student"
    assert f"({student_f * 100:.2f} vs 74.00: {verdict})" in caption
    assert "(0.95 ×: met)" in caption
    lines = table.splitlines()
    assert len(lines) == 2 + len(rows) and "| CNN student | " in lines[-1] and "train 3.0 MiB" in lines[-1]
    assert f"**{student_f * 100:.2f}**" in lines[-1] and "| 10 |" in lines[-1]


def _device_run(folder, pipeline, max_steps, scores, console="", test_f=None):
    """A compare run folder as device_run.sh leaves it: config, ThroughputLogger log, console, maybe a part."""
    for sub in ("configs", "logs"):
        (folder / sub).mkdir(parents=True)
    Config({"training": {"max_steps": max_steps}}).to_disk(folder / "configs" / f"{pipeline}.cfg")
    lines = [json.dumps({"step": step, "words": 100 * step, "seconds": 1 + step // 10, "score": score})
             for step, score in scores]
    (folder / "logs" / f"{pipeline}.jsonl").write_text("\n".join(lines) + "\n")
    (folder / "console.txt").write_text(console)
    if test_f is not None:
        (folder / "parts").mkdir()
        part = {"machine": {"gpu": "Test GPU"}, "rows": [{"pipeline": pipeline, "test_f": test_f}]}
        (folder / "parts" / f"{pipeline}.json").write_text(json.dumps(part))


def test_device_runs_report_how_far_each_got_beside_the_cpu_run(tmp_path):
    from spacy_egp.benchmark.device_report import device_sections

    device = tmp_path / "data-gpu"
    device.mkdir()
    (device / "device_run.sh").write_text("# trains the runs below at once\n")
    _device_run(device / "egp", "egp", 40, [(0, 0.0), (20, 0.5), (40, 0.6)], test_f=0.61)
    _device_run(device / "egp-mp", "egp", 80, [(0, 0.0), (20, 0.55), (40, 0.7), (60, 0.65)],
                console="spacy train x --components.transformer.model.mixed_precision true\n")
    _device_run(device / "gp", "gp", 40, [(0, 0.0), (20, 0.3)])
    _device_run(tmp_path / "data", "egp", 40, [(0, 0.0), (20, 0.4), (40, 0.58)], test_f=0.58)
    (tmp_path / "data" / "console.txt").unlink()

    title, caption, table = device_sections(tmp_path)
    assert title == "### On a GPU: data-gpu (Test GPU)" and "The 3 runs of `data-gpu/device_run.sh`" in caption
    rows = {line.split(" | ")[0].lstrip("| "): line.split(" | ") for line in table.splitlines()[2:]}
    assert "dev F @ 40 |" in table  # the last step every EGP run reached, the CPU one included
    assert rows["egp"][2:] == ["40 / 40", "no", "60.00 @ 40", "60.00", "1,000", "61.00 |"]  # (4,000 - 0) words in (5 - 1) s
    assert rows["egp-mp"][2:5] == ["60 / 80", "yes", "70.00 @ 40"] and rows["egp-mp"][-1] == "– |"
    assert rows["gp"][5] == "–"  # GP never reached step 40
    assert rows["egp on CPU (data)"][2:6] == ["40 / 40", "no", "58.00 @ 40", "58.00"]


def test_heldout_section_reads_spacys_metrics_and_the_levers_of_the_trained_config(tmp_path):
    from spacy_egp.benchmark.report import heldout_sections

    folder = tmp_path / "heldout" / "msra"
    folder.mkdir(parents=True)
    for split, (p, r) in {"dev": (0.9, 0.8), "test": (0.85, 0.75)}.items():
        metrics = {"spans_sc_p": p, "spans_sc_r": r, "spans_sc_f": 2 * p * r / (p + r)}
        (folder / f"{split}.json").write_text(json.dumps(metrics))
    config = Config({"training": {"max_steps": 2000, "optimizer": {"use_averages": True}},
                     "embed": {"segmenter": "jieba"}})
    config.to_disk(folder / "config.cfg")
    (tmp_path / "heldout" / "unfinished").mkdir()  # no metrics yet: left out
    title, table = heldout_sections(tmp_path)
    assert "evaluate-test" in title
    assert table.splitlines()[2:] == ["| msra | jieba words, averages | 2,000 | 90.00 | 80.00 | 84.71 | 85.00 | 75.00 | 79.69 |"]
    assert heldout_sections(tmp_path / "nothing") == []

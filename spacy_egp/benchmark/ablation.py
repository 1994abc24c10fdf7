"""Accuracy ablation: one change at a time against today's default EGP config.

Each lever edits the EGP template. With `pipeline` other than "egp", every
variant is then turned into that pipeline's config the way `benchmark compare`
does (pipelines.pipeline_config: same tok2vec, the head's context in the shared
tok2vec, ner trained and selected on the flat gold), so that a lever's effect
on spaCy's own heads is measured with the same code.

Every lever is a small function in `LEVERS` that edits a copy of the
(uninterpolated) template config. The reference row is either `baseline`
(the default before the accuracy levers, applied first to every variant)
or `shipped` (the template as it is, for levers on top of today's config);
each row differs from the reference row by exactly one lever (or, for
`combined`, by the levers named in it). Each variant is
trained by `spacy train` in its own process with the same seed, steps and
evaluation frequency; the dev scores are the ones spaCy's training loop
computed (model-best/meta.json "performance" and the console log), never
re-evaluated with other code.

Layout:
    results/ablation/DATASET/LEVER/config.cfg   the generated config
    results/ablation/DATASET/LEVER/train.log    spacy train's console output
    results/ablation/DATASET/LEVER/run.json     return code and wall time
    results/ablation/DATASET.json               the rows, written by `run_ablation`
    /tmp/ablation/DATASET/LEVER/                the trained pipelines (not kept)
    /tmp/ablation/DATASET/corpus/               ner's flat train and dev gold (--pipeline ner)
"""

import copy
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from thinc.api import Config

from ..data.datasets import file_sha256
from ..training.resumable import total_wall_seconds
from .compare import run_hash, write_flat_corpus
from .pipelines import PIPELINES, pipeline_config, suggester_max_length

COMPONENT = "efficient_globalpointer"
GP_ARCHITECTURE = "spacy_egp.GlobalPointer.v2"
MODEL = ("components", COMPONENT, "model")
TOK2VEC = MODEL + ("tok2vec",)
WIDTH_REF = "${components.efficient_globalpointer.model.tok2vec.embed.width}"
BASE_LEARN_RATE = 0.002
SINGLE_LEARN_RATE = 0.00005
# the transformer recipe before its ablation: the encoder at 2e-5, the head at 50 x that
SPLIT_LEARN_RATE = 0.00002
SPLIT_HEAD_LR_SCALE = 50.0
WARMUP_STEPS = 250
WINDOW_MAX_LENGTH = 256
# the reference's inputs: 256 characters (bert4keras maxlen), one piece each with me5s-zh-char
REFERENCE_WINDOW = 256
BILSTM_DEPTH = 1
BIGRAM_ROWS = 20000
CNN_WIDTH = 96
BIGRAM_EMBEDS = ("spacy_egp.CharBigramEmbed.v1", "spacy_egp.CharBigramEmbed.v2")
MODELS_ROOT = Path("/tmp/ablation")
REFERENCES = ("baseline", "shipped")
HEAD_DROPOUT = 0.1
STRONG_DROPOUT = 0.2
STRONG_WEIGHT_DECAY = 0.1
LABEL_SMOOTHING = 0.1

Lever = Callable[[Config, int], None]


def _section(config: Config, path: tuple) -> Dict[str, Any]:
    node = config
    for key in path:
        node = node[key]
    return node


def is_transformer(config: Config) -> bool:
    """Whether the template's tok2vec listens to a spacy-transformers encoder."""
    return "transformer" in config["components"]


def baseline(config: Config, max_steps: int) -> None:
    """The default before the ablation: no span prior, no context layer, no bigrams or words, constant rate
    0.002, no parameter averages.

    The shipped CNN configs now carry the levers that won; each is taken out here, so
    that every lever is measured against the same starting point. A transformer
    template gets the recipe before its ablation (encoder 2e-5, head x50, warmup then
    linear decay to max_steps, span prior); `single_lr`, which won, is shipped now.
    """
    if is_transformer(config):
        _section(config, ("components", COMPONENT))["head_lr_scale"] = SPLIT_HEAD_LR_SCALE
        rate = _section(config, ("training", "optimizer", "learn_rate"))
        rate.update(total_steps=max_steps, initial_rate=SPLIT_LEARN_RATE)
        return
    model = _section(config, MODEL)
    model["span_prior"] = None
    model.pop("context", None)
    embed = _section(config, TOK2VEC)["embed"]
    if embed["@architectures"] in BIGRAM_EMBEDS:
        embed["@architectures"] = "spacy.MultiHashEmbed.v2"
        for key in ("bigram_rows", "bigram_attr", "segmenter", "word_rows"):
            embed.pop(key, None)
    config["training"]["optimizer"]["learn_rate"] = BASE_LEARN_RATE
    config["training"]["optimizer"]["use_averages"] = False


def schedule(config: Config, max_steps: int) -> None:
    """Linear warm-up over 250 steps to 0.002, then linear decay to 0 at the last step."""
    config["training"]["optimizer"]["learn_rate"] = {
        "@schedules": "warmup_linear.v1",
        "warmup_steps": WARMUP_STEPS,
        "total_steps": max_steps,
        "initial_rate": BASE_LEARN_RATE,
    }


def prior(config: Config, max_steps: int) -> None:
    """Label biases initialised to the log-odds of a 1 % span prior."""
    model = _section(config, MODEL)
    if model["@architectures"] == GP_ARCHITECTURE:
        raise ValueError("the prior lever sets EGP's label biases: GlobalPointer has no label term (drop `gp`)")
    model["span_prior"] = 0.01


def gp(config: Config, max_steps: int) -> None:
    """The original GlobalPointer head instead of EGP: a q/k projection per label, no label term (so no prior)."""
    model = _section(config, MODEL)
    model["@architectures"] = GP_ARCHITECTURE
    model.pop("span_prior", None)


def bilstm(config: Config, max_steps: int) -> None:
    """A bidirectional LSTM encoder instead of the CNN (context to both ends of the doc)."""
    _section(config, TOK2VEC)["encode"] = {
        "@architectures": "spacy.TorchBiLSTMEncoder.v1",
        "width": WIDTH_REF,
        "depth": BILSTM_DEPTH,
        "dropout": 0.0,
    }


def context(config: Config, max_steps: int) -> None:
    """A BiLSTM context layer of the head's own (EfficientGlobalPointer.v2 `context`), the tok2vec unchanged."""
    _section(config, MODEL)["context"] = {
        "@architectures": "spacy.TorchBiLSTMEncoder.v1",
        "width": token_width(config),
        "depth": BILSTM_DEPTH,
        "dropout": 0.0,
    }


def context2(config: Config, max_steps: int) -> None:
    """The head's BiLSTM context layer two layers deep instead of one (added if the config has none)."""
    model = _section(config, MODEL)
    if "context" not in model:
        context(config, max_steps)
    layer = model["context"]
    if layer.get("@layers") == "chain.v1":  # head_dropout came first
        layer = layer["*"]["context"]
    layer["depth"] = 2


def head_dropout(config: Config, max_steps: int) -> None:
    """Dropout on the head's input: a Thinc Dropout after the context layer (or after the tok2vec if none).

    spaCy sets every dropout layer to `training.dropout` during updates (0.1 in the shipped configs).
    """
    model = _section(config, MODEL)
    dropout = {"@layers": "Dropout.v1", "rate": HEAD_DROPOUT}
    if "context" in model:
        model["context"] = {"@layers": "chain.v1", "*": {"context": model["context"], "dropout": dropout}}
    else:
        model["context"] = dropout


def dropout2(config: Config, max_steps: int) -> None:
    """`training.dropout` 0.2 instead of 0.1: every dropout layer (embeddings, CNN, head_dropout's) at 0.2."""
    config["training"]["dropout"] = STRONG_DROPOUT


def weight_decay(config: Config, max_steps: int) -> None:
    """Decoupled weight decay 0.1 instead of the shipped 0.01 (Adam's L2 with L2_is_weight_decay)."""
    optimizer = config["training"]["optimizer"]
    optimizer["L2"] = STRONG_WEIGHT_DECAY
    optimizer["L2_is_weight_decay"] = True


def averages(config: Config, max_steps: int) -> None:
    """Thinc's parameter averages (`use_averages`): spaCy evaluates and saves the averaged weights."""
    optimizer = config["training"]["optimizer"]
    if optimizer.get("use_averages"):
        raise ValueError("the template averages its parameters already (use_averages = true): drop the averages lever")
    optimizer["use_averages"] = True


def label_smoothing(config: Config, max_steps: int) -> None:
    """The soft-label ZLPR on the gold alone: gold target 0.9 instead of 1, the rest 0 (`label_smoothing`)."""
    config["components"][COMPONENT]["label_smoothing"] = LABEL_SMOOTHING


def single_lr(config: Config, max_steps: int) -> None:
    """Transformer: one learning rate for encoder and head (5e-5, spaCy's transformer default; head_lr_scale 1)."""
    if not is_transformer(config):
        raise ValueError("the single_lr lever is for transformer templates (configs/*_trf*.cfg): a CNN config "
                         "has one learning rate already")
    _section(config, ("components", COMPONENT))["head_lr_scale"] = 1.0
    _section(config, ("training", "optimizer", "learn_rate"))["initial_rate"] = SINGLE_LEARN_RATE


def no_prior(config: Config, max_steps: int) -> None:
    """No span prior: zero label biases and an unscaled q/k projection (the v1 start)."""
    _section(config, MODEL)["span_prior"] = None


def window2(config: Config, max_steps: int) -> None:
    """CNN window of 2 tokens each side instead of 1 (receptive field 17 instead of 9 tokens)."""
    _section(config, TOK2VEC)["encode"]["window_size"] = 2


def bigram(config: Config, max_steps: int) -> None:
    """Character-bigram features (left and right bigram) added to the hash embeddings."""
    if config["nlp"]["lang"] != "zh":
        raise ValueError("the bigram lever is for character-tokenized (zh) datasets")
    embed = _section(config, TOK2VEC)["embed"]
    embed["@architectures"] = "spacy_egp.CharBigramEmbed.v1"
    embed["bigram_rows"] = BIGRAM_ROWS


def words(config: Config, max_steps: int) -> None:
    """Word-boundary features: each character's jieba word and its B/M/E/S tag in it (CharBigramEmbed.v2)."""
    embed = _section(config, TOK2VEC)["embed"]
    if config["nlp"]["lang"] != "zh" or embed["@architectures"] not in BIGRAM_EMBEDS:
        raise ValueError("the words lever adds jieba's words to the character-bigram embed of a zh config: "
                         "combine it with bigram (combined:bigram+words) or use --reference shipped")
    if embed.get("segmenter"):
        raise ValueError(f"the template's embed has word features already (segmenter = {embed['segmenter']!r}): "
                         "drop the words lever")
    embed.update({"@architectures": "spacy_egp.CharBigramEmbed.v2", "segmenter": "jieba",
                  "word_rows": BIGRAM_ROWS})


def windows(config: Config, max_steps: int) -> None:
    """Train on sentence windows of at most 256 tokens (spaCy's corpus max_length)."""
    config["corpora"]["train"]["max_length"] = WINDOW_MAX_LENGTH


def window256(config: Config, max_steps: int) -> None:
    """Transformer: disjoint windows of 256 pieces, the reference's 256-character inputs, instead of the
    shipped strided windows (spacy-transformers' 128 pieces every 96)."""
    if not is_transformer(config):
        raise ValueError("the window256 lever is for transformer templates (configs/*_trf*.cfg): it sets the "
                         "transformer's windows")
    config["components"]["transformer"]["model"]["get_spans"] = {
        "@span_getters": "spacy-transformers.strided_spans.v1", "window": REFERENCE_WINDOW,
        "stride": REFERENCE_WINDOW}


def cnn_features(config: Config, max_steps: int) -> None:
    """Transformer: its listener concatenated with the CNN tok2vec of the shipped CNN configs (the spaCy way).

    Both feed the head side by side (Thinc's `concatenate`); the CNN embeds character
    bigrams on character-tokenized (zh) data, as configs/cluener_cnn.cfg does, and
    learns at 0.002 at the schedule's peak (spacy_egp.LearnRateScaled.v1), the CNN
    configs' rate, while the transformer keeps the template's.
    """
    if not is_transformer(config):
        raise ValueError("the cnn_features lever is for transformer templates (configs/*_trf*.cfg): it adds the "
                         "CNN features beside a transformer listener")
    model = _section(config, MODEL)
    # the CNN starts from scratch: at the transformer's rate it would barely move, so it learns at the
    # CNN configs' peak rate (the schedule's shape is the template's)
    rate = _section(config, ("training", "optimizer", "learn_rate"))["initial_rate"]
    cnn = {"@architectures": "spacy_egp.LearnRateScaled.v1", "lr_scale": BASE_LEARN_RATE / rate,
           "layer": shipped_cnn_tok2vec(config["nlp"]["lang"])}
    model["tok2vec"] = {"@layers": "concatenate.v1", "*": {"listener": model["tok2vec"], "cnn": cnn}}


def shipped_cnn_tok2vec(lang: str) -> Dict[str, Any]:
    """The tok2vec block of the shipped CNN configs, hash embeddings (+ bigrams and jieba words for zh, as in
    configs/cluener_cnn.cfg) and a 4-layer CNN."""
    embed = {"@architectures": "spacy.MultiHashEmbed.v2", "width": CNN_WIDTH,
             "attrs": ["NORM", "PREFIX", "SUFFIX", "SHAPE"], "rows": [10000, 2000, 5000, 1000],
             "include_static_vectors": False}
    if lang == "zh":
        embed.update({"@architectures": "spacy_egp.CharBigramEmbed.v2", "bigram_rows": BIGRAM_ROWS,
                      "segmenter": "jieba", "word_rows": BIGRAM_ROWS})
    encode = {"@architectures": "spacy.MaxoutWindowEncoder.v2", "width": CNN_WIDTH, "window_size": 1,
              "maxout_pieces": 3, "depth": 4}
    return {"@architectures": "spacy.Tok2Vec.v2", "embed": embed, "encode": encode}


def token_width(config: Config) -> Any:
    """The width of the tok2vec's vectors: the CNN's embed width, or the transformer folder's hidden_size."""
    if not is_transformer(config):
        return WIDTH_REF
    folder = config["paths"].get("transformer")
    if not folder or not (Path(folder) / "config.json").exists():
        raise ValueError(
            f"the context lever on a transformer needs its hidden size: pass the local model folder, e.g. "
            f"--set paths.transformer=/path/to/model (got paths.transformer = {folder!r})"
        )
    return json.loads((Path(folder) / "config.json").read_text())["hidden_size"]


LEVERS: Dict[str, Lever] = {
    "baseline": lambda config, max_steps: None,
    "shipped": lambda config, max_steps: None,
    "schedule": schedule,
    "prior": prior,
    "bilstm": bilstm,
    "context": context,
    "window2": window2,
    "bigram": bigram,
    "windows": windows,
    "single_lr": single_lr,
    "no_prior": no_prior,
    "cnn_features": cnn_features,
    "gp": gp,
    "context2": context2,
    "head_dropout": head_dropout,
    "dropout2": dropout2,
    "weight_decay": weight_decay,
    "averages": averages,
    "words": words,
    "label_smoothing": label_smoothing,
    "window256": window256,
}


def lever_names(name: str) -> List[str]:
    """`combined:a+b+c` -> [a, b, c]; any other name -> [name]."""
    if name.startswith("combined:"):
        names = name.split(":", 1)[1].split("+")
    else:
        names = [name]
    unknown = [n for n in names if n not in LEVERS]
    if unknown:
        raise ValueError(f"unknown lever(s) {unknown}; known: {sorted(LEVERS)} or combined:a+b")
    return names


def build_config(template: Config, lever: str, *, max_steps: int, eval_frequency: int,
                 overrides: Optional[Dict[str, str]] = None, reference: str = "baseline") -> Config:
    """The template with `overrides` (SECTION.KEY -> value), the baseline unless `reference` is "shipped", then
    `lever` (or `combined:a+b`); budget set."""
    if reference not in REFERENCES:
        raise ValueError(f"unknown reference {reference!r}: use one of {REFERENCES}")
    config = Config(copy.deepcopy(dict(template)), section_order=list(template.keys()))
    for key, value in (overrides or {}).items():
        *sections, name = key.split(".")
        _section(config, tuple(sections))[name] = value
    if reference == "baseline":
        baseline(config, max_steps)
    for name in lever_names(lever):
        LEVERS[name](config, max_steps)
    config["training"]["max_steps"] = max_steps
    config["training"]["eval_frequency"] = eval_frequency
    return config


def _pipeline_converter(pipeline: str, corpus: Path, lang: str, max_steps: int, eval_frequency: int) -> Callable[[Config, str], Config]:
    """(EGP variant config, lever) -> the config of `pipeline` built from it, as `benchmark compare` builds it."""
    if pipeline == "egp":
        return lambda config, lever: config
    ngram_max = 0
    if pipeline == "spancat":
        import spacy
        from spacy.tokens import DocBin

        ngram_max = suggester_max_length(DocBin().from_disk(corpus / "train.spacy").get_docs(spacy.blank(lang).vocab))

    def convert(config: Config, lever: str) -> Config:
        converted = pipeline_config(config, pipeline, ngram_max=ngram_max, max_steps=max_steps,
                                    eval_frequency=eval_frequency, log_path="")
        converted["training"]["logger"] = config["training"]["logger"]  # the console table the rows are read from
        return converted

    return convert


def sentence_stats(train: Path, lang: str, max_length: int = WINDOW_MAX_LENGTH) -> Dict[str, int]:
    """How many train docs have sentence boundaries, and how many exceed `max_length` tokens."""
    import spacy
    from spacy.tokens import DocBin

    docs = list(DocBin().from_disk(train).get_docs(spacy.blank(lang).vocab))
    return {
        "docs": len(docs),
        "docs_with_sents": sum(doc.has_annotation("SENT_START") for doc in docs),
        "docs_longer": sum(len(doc) > max_length for doc in docs),
        "max_length": max_length,
    }


class AblationRun:
    """One training process for one lever; a finished run (run.json, rc 0, model-best) of the same config on
    the same corpus is reused, and one stopped mid-training resumes from its checkpoint (`spacy egp train`)."""

    def __init__(self, dataset: str, lever: str, config: Config, corpus: Path, results: Path,
                 models: Path = MODELS_ROOT, corpus_hashes: Optional[Dict[str, str]] = None,
                 train_dev: Optional[Dict[str, Path]] = None, score_prefix: str = "spans_sc"):
        slug = lever.replace(":", "-").replace("+", "-")
        self.lever = lever
        self.directory = results / dataset / slug
        self.model_dir = models / dataset / slug
        self.config_path = self.directory / "config.cfg"
        self.log = self.directory / "train.log"
        self.run_json = self.directory / "run.json"
        self.config = config
        self.config_hash = run_hash(config.to_str(interpolate=False), {}, corpus_hashes or {})
        paths = train_dev or {split: corpus / f"{split}.spacy" for split in ("train", "dev")}
        self.command = [
            sys.executable, "-m", "spacy_egp.train", str(self.config_path), "--output", str(self.model_dir),
            "--paths.train", str(paths["train"]), "--paths.dev", str(paths["dev"]),
        ]
        self.score_prefix = score_prefix
        self.started = 0.0

    def done(self) -> bool:
        if not (self.run_json.exists() and (self.model_dir / "model-best" / "meta.json").exists()):
            return False
        run = json.loads(self.run_json.read_text())
        return run.get("returncode") == 0 and self._trained_this_config(run)

    def _trained_this_config(self, run: Dict[str, Any]) -> bool:
        """Whether a finished run trained this config: the hash in its run.json, or, for runs from before the
        hash was written, the config.cfg beside it."""
        if "config_sha256" in run:
            return run["config_sha256"] == self.config_hash
        return self.config_path.exists() and self.config_path.read_text() == self.config.to_str(interpolate=False)

    def start(self) -> subprocess.Popen:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.config.to_disk(self.config_path, interpolate=False)
        self.started = time.perf_counter()
        env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
        with open(self.log, "w") as log:
            return subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT, env=env)

    def finish(self, returncode: int) -> None:
        # a training resumed from a checkpoint: the wall time of all its calls (training-sessions.json)
        wall = total_wall_seconds(self.model_dir) or time.perf_counter() - self.started
        self.run_json.write_text(json.dumps({"returncode": returncode, "config_sha256": self.config_hash,
                                             "train_wall_seconds": wall}, indent=2))

    def row(self) -> Dict[str, Any]:
        """Best dev P/R/F (model-best's meta.json), the step of the best evaluation, train minutes."""
        meta = json.loads((self.model_dir / "model-best" / "meta.json").read_text())
        performance = meta["performance"]
        evaluations = parse_console_log(self.log.read_text())
        best = best_evaluation(evaluations) if evaluations else {}
        row = {
            "lever": self.lever,
            "dev_p": performance[f"{self.score_prefix}_p"],
            "dev_r": performance[f"{self.score_prefix}_r"],
            "dev_f": performance[f"{self.score_prefix}_f"],
            "best_step": best.get("step"),
            "last_step": evaluations[-1]["step"] if evaluations else None,
            "last_dev_f": evaluations[-1]["f"] if evaluations else None,
            "train_minutes": _train_seconds(json.loads(self.run_json.read_text())) / 60,
        }
        if "bilstm" in lever_names(self.lever):
            row["bilstm_depth"] = _section(self.config, TOK2VEC)["encode"]["depth"]
        return row


def best_evaluation(evaluations: List[Dict[str, float]]) -> Dict[str, float]:
    """The evaluation model-best was saved at: the highest score, ties of the log's 2-decimal score broken by F
    (spaCy compares the unrounded scores); the first of equal ones, as spaCy keeps the first best."""
    return max(evaluations, key=lambda e: (e["score"], e["f"]))


def _train_seconds(run: Dict[str, Any]) -> float:
    """Wall seconds of a run, less any `paused_seconds` noted in its run.json (a run stopped with SIGSTOP while
    the machine did other work)."""
    return run["train_wall_seconds"] - run.get("paused_seconds", 0.0)


# epoch, step, one loss column per trained component (two with a transformer), F, P, R (in %), score
_ROW = re.compile(r"^\s*(\d+)\s+(\d+)((?:\s+[\d.]+)+)\s*$")


def parse_console_log(text: str) -> List[Dict[str, float]]:
    """The evaluation rows of spaCy's console table: epoch, step, loss(es), F, P, R (in %), score."""
    rows = []
    for line in re.sub(r"\x1b\[[0-9;]*m", "", text).splitlines():
        match = _ROW.match(line)
        numbers = match.group(3).split() if match else []
        if len(numbers) >= 5:
            f, p, r, score = numbers[-4:]
            rows.append({"epoch": int(match.group(1)), "step": int(match.group(2)), "f": float(f) / 100,
                         "p": float(p) / 100, "r": float(r) / 100, "score": float(score)})
    return rows


def corpus_hashes(corpus: Path) -> Dict[str, str]:
    """The sha256 of the train and dev DocBins an ablation trains and selects on (part of a run's identity)."""
    return {split: file_sha256(corpus / f"{split}.spacy") for split in ("train", "dev")}


def _train_all(runs: List[AblationRun], jobs: int) -> None:
    pending = [run for run in runs if not run.done()]
    running: Dict[int, tuple] = {}
    while pending or running:
        while pending and len(running) < jobs:
            run = pending.pop(0)
            process = run.start()
            running[process.pid] = (run, process)
            print(f"training {run.lever}: {' '.join(run.command)}", flush=True)
        pid, status = os.wait()
        if pid not in running:
            continue
        run, _process = running.pop(pid)
        run.finish(os.waitstatus_to_exitcode(status))
        print(f"finished {run.lever}: rc {os.waitstatus_to_exitcode(status)}", flush=True)


def run_ablation(dataset: str, *, template: Path, corpus: Path, levers: List[str], max_steps: int,
                 eval_frequency: int, jobs: int = 1, output: Optional[Path] = None,
                 results: Path = Path("results/ablation"), models: Path = MODELS_ROOT,
                 overrides: Optional[Dict[str, str]] = None, reference: str = "baseline",
                 pipeline: str = "egp") -> Dict[str, Any]:
    """Train the reference row (`baseline` or `shipped`) + `levers` on `corpus`, at most `jobs` at once; write and
    return the rows. `pipeline`: the component the levers are measured on (one of pipelines.PIPELINES)."""
    if pipeline not in PIPELINES:
        raise ValueError(f"unknown pipeline {pipeline!r}: choose one of {', '.join(PIPELINES)}")
    template_config = Config().from_disk(template, interpolate=False)
    lang = template_config["nlp"]["lang"]
    as_pipeline = _pipeline_converter(pipeline, corpus, lang, max_steps, eval_frequency)
    notes: List[str] = []
    levers = [reference] + [lever for lever in levers if lever not in REFERENCES]
    hashes = corpus_hashes(corpus)
    stats = sentence_stats(corpus / "train.spacy", lang) if "windows" in levers else None
    if stats and stats["docs_with_sents"] == 0:
        levers.remove("windows")
        notes.append(f"windows skipped: the train docs have no sentence boundaries; {stats['docs_longer']:,} of "
                     f"{stats['docs']:,} train docs exceed {stats['max_length']} tokens")
    # data, not results: beside the trained pipelines
    train_dev = write_flat_corpus(corpus, models / dataset / "corpus", lang) if pipeline == "ner" else None
    runs = [AblationRun(dataset, lever, as_pipeline(build_config(template_config, lever, max_steps=max_steps,
                                                                 eval_frequency=eval_frequency, overrides=overrides,
                                                                 reference=reference), lever),
                        corpus, results, models, hashes, train_dev=train_dev,
                        score_prefix="ents" if pipeline == "ner" else "spans_sc")
            for lever in levers]
    for run in runs:
        if not run.done():  # a reused run keeps the config it was trained with
            run.directory.mkdir(parents=True, exist_ok=True)
            run.config.to_disk(run.config_path, interpolate=False)
    _train_all(runs, jobs)
    rows, failed = [], []
    for run in runs:
        if run.done():
            rows.append(run.row())
        else:
            failed.append(run.lever)
            notes.append(f"{run.lever} failed: see {run.log}")
    summary = {
        "dataset": dataset,
        "template": str(template),
        "corpus": str(corpus),
        "max_steps": max_steps,
        "eval_frequency": eval_frequency,
        "parallel_trainings": jobs,
        "overrides": overrides or {},
        "reference": reference,
        "pipeline": pipeline,
        "sentence_stats": stats,
        "notes": notes,
        "rows": rows,
    }
    output = output or results / f"{dataset}.json"
    # keep rows of earlier invocations for levers not run this time
    if output.exists():
        previous = json.loads(output.read_text())
        mine = {row["lever"] for row in rows}
        summary["rows"] = rows + [row for row in previous.get("rows", []) if row["lever"] not in mine]
        summary["notes"] = notes + [n for n in previous.get("notes", []) if n not in notes
                                    and not any(n.startswith(f"{lever} ") for lever in mine)]
        if stats is None:
            summary["sentence_stats"] = previous.get("sentence_stats")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(summary, indent=2))
    return summary

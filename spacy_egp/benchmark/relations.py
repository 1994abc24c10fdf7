"""The relation benchmark: gplinker (EGP or GP pair pointers) against spaCy ner + a pair classifier.

    python -m spacy_egp.benchmark relations conll04 --template configs/conll04_cnn.cfg \\
        --corpus corpus/conll04 [--pipelines gplinker-egp gplinker-gp baseline] [--tok2vec MiniLM] \\
        [--set paths.transformer=FOLDER] [--max-steps N] [--gpu-id 0]

Every pipeline is generated from the dataset's gplinker config (the template):
same [nlp], [training] (seed, batcher, optimizer, budget) and encoder; only the
component after the encoder changes (`pipeline_config`). The baseline is spaCy's
`ner` plus the rel_component-style classifier of
spacy_egp.benchmark.relations_baseline, both listening to one shared tok2vec
(or the template's transformer).

Resumable: each pipeline is trained by `spacy egp train` (spacy train with checkpoints:
a stopped training resumes) in its own process and,
as soon as it is evaluated, its figures go to OUTPUT/parts/NAME.json with the
sha256 of its generated config and of the corpus files. A re-run skips every
pipeline whose part holds the same hashes and redoes the others; an interrupted
run keeps the pipelines it finished. The parts are then merged into
OUTPUT/relations.json, which `python -m spacy_egp.benchmark report` turns
into the CoNLL04 tables of results/README.md and README.md.

Tokens: CoNLL04 comes tokenized, and the benchmark scores on those tokens, as
SpERT and most relation papers do. The generated configs read the corpora with
`gold_preproc = true` (spaCy's Corpus builds the predicted docs from the
reference tokens), so training and dev selection see the dataset's tokens,
while the pipeline keeps spaCy's tokenizer for a user's raw text. The test
figures are computed both ways: on docs made of the dataset's tokens (the main
columns) and on the raw text through spaCy's tokenizer (one column).
"""

import argparse
import copy
import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional

import spacy
from spacy.tokens import DocBin
from thinc.api import Config

from ..data.datasets import file_sha256
from ..pipeline.gplinker import RELATION_SCORE_WEIGHTS
from ..training.resumable import total_wall_seconds
from .compare import machine_description, single_threaded_env
from .pipelines import _ner, flat_ents

PIPELINES = ("gplinker-egp", "gplinker-gp", "baseline")
GPLINKER = "gplinker"
GPLINKER_V1, GPLINKER_V2 = "spacy_egp.GPLinker.v1", "spacy_egp.GPLinker.v2"
BASELINE_RELATIONS = "relation_classifier"
# A hidden layer lets the classifier score a head *with* a tail, not only each on its own (a linear
# layer over [head; tail] adds the two); the rel_component tutorial's layer is linear (hidden 0).
BASELINE_HIDDEN_WIDTH = 128
SPANS_KEY = "sc"
SPLITS = ("train", "dev", "test")


# --------------------------------------------------------------------------
# Configs
# --------------------------------------------------------------------------


def pipeline_config(template: Config, name: str, *, log_path: str, corpus: Path,
                    max_steps: Optional[int] = None, eval_frequency: Optional[int] = None,
                    overrides: Optional[Dict[str, str]] = None) -> Config:
    """The config of pipeline `name` (one of PIPELINES) from the dataset's gplinker template.

    Everything but the component after the encoder is the template's; the
    corpora are read on the dataset's own tokens (gold_preproc) and the
    overrides (SECTION.KEY=VALUE, as for `spacy train`) are written in, so
    the config file alone determines the run (and its hash).
    """
    if name not in PIPELINES:
        raise ValueError(f"unknown pipeline {name!r}: choose from {', '.join(PIPELINES)}")
    if GPLINKER not in template["components"]:
        raise ValueError(f"the template has no [components.{GPLINKER}]: pass a gplinker config, "
                         f"e.g. configs/conll04_cnn.cfg")
    config = copy.deepcopy(template)
    for key, value in (overrides or {}).items():
        _set_path(config, key, value)
    if name == "baseline":
        _to_baseline(config)
    else:
        _select_pair_pointer(config["components"][GPLINKER]["model"], name.split("-", 1)[1])
    for split in ("train", "dev"):
        config["paths"][split] = str(corpus / f"{split}.spacy")
        config["corpora"][split]["gold_preproc"] = True
    training = config["training"]
    if max_steps is not None:
        training.update(max_steps=max_steps, max_epochs=0)
    if eval_frequency is not None:
        training["eval_frequency"] = eval_frequency
    training["logger"] = {"@loggers": "spacy_egp.ThroughputLogger.v1", "log_path": log_path}
    return config


def gplinker_v2_registered() -> bool:
    """Whether spacy_egp.GPLinker.v2 (with its pair_pointer option) is there to build."""
    from spacy.util import registry

    from ..pipeline import gplinker  # noqa: F401  (registers the gplinker architectures)

    return GPLINKER_V2 in registry.architectures


def _select_pair_pointer(model: Dict[str, Any], pair_pointer: str) -> None:
    """The gplinker model with EGP or GP pair pointers (spacy_egp.GPLinker.v2's pair_pointer)."""
    if model["@architectures"] == GPLINKER_V1 and gplinker_v2_registered():
        model["@architectures"] = GPLINKER_V2
    if model["@architectures"] == GPLINKER_V2:
        model["pair_pointer"] = pair_pointer
    elif model["@architectures"] == GPLINKER_V1 and pair_pointer == "egp":
        raise ValueError(f"gplinker-egp needs {GPLINKER_V2} (pair_pointer = \"egp\"), which is not registered "
                         f"here: {GPLINKER_V1}'s pair pointers are GP-style. Run only gplinker-gp and baseline, "
                         f"or update spacy_egp.")
    elif model["@architectures"] != GPLINKER_V1:
        raise ValueError(f"unknown gplinker architecture {model['@architectures']!r} in the template")


def _to_baseline(config: Config) -> None:
    """Replace gplinker by spaCy ner + the pair classifier, both listening to the template's encoder."""
    components = config["components"]
    resolved = _interpolated_components(config)
    gplinker = resolved[GPLINKER]
    tok2vec = gplinker["model"]["tok2vec"]
    del components[GPLINKER]
    pipeline = [p for p in config["nlp"]["pipeline"] if p != GPLINKER]
    if "Listener" in tok2vec["@architectures"]:
        listener = tok2vec  # the template's transformer (or tok2vec) component stays, shared
    else:
        components["tok2vec"] = {"factory": "tok2vec", "model": tok2vec}
        pipeline.append("tok2vec")
        listener = {"@architectures": "spacy.Tok2VecListener.v1", "width": _tok2vec_width(tok2vec),
                    "upstream": "tok2vec"}
    from .relations_baseline import ARCHITECTURE, FACTORY
    from .scaled_heads import SCALED_NER_FACTORY

    head_lr_scale = gplinker.get("head_lr_scale", 1.0)
    components["ner"] = _ner(listener)
    if head_lr_scale != 1.0:  # spaCy's ner has no scale of its own: the benchmark's subclass adds it
        components["ner"].update(factory=SCALED_NER_FACTORY, head_lr_scale=head_lr_scale)
    components[BASELINE_RELATIONS] = {
        "factory": FACTORY,
        "threshold": gplinker.get("relation_threshold", 0.5),
        "max_pair_distance": gplinker["model"].get("max_pair_distance", 100),
        "spans_key": gplinker.get("spans_key", SPANS_KEY),
        "head_lr_scale": head_lr_scale,
        "model": {"@architectures": ARCHITECTURE, "tok2vec": copy.deepcopy(listener),
                  "hidden_width": BASELINE_HIDDEN_WIDTH},
        "scorer": {"@scorers": "spacy_egp.relations_scorer.v1"},
    }
    config["nlp"]["pipeline"] = pipeline + ["ner", BASELINE_RELATIONS]
    config["initialize"]["components"] = {}
    config["training"]["score_weights"] = dict(RELATION_SCORE_WEIGHTS, ents_f=0.0)


def _interpolated_components(config: Config) -> Dict[str, Any]:
    # resolved, because the tok2vec's ${...} references name the gplinker component, which the baseline lacks
    return Config(config).interpolate()["components"]


def _tok2vec_width(tok2vec: Dict[str, Any]) -> int:
    for block in (tok2vec, tok2vec.get("encode", {}), tok2vec.get("embed", {})):
        if isinstance(block.get("width"), int):
            return block["width"]
    raise ValueError(f"cannot tell the width of the template's tok2vec {tok2vec['@architectures']!r}: "
                     f"give it a `width` (or encode.width)")


def _set_path(config: Config, dotted: str, value: str) -> None:
    """config[section]...[key] = value, the value read as JSON when it parses (as `spacy train` does)."""
    *sections, key = dotted.split(".")
    if not sections:
        raise ValueError(f"override {dotted!r} must name a section, e.g. paths.transformer=FOLDER")
    block = config
    for section in sections:
        block = block.setdefault(section, {})
    try:
        block[key] = json.loads(value)
    except json.JSONDecodeError:
        block[key] = value


def config_sha256(config: Config) -> str:
    return hashlib.sha256(config.to_str(interpolate=False).encode("utf8")).hexdigest()


# --------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------


def write_corpus(corpus: Path, output: Path, lang: str) -> Dict[str, str]:
    """train/dev/test with doc.ents = the gold entities (for ner), relations kept; their sha256."""
    missing = [split for split in SPLITS if not (corpus / f"{split}.spacy").exists()]
    if missing:
        raise FileNotFoundError(
            f"{corpus} lacks {', '.join(s + '.spacy' for s in missing)}: convert the dataset first, e.g. "
            f"`python -m spacy_egp.convert dataset conll04 ../shared/data {corpus}`")
    output.mkdir(parents=True, exist_ok=True)
    vocab = spacy.blank(lang).vocab
    hashes = {}
    for split in SPLITS:
        docs = [flat_ents(doc) for doc in DocBin().from_disk(corpus / f"{split}.spacy").get_docs(vocab)]
        DocBin(docs=docs, store_user_data=True).to_disk(output / f"{split}.spacy")
        hashes[split] = file_sha256(corpus / f"{split}.spacy")
    return hashes


def run_relations(dataset: str, *, template: Path, corpus: Path, output: Path, pipelines: Iterable[str],
                  tok2vec_name: str = "CNN", max_steps: Optional[int] = None,
                  eval_frequency: Optional[int] = None, gpu_id: int = -1, batch_size: int = 256,
                  overrides: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
    """Train, evaluate and record each pipeline not already done with the same config; merge the parts."""
    names = [name for name in PIPELINES if name in set(pipelines)]
    unknown = sorted(set(pipelines) - set(PIPELINES))
    if unknown:
        raise ValueError(f"unknown pipeline(s) {unknown}: choose from {', '.join(PIPELINES)}")
    template_config = Config().from_disk(template, interpolate=False)
    corpus_hashes = write_corpus(corpus, output / "corpus", template_config["nlp"]["lang"])
    for name in names:
        config = pipeline_config(template_config, name, log_path=str(output / "logs" / f"{name}.jsonl"),
                                 corpus=output / "corpus", max_steps=max_steps, eval_frequency=eval_frequency,
                                 overrides=overrides)
        key = {"config_sha256": config_sha256(config), "corpus_sha256": corpus_hashes}
        part = output / "parts" / f"{name}.json"
        if part.exists() and {k: json.loads(part.read_text()).get(k) for k in key} == key:
            print(f"{name}: done with the same config and corpus ({part}), skipped", flush=True)
            continue
        config_path = output / "configs" / f"{name}.cfg"
        config_path.parent.mkdir(parents=True, exist_ok=True)
        config.to_disk(config_path, interpolate=False)
        training = _train(name, config_path, output, key["config_sha256"], gpu_id)
        row = dict(pipeline=name, **key, **training, **_training_log(output / "logs" / f"{name}.jsonl"),
                   **_evaluate_in_subprocess(output / "training" / name / "model-best",
                                             output / "corpus" / "test.spacy", batch_size))
        part.parent.mkdir(parents=True, exist_ok=True)
        part.write_text(json.dumps(row, indent=2))
        print(f"{name}: {part}", flush=True)
    return merge_parts(dataset, output, template=template, tok2vec_name=tok2vec_name)


def merge_parts(dataset: str, output: Path, *, template: Path, tok2vec_name: str) -> Dict[str, Any]:
    """OUTPUT/relations.json from OUTPUT/parts/*.json, rows in PIPELINES order."""
    parts = {p.stem: json.loads(p.read_text()) for p in (output / "parts").glob("*.json")}
    rows = [parts[name] for name in PIPELINES if name in parts]
    results = {"dataset": dataset, "tok2vec": tok2vec_name, "template": str(template),
               "baseline_hidden_width": BASELINE_HIDDEN_WIDTH, "machine": machine_description(), "rows": rows}
    (output / "relations.json").write_text(json.dumps(results, indent=2))
    return results


def _train(name: str, config: Path, output: Path, config_hash: str, gpu_id: int) -> Dict[str, Any]:
    """Training in its own process (resumed from its checkpoint if one was stopped), unless model-best exists
    from the same config."""
    directory = output / "training" / name
    stamp = directory / "benchmark.json"
    if stamp.exists() and (directory / "model-best").exists():
        measured = json.loads(stamp.read_text())
        if measured.get("config_sha256") == config_hash:
            print(f"{name}: trained before with the same config, evaluating", flush=True)
            return {"train_wall_seconds": measured["train_wall_seconds"]}
    console = output / "logs" / f"{name}.txt"
    console.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "spacy_egp.benchmark", "relations", "_train", str(config),
               "--output", str(directory), "--gpu-id", str(gpu_id)]
    print(f"training {name}: {' '.join(command)}", flush=True)
    started = time.perf_counter()
    with open(console, "w") as stream:
        status = subprocess.run(command, stdout=stream, stderr=subprocess.STDOUT).returncode
    if status != 0:
        raise RuntimeError(f"training {name} failed: see {console}")
    wall = total_wall_seconds(directory) or time.perf_counter() - started  # summed over resumed calls
    measured = {"config_sha256": config_hash, "train_wall_seconds": wall}
    stamp.write_text(json.dumps(measured, indent=2))
    return {"train_wall_seconds": measured["train_wall_seconds"]}


def _training_log(log: Path) -> Dict[str, Any]:
    evaluations = [json.loads(line) for line in log.read_text().splitlines()]
    best = max(evaluations, key=lambda e: e["score"])
    return {"train_steps": evaluations[-1]["step"], "dev_best_score": best["score"], "dev_best_step": best["step"]}


def _evaluate_in_subprocess(model: Path, test: Path, batch_size: int) -> Dict[str, Any]:
    command = [sys.executable, "-m", "spacy_egp.benchmark", "relations", "_evaluate", str(model), str(test),
               "--batch-size", str(batch_size)]
    out = subprocess.run(command, capture_output=True, text=True, env=single_threaded_env())
    if out.returncode != 0:
        raise RuntimeError(f"evaluating {model} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------


def evaluate_relations(model: str, test: str, batch_size: int = 256) -> Dict[str, Any]:
    """Test figures of a trained pipeline: on the dataset's tokens and on spaCy's, and inference words/s.

    Inference speed is that of raw text (spaCy's tokenizer included), on
    this process's threads (one, from the runner), best of 3.
    """
    from ..pipeline.gplinker import relations_score
    from .evaluation import _fastest, given_tokens
    from spacy.training import Example

    nlp = spacy.load(model)
    gold = list(DocBin().from_disk(test).get_docs(nlp.vocab))
    texts = [doc.text for doc in gold]
    on_given_tokens = [given_tokens(doc, nlp.vocab) for doc in gold]
    list(nlp.pipe(texts[:32], batch_size=batch_size))  # warm-up: first calls allocate
    on_text, seconds = _fastest(lambda: list(nlp.pipe(texts, batch_size=batch_size)))
    on_tokens = list(nlp.pipe(on_given_tokens, batch_size=batch_size))
    scores = relations_score([Example(p, g) for p, g in zip(on_tokens, gold)], spans_key=SPANS_KEY)
    spacy_tokens = relations_score([Example(p, g) for p, g in zip(on_text, gold)], spans_key=SPANS_KEY)
    row = {f"test_{key}": scores[key] for key in (
        "relations_p", "relations_r", "relations_f", "relations_untyped_p", "relations_untyped_r",
        "relations_untyped_f", f"spans_{SPANS_KEY}_p", f"spans_{SPANS_KEY}_r", f"spans_{SPANS_KEY}_f",
        "relations_args_found", "relations_linked_given_args")}
    row["test_relations_per_type"] = scores["relations_per_type"]
    row["test_spacy_tokens_relations_f"] = spacy_tokens["relations_f"]
    row["test_spacy_tokens_entities_f"] = spacy_tokens[f"spans_{SPANS_KEY}_f"]
    row["test_docs"] = len(gold)
    row["test_sentences_retokenized"] = sum(
        [t.text for t in p] != [t.text for t in g] for p, g in zip(on_text, gold))
    row["inference_words_per_second"] = sum(len(doc) for doc in on_text) / seconds
    return row


# --------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m spacy_egp.benchmark relations", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", help="a name for the results, e.g. conll04")
    parser.add_argument("--template", type=Path, required=True, help="the dataset's gplinker config")
    parser.add_argument("--corpus", type=Path, required=True, help="folder with train.spacy, dev.spacy, test.spacy")
    parser.add_argument("--output", type=Path, default=None, help="default: results/DATASET[-TOK2VEC]")
    parser.add_argument("--pipelines", nargs="+", default=list(PIPELINES), choices=PIPELINES)
    parser.add_argument("--tok2vec", default="CNN", help="a label for the template's encoder, e.g. MiniLM")
    parser.add_argument("--max-steps", type=int, default=None, help="default: the template's budget")
    parser.add_argument("--eval-frequency", type=int, default=None, help="default: the template's")
    parser.add_argument("--gpu-id", type=int, default=-1, help="for training; inference is timed on CPU")
    parser.add_argument("--batch-size", type=int, default=256, help="nlp.pipe batch size at inference")
    parser.add_argument("--set", nargs="*", default=[], metavar="SECTION.KEY=VALUE",
                        help="written into every generated config, e.g. paths.transformer=FOLDER")
    return parser


def _train_main(argv: List[str]) -> int:
    """`spacy egp train` (spacy train, resumable) with the benchmark's baseline component registered."""
    parser = argparse.ArgumentParser(prog="python -m spacy_egp.benchmark relations _train")
    parser.add_argument("config", type=Path)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--gpu-id", type=int, default=-1)
    args = parser.parse_args(argv)
    from spacy.cli._util import setup_gpu
    from spacy.util import load_config

    from . import relations_baseline  # noqa: F401
    from ..pipeline import gplinker  # noqa: F401
    from ..training.resumable import train

    setup_gpu(args.gpu_id, silent=True)
    train(load_config(args.config, interpolate=False), args.output, use_gpu=args.gpu_id)
    return 0


def _evaluate_main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m spacy_egp.benchmark relations _evaluate")
    parser.add_argument("model")
    parser.add_argument("test")
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args(argv)
    from . import relations_baseline  # noqa: F401

    print(json.dumps(evaluate_relations(args.model, args.test, args.batch_size)))
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "_train":
        return _train_main(argv[1:])
    if argv and argv[0] == "_evaluate":
        return _evaluate_main(argv[1:])
    args = _parser().parse_args(argv)
    suffix = "" if args.tok2vec == "CNN" else f"-{args.tok2vec.lower()}"
    output = args.output or Path("results") / f"{args.dataset}{suffix}"
    results = run_relations(args.dataset, template=args.template, corpus=args.corpus, output=output,
                            pipelines=args.pipelines, tok2vec_name=args.tok2vec, max_steps=args.max_steps,
                            eval_frequency=args.eval_frequency, gpu_id=args.gpu_id, batch_size=args.batch_size,
                            overrides=dict(item.split("=", 1) for item in args.set))
    from .relations_report import format_relations_table

    print(format_relations_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Time and peak memory of one long document against its length.

    python -m spacy_egp.benchmark long-docs [--model [NAME=]PATH ...] [--lengths 10000 100000]

`long-docs` predicts one document of each length in a fresh process and prints
the wall time and the peak resident memory (RSS) of that process, so the
figures of one length do not leak into the next, on one thread (see
`compare.single_threaded_env`). Without --model it uses an
untrained default pipeline (random weights, 10 labels): the cost of the
tok2vec and the head does not depend on the weights, but the number of spans
written does, so give a trained pipeline for realistic figures.
"""

import json
import resource
import subprocess
import sys
import time
from typing import Dict, List, Optional

import spacy
from spacy.language import Language
from spacy.tokens import Doc, Span
from spacy.training import Example

from .compare import single_threaded_env

WORDS = ["浙", "商", "银", "行", "企", "业", "信", "贷", "部", "叶", "老", "桂", "博", "士"]


def _untrained_pipeline(sparse_loss: bool = False) -> Language:
    nlp = spacy.blank("zh")
    pipe = nlp.add_pipe("efficient_globalpointer", config={"sparse_loss": sparse_loss})
    doc = nlp.make_doc("".join(WORDS))
    examples = [Example(nlp.make_doc(doc.text), doc)]
    pipe.initialize(lambda: examples, labels=[f"LABEL{i}" for i in range(10)])
    return nlp


def measure_one(model: Optional[str], length: int) -> dict:
    """Time and peak RSS of predicting one `length`-token doc (run in its own process)."""
    nlp = spacy.load(model) if model else _untrained_pipeline()
    words = [WORDS[i % len(WORDS)] for i in range(length)]
    doc = spacy.tokens.Doc(nlp.vocab, words=words, spaces=[False] * length)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    for _, component in nlp.pipeline:
        doc = component(doc)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"tokens": length, "seconds": seconds, "peak_rss_mb": peak / 1024, "rss_before_mb": before / 1024}


def measure_update(length: int, sparse_loss: bool) -> dict:
    """Time and peak RSS of one training update on a `length`-token doc (in its own process).

    The doc has a gold span of 3 tokens every 50 tokens; the model is untrained
    (the memory of an update does not depend on the weights).
    """
    spacy.util.fix_random_seed(0)  # the same weights for both losses: the loss values must agree
    nlp = _untrained_pipeline(sparse_loss)
    words = [WORDS[i % len(WORDS)] for i in range(length)]
    reference = Doc(nlp.vocab, words=words, spaces=[False] * length)
    reference.spans["sc"] = [Span(reference, i, i + 3, f"LABEL{i % 10}") for i in range(0, length - 3, 50)]
    example = Example(Doc(nlp.vocab, words=words, spaces=[False] * length), reference)
    optimizer = nlp.resume_training()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    losses = nlp.update([example], sgd=optimizer)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"tokens": length, "loss": "sparse" if sparse_loss else "dense", "seconds": seconds,
            "peak_rss_mb": peak / 1024, "rss_before_mb": before / 1024,
            "loss_value": float(losses["efficient_globalpointer"])}


def loss_memory(lengths: List[int]) -> List[dict]:
    """Dense against sparse ZLPR: one training update per length, each in a fresh process."""
    rows = []
    for length in lengths:
        for loss in ("dense", "sparse"):
            command = [sys.executable, "-m", "spacy_egp.benchmark", "_update", str(length), loss]
            out = subprocess.run(command, capture_output=True, text=True, env=single_threaded_env())
            if out.returncode != 0:
                raise RuntimeError(f"{loss} loss at {length} tokens failed:\n{out.stderr}")
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"{'loss':<7} {'tokens':>8} {'seconds':>9} {'peak RSS MB':>12} {'loss value':>11}")
    for row in rows:
        print(f"{row['loss']:<7} {row['tokens']:>8} {row['seconds']:>9.2f} {row['peak_rss_mb']:>12.0f} "
              f"{row['loss_value']:>11.4f}")
    return rows


def long_docs(models: Dict[str, Optional[str]], lengths: List[int]) -> List[dict]:
    """Time and peak RSS of each model (name -> path, None = untrained EGP) at each length."""
    rows = []
    for name, model in models.items():
        for length in lengths:
            command = [sys.executable, "-m", "spacy_egp.benchmark", "_one", str(length)]
            if model:
                command += ["--model", model]
            out = subprocess.run(command, capture_output=True, text=True, env=single_threaded_env())
            if out.returncode != 0:
                raise RuntimeError(f"{name} at {length} tokens failed:\n{out.stderr}")
            rows.append(dict(json.loads(out.stdout.strip().splitlines()[-1]), model=name))
    print(format_rows(rows))
    return rows


def format_rows(rows: List[dict]) -> str:
    """A text table; the last column is the time over the model's first (shortest) length."""
    lines = [f"{'model':<10} {'tokens':>8} {'seconds':>9} {'peak RSS MB':>12} {'time / first':>13}"]
    first: Dict[str, float] = {}
    for row in rows:
        first.setdefault(row["model"], row["seconds"])
        ratio = row["seconds"] / first[row["model"]]
        lines.append(f"{row['model']:<10} {row['tokens']:>8} {row['seconds']:>9.2f} "
                     f"{row['peak_rss_mb']:>12.0f} {ratio:>13.2f}")
    return "\n".join(lines)

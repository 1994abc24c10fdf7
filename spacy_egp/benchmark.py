"""Benchmarks that print figures (never timed tests).

    python -m spacy_egp.benchmark long-docs [--model PATH] [--lengths 10000 100000]

`long-docs` predicts one document of each length in a fresh process and prints
the wall time and the peak resident memory (RSS) of that process, so the
figures of one length do not leak into the next. Without --model it uses an
untrained default pipeline (random weights, 10 labels): the cost of the
tok2vec and the head does not depend on the weights, but the number of spans
written does, so give a trained pipeline for realistic figures.
"""

import argparse
import json
import resource
import subprocess
import sys
import time
from typing import List, Optional

import spacy
from spacy.language import Language
from spacy.training import Example

WORDS = ["浙", "商", "银", "行", "企", "业", "信", "贷", "部", "叶", "老", "桂", "博", "士"]


def _untrained_pipeline() -> Language:
    nlp = spacy.blank("zh")
    pipe = nlp.add_pipe("efficient_globalpointer")
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


def long_docs(model: Optional[str], lengths: List[int]) -> List[dict]:
    rows = []
    for length in lengths:
        command = [sys.executable, "-m", "spacy_egp.benchmark", "_one", str(length)]
        if model:
            command += ["--model", model]
        out = subprocess.run(command, capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"{'tokens':>8} {'seconds':>9} {'peak RSS MB':>12} {'time / first':>13}")
    for row in rows:
        ratio = row["seconds"] / rows[0]["seconds"]
        print(f"{row['tokens']:>8} {row['seconds']:>9.2f} {row['peak_rss_mb']:>12.0f} {ratio:>13.2f}")
    return rows


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m spacy_egp.benchmark", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    long = sub.add_parser("long-docs", help="time and peak memory against document length")
    long.add_argument("--model", default=None, help="a trained pipeline (default: untrained, 10 labels)")
    long.add_argument("--lengths", type=int, nargs="+", default=[10000, 100000])
    one = sub.add_parser("_one")
    one.add_argument("length", type=int)
    one.add_argument("--model", default=None)
    args = parser.parse_args(argv)
    if args.command == "long-docs":
        long_docs(args.model, args.lengths)
    else:
        print(json.dumps(measure_one(args.model, args.length)))


if __name__ == "__main__":
    main()

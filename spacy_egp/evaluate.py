"""Evaluate a trained pipeline on a .spacy file and print a per-label P/R/F table.

Command line::

    python -m spacy_egp.evaluate MODEL DATA [--output metrics.json] [--spans-key sc]
        [--gpu-id -1] [--gold-preproc]

The scores are spaCy's own (``spacy.cli.evaluate.evaluate``, i.e. ``nlp.evaluate``
with the component's scorer: exact-match spans, labelled, nesting allowed); the
metrics JSON is the one ``spacy evaluate --output`` writes (``spans_KEY_p/r/f``,
``spans_KEY_per_type``, ``speed``) plus ``spans_KEY_support`` (gold spans per
label) and ``n_docs``. The table adds each label's number of gold spans.
"""

import argparse
import io
import sys
from collections import Counter
from pathlib import Path
from typing import Any, Dict, List, Optional

import srsly


def gold_support(data_path: str, spans_key: str) -> Counter:
    """Gold spans per label in doc.spans[spans_key] of a .spacy file."""
    from spacy.tokens import DocBin
    from spacy.vocab import Vocab

    counts: Counter = Counter()
    for doc in DocBin().from_disk(data_path).get_docs(Vocab()):
        counts.update(span.label_ for span in doc.spans.get(spans_key, []))
    return counts


def n_docs(data_path: str) -> int:
    from spacy.tokens import DocBin

    return len(DocBin().from_disk(data_path))


def format_table(scores: Dict[str, Any], spans_key: str, support: Optional[Counter] = None) -> str:
    """A per-label table of P/R/F (in %) and gold counts, with the micro average last."""
    prefix = f"spans_{spans_key}"
    per_type = scores.get(f"{prefix}_per_type") or {}
    support = support or Counter()
    labels = sorted(set(per_type) | set(support))
    width = max([len(label) for label in labels] + [len("micro avg")])
    out = io.StringIO()
    print(f"{'label':<{width}}  {'P':>6}  {'R':>6}  {'F':>6}  {'gold':>6}", file=out)
    print(f"{'-' * width}  {'-' * 6}  {'-' * 6}  {'-' * 6}  {'-' * 6}", file=out)

    def row(name: str, p: Optional[float], r: Optional[float], f: Optional[float], n: int) -> None:
        cells = ["     -" if v is None else f"{v * 100:6.2f}" for v in (p, r, f)]
        print(f"{name:<{width}}  {'  '.join(cells)}  {n:>6}", file=out)

    for label in labels:
        s = per_type.get(label, {})
        row(label, s.get("p"), s.get("r"), s.get("f"), support.get(label, 0))
    print(f"{'-' * width}  {'-' * 6}  {'-' * 6}  {'-' * 6}  {'-' * 6}", file=out)
    row("micro avg", scores.get(f"{prefix}_p"), scores.get(f"{prefix}_r"), scores.get(f"{prefix}_f"),
        sum(support.values()))
    return out.getvalue().rstrip("\n")


def evaluate(model: str, data_path: str, *, output: Optional[str] = None, spans_key: str = "sc",
             gpu_id: int = -1, gold_preproc: bool = False) -> Dict[str, Any]:
    """spaCy's evaluation of MODEL on DATA, plus gold support; writes OUTPUT (JSON) if given."""
    from spacy.cli.evaluate import evaluate as spacy_evaluate

    if not Path(data_path).exists():
        raise FileNotFoundError(f"evaluation data not found: {data_path}")
    scores = spacy_evaluate(model, Path(data_path), use_gpu=gpu_id, gold_preproc=gold_preproc,
                            spans_key=spans_key, silent=True)
    if f"spans_{spans_key}_f" not in scores:
        raise ValueError(
            f"the pipeline at {model} reported no spans_{spans_key}_* scores: does a component write "
            f"doc.spans[{spans_key!r}] (check --spans-key)? Scores: {sorted(scores)}"
        )
    support = gold_support(data_path, spans_key)
    scores[f"spans_{spans_key}_support"] = dict(sorted(support.items()))
    scores["n_docs"] = n_docs(data_path)
    if output:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        srsly.write_json(output, scores)
    return scores


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m spacy_egp.evaluate",
        description="Evaluate a pipeline's spans on a .spacy file (spaCy's scorer) and print a per-label table.",
    )
    parser.add_argument("model", help="pipeline folder or installed package name")
    parser.add_argument("data", help=".spacy file with the gold spans in doc.spans[KEY]")
    parser.add_argument("--output", "-o", default=None, help="metrics JSON to write")
    parser.add_argument("--spans-key", default="sc")
    parser.add_argument("--gpu-id", "-g", type=int, default=-1)
    parser.add_argument("--gold-preproc", "-G", action="store_true",
                        help="use the gold tokens instead of re-tokenizing the text")
    args = parser.parse_args(argv)
    try:
        scores = evaluate(args.model, args.data, output=args.output, spans_key=args.spans_key,
                          gpu_id=args.gpu_id, gold_preproc=args.gold_preproc)
    except (FileNotFoundError, ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    key = args.spans_key
    print(f"{args.model} on {args.data} ({scores['n_docs']} docs), doc.spans[{key!r}]:")
    print(format_table(scores, key, Counter(scores[f"spans_{key}_support"])))
    print(f"SPAN F1 = {scores[f'spans_{key}_f'] * 100:.2f}  (P {scores[f'spans_{key}_p'] * 100:.2f}, "
          f"R {scores[f'spans_{key}_r'] * 100:.2f}; {scores.get('speed', 0):.0f} words/s)")
    if args.output:
        print(f"metrics written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Print a per-label P/R/F table, with gold counts, from the metrics of ``spacy evaluate``.

Command line::

    python -m spacy evaluate MODEL DATA --output METRICS.json --spans-key sc [--gpu-id -1]
    python -m spacy_egp.evaluate METRICS.json DATA [--spans-key sc]

The scores are spaCy's own: ``spacy evaluate`` runs ``nlp.evaluate``, i.e. the
component's scorer (exact-match spans, labelled, nesting allowed), and writes
``spans_KEY_p/r/f``, ``spans_KEY_per_type`` and ``speed`` to METRICS.json.
This module only reads that file and adds what spaCy does not print: each
label's number of gold spans in DATA, in one table with the micro average, and
a ``SPAN F1 = ...`` line. Nothing is evaluated again.
"""

import io
from collections import Counter
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import srsly


class MetricsError(Exception):
    """Missing files or metrics without the spans key's scores."""


def gold_support(data_path: str, spans_key: str) -> Tuple[Counter, int]:
    """Count the gold spans per label of a .spacy file.

    data_path (str): The .spacy file.
    spans_key (str): The key of doc.spans holding the gold spans.
    RETURNS (Tuple[Counter, int]): Gold spans per label, and the number of docs.
    """
    from spacy.tokens import DocBin
    from spacy.vocab import Vocab

    counts: Counter = Counter()
    n_docs = 0
    for doc in DocBin().from_disk(data_path).get_docs(Vocab()):
        counts.update(span.label_ for span in doc.spans.get(spans_key, []))
        n_docs += 1
    return counts, n_docs


def read_metrics(metrics_path: str, spans_key: str) -> Dict[str, Any]:
    """The scores ``spacy evaluate --output`` wrote; raises MetricsError without spans_KEY_f."""
    if not Path(metrics_path).is_file():
        raise MetricsError(f"metrics not found: {metrics_path} (run `python -m spacy evaluate ... --output` first)")
    scores = srsly.read_json(metrics_path)
    if f"spans_{spans_key}_f" not in scores:
        raise MetricsError(
            f"{metrics_path} has no spans_{spans_key}_* scores: does a component write "
            f"doc.spans[{spans_key!r}], and did `spacy evaluate` get --spans-key {spans_key}? "
            f"Keys: {sorted(scores)}"
        )
    return scores


def format_table(scores: Dict[str, Any], spans_key: str, support: Optional[Counter] = None) -> str:
    """A per-label table of P/R/F (in %) and gold counts, with the micro average last."""
    prefix = f"spans_{spans_key}"
    per_type = scores.get(f"{prefix}_per_type") or {}
    support = support or Counter()
    labels = sorted(set(per_type) | set(support))
    width = max([len(label) for label in labels] + [len("micro avg")])
    rule = f"{'-' * width}  {'-' * 6}  {'-' * 6}  {'-' * 6}  {'-' * 6}"
    out = io.StringIO()
    print(f"{'label':<{width}}  {'P':>6}  {'R':>6}  {'F':>6}  {'gold':>6}", file=out)
    print(rule, file=out)

    def row(name: str, p: Optional[float], r: Optional[float], f: Optional[float], n: int) -> None:
        cells = ["     -" if v is None else f"{v * 100:6.2f}" for v in (p, r, f)]
        print(f"{name:<{width}}  {'  '.join(cells)}  {n:>6}", file=out)

    for label in labels:
        s = per_type.get(label, {})
        row(label, s.get("p"), s.get("r"), s.get("f"), support.get(label, 0))
    print(rule, file=out)
    row("micro avg", scores.get(f"{prefix}_p"), scores.get(f"{prefix}_r"), scores.get(f"{prefix}_f"),
        sum(support.values()))
    return out.getvalue().rstrip("\n")


def report(metrics_path: str, data_path: str, spans_key: str = "sc") -> str:
    """The table and the SPAN F1 line for METRICS.json of ``spacy evaluate`` on DATA."""
    scores = read_metrics(metrics_path, spans_key)
    if not Path(data_path).is_file():
        raise MetricsError(f"evaluation data not found: {data_path}")
    support, n_docs = gold_support(data_path, spans_key)
    prefix = f"spans_{spans_key}"
    return "\n".join([
        f"{metrics_path} (spacy evaluate) on {data_path} ({n_docs} docs), doc.spans[{spans_key!r}]:",
        format_table(scores, spans_key, support),
        f"SPAN F1 = {scores[f'{prefix}_f'] * 100:.2f}  (P {scores[f'{prefix}_p'] * 100:.2f}, "
        f"R {scores[f'{prefix}_r'] * 100:.2f}; {scores.get('speed', 0):.0f} words/s)",
    ])

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

from ..pipeline.thresholds import TuneError
from .datasets import file_sha256


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


# --------------------------------------------------------------------------
# Test F1 before and after threshold tuning (`tune compare`)
# --------------------------------------------------------------------------


def shared_texts(tuning_data: str, test_data: str) -> Tuple[int, int]:
    """(test docs whose text is also in the tuning data, test docs)."""
    from spacy.tokens import DocBin
    from spacy.vocab import Vocab

    tuning = {doc.text for doc in DocBin().from_disk(tuning_data).get_docs(Vocab())}
    texts = [doc.text for doc in DocBin().from_disk(test_data).get_docs(Vocab())]
    return sum(text in tuning for text in texts), len(texts)


def leakage_warning(tuning_data: str, test_data: str) -> Optional[str]:
    """A warning when the test data are (partly) the data the thresholds were tuned on."""
    if file_sha256(tuning_data) == file_sha256(test_data):
        return (f"WARNING: the tuning data {tuning_data} and the test data {test_data} are the same "
                f"(sha256 {file_sha256(test_data)[:16]}...): the thresholds were tuned on this test set, so the "
                "'after' score is optimistic, not a held-out test score. (CLUENER's test split is its dev "
                "set: SPLITS.md.)")
    shared, total = shared_texts(tuning_data, test_data)
    if shared:
        return (f"WARNING: {shared} of the {total} test texts of {test_data} are also in the tuning data "
                f"{tuning_data}: the 'after' score is partly in-sample.")
    return None


def compare(before: str, after: str, tuning_data: str, test_data: str, spans_key: str = "sc") -> None:
    """Print test F1 before and after tuning (metrics files BEFORE, AFTER), with a warning when tuning saw the test data."""
    for path in (before, after, tuning_data, test_data):
        if not Path(path).is_file():
            raise TuneError(f"not found: {path}. Run the project's evaluate-test and tune steps first.")
    key = spans_key
    scores = [srsly.read_json(path) for path in (before, after)]
    if any(f"spans_{key}_f" not in s for s in scores):
        raise TuneError(f"{before} or {after} has no spans_{key}_f: check --spans-key.")
    (before_f, after_f) = (s[f"spans_{key}_f"] * 100 for s in scores)
    print(f"TEST F1 before tuning {before_f:.2f} ({before})")
    print(f"TEST F1 after tuning  {after_f:.2f} ({after}), {after_f - before_f:+.2f}")
    warning = leakage_warning(tuning_data, test_data)
    if warning:
        print(warning)

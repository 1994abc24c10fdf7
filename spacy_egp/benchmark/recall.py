"""Where a span model misses: recall of the gold spans by span length, doc length, label and nesting.

    python -m spacy_egp.benchmark.recall MODEL DATA.spacy --output results/X/recall.json [--spans-key sc]

Reads each gold span's own logit from the component's band (no decoding), so
it also shows how far below the threshold the misses are: recall at the
probabilities 0.5, 0.27 and 0.12 (logits 0, -1, -2). Then the other side: the
spans the pipeline writes (decoded, at its thresholds and cap), by span length,
with their precision and how many of the wrong ones overlap a gold span. Written
for the `efficient_globalpointer` component.
"""

import argparse
import json
from collections import defaultdict
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy
import spacy
from spacy.tokens import Doc, DocBin

from ..ml.util import doc_starts
from ..pipeline.nesting import nesting

LOGIT_CUTS = (0.0, -1.0, -2.0)
FACTORY = "efficient_globalpointer"


def gold_span_logits(model: str, data: str, spans_key: Optional[str] = None, batch_size: int = 64) -> List[dict]:
    """One row per gold span with a cell: label, length, doc length, nesting and its logit.

    The pipeline reads each doc's text through its own tokenizer, as it does for
    a user (and in training, unless gold_preproc); each gold span is found in
    those tokens by its characters, as spaCy's scorer aligns them. A span whose
    boundaries fall inside a token has no cell: logit -inf, a miss at any threshold.
    """
    nlp = spacy.load(model)
    name = next(name for name, _ in nlp.pipeline if nlp.get_pipe_meta(name).factory == FACTORY)
    pipe = nlp.get_pipe(name)
    key = spans_key or pipe.key
    gold_docs = list(DocBin().from_disk(data).get_docs(nlp.vocab))
    rows = []
    for i in range(0, len(gold_docs), batch_size):
        batch = gold_docs[i : i + batch_size]
        docs = list(nlp.pipe((doc.text for doc in batch), disable=[name]))
        band = pipe.model.ops.to_numpy(pipe.predict(docs).dataXd)
        for gold, doc, offset in zip(batch, docs, doc_starts(numpy, [len(doc) for doc in docs]).tolist()):
            rows.extend(_doc_rows(gold, doc, key, band[offset : offset + len(doc)], pipe.labels))
    return rows


def _doc_rows(gold: Doc, doc: Doc, key: str, band: numpy.ndarray, labels: Sequence[str]) -> List[dict]:
    """gold's spans (its own tokens: length, nesting) with the logit of their cell in doc's band."""
    spans = [span for span in gold.spans.get(key, []) if 0 < len(span) <= band.shape[1] and span.label_ in labels]
    found = nesting((span.start, span.end) for span in spans)
    rows = []
    for span in spans:
        cell = doc.char_span(span.start_char, span.end_char)
        logit = (float(band[cell.start, len(cell) - 1, labels.index(span.label_)])
                 if cell is not None and len(cell) <= band.shape[1] else -numpy.inf)
        rows.append({"label": span.label_, "length": len(span), "doc_length": len(gold),
                     "inside": (span.start, span.end) in found.inside,
                     "contains": (span.start, span.end) in found.containing, "logit": logit})
    return rows


def _length_bucket(length: int) -> str:
    return str(length) if length <= 3 else "4-7" if length <= 7 else "8-11" if length <= 11 else "12+"


def _doc_bucket(length: int) -> str:
    return "<=64" if length <= 64 else "65-128" if length <= 128 else "129-256" if length <= 256 else ">256"


BUCKETS = ["1", "2", "3", "4-7", "8-11", "12+", "<=64", "65-128", "129-256", ">256"]


def _order(group: str) -> tuple:
    return (BUCKETS.index(group), "") if group in BUCKETS else (len(BUCKETS), group)


GROUPINGS: Dict[str, Callable[[dict], str]] = {
    "span length (tokens)": lambda row: _length_bucket(row["length"]),
    "doc length (tokens)": lambda row: _doc_bucket(row["doc_length"]),
    "label": lambda row: row["label"],
    "inside another gold span": lambda row: str(row["inside"]),
    "contains another gold span": lambda row: str(row["contains"]),
}


def predicted_rows(model: str, data: str, spans_key: Optional[str] = None) -> List[dict]:
    """One row per span the pipeline writes: its length, whether it is gold, whether it overlaps a gold span."""
    nlp = spacy.load(model)
    name = next(name for name, _ in nlp.pipeline if nlp.get_pipe_meta(name).factory == FACTORY)
    key = spans_key or nlp.get_pipe(name).key
    gold_docs = list(DocBin().from_disk(data).get_docs(nlp.vocab))
    rows = []
    for doc, gold in zip(nlp.pipe(g.text for g in gold_docs), gold_docs):
        spans = {(s.start_char, s.end_char, s.label_) for s in gold.spans.get(key, [])}
        for span in doc.spans.get(key, []):
            rows.append({"length": len(span), "correct": (span.start_char, span.end_char, span.label_) in spans,
                         "overlaps_gold": any(start < span.end_char and span.start_char < end
                                              for start, end, _ in spans)})
    return rows


def precision_table(rows: List[dict]) -> Dict[str, dict]:
    """Per span-length bucket: spans predicted, precision, wrong ones overlapping a gold span."""
    groups = defaultdict(list)
    for row in rows:
        groups[_length_bucket(row["length"])].append(row)
    return {group: {"predicted": len(members), "precision": sum(r["correct"] for r in members) / len(members),
                    "wrong_overlapping_gold": sum(r["overlaps_gold"] and not r["correct"] for r in members)}
            for group, members in sorted(groups.items(), key=lambda item: _order(item[0]))}


def recall_table(rows: List[dict]) -> Dict[str, Dict[str, dict]]:
    """Per grouping and group: gold count and recall at each logit cut."""
    table = {}
    for grouping, key_of in GROUPINGS.items():
        groups = defaultdict(list)
        for row in rows:
            groups[key_of(row)].append(row["logit"])
        table[grouping] = {
            group: {"n": len(logits), **{f"recall_at_logit_{cut:g}": float((numpy.asarray(logits) >= cut).mean())
                                         for cut in LOGIT_CUTS}}
            for group, logits in sorted(groups.items(), key=lambda item: _order(item[0]))
        }
    return table


def format_markdown(table: Dict[str, Dict[str, dict]], title: str,
                    precision: Optional[Dict[str, dict]] = None) -> str:
    lines = [f"#### {title}", ""]
    for grouping, groups in table.items():
        lines += [f"| {grouping} | gold | recall at p 0.5 | at p 0.27 | at p 0.12 |", "|---|---|---|---|---|"]
        for group, row in groups.items():
            cuts = " | ".join(f"{100 * row[f'recall_at_logit_{cut:g}']:.1f}" for cut in LOGIT_CUTS)
            lines.append(f"| {group} | {row['n']:,} | {cuts} |")
        lines.append("")
    if precision:
        lines += ["| predicted span length (tokens) | predicted | precision | wrong, overlapping a gold span |",
                  "|---|---|---|---|"]
        lines += [f"| {group} | {row['predicted']:,} | {100 * row['precision']:.1f} | {row['wrong_overlapping_gold']:,} |"
                  for group, row in precision.items()]
        lines.append("")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m spacy_egp.benchmark.recall", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("data")
    parser.add_argument("--output", type=Path, required=True, help="JSON; a .md beside it gets the tables")
    parser.add_argument("--spans-key", default=None)
    parser.add_argument("--title", default=None)
    args = parser.parse_args(argv)
    table = recall_table(gold_span_logits(args.model, args.data, args.spans_key))
    precision = precision_table(predicted_rows(args.model, args.data, args.spans_key))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"model": args.model, "data": args.data, "table": table,
                                       "precision_by_length": precision}, indent=2))
    markdown = format_markdown(table, args.title or f"Recall of {args.model} on {args.data}", precision)
    args.output.with_suffix(".md").write_text(markdown + "\n")
    print(markdown)


if __name__ == "__main__":
    main()

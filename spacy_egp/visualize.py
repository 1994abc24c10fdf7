"""Render a pipeline's (nested) span predictions with displaCy's span style.

Command line::

    python -m spacy_egp.visualize MODEL DATA OUTPUT.html [--limit 8] [--spans-key sc]

Takes the first LIMIT docs of DATA (a .spacy file) that have nested gold spans,
topped up with the first other docs when there are fewer, and writes one HTML
page where each doc is shown twice: the gold spans and the predicted spans
(``displacy.render(..., style="span", options={"spans_key": KEY})``).
"""

import argparse
import sys
from pathlib import Path
from typing import List, Optional


def _has_nesting(doc, spans_key: str) -> bool:
    spans = sorted({(s.start, s.end) for s in doc.spans.get(spans_key, [])})
    return any(
        a != b and b[0] <= a[0] and a[1] <= b[1] for i, a in enumerate(spans) for b in spans
    )


def pick_docs(docs: list, spans_key: str, limit: int) -> list:
    """Up to LIMIT docs, those with nested gold spans first (in file order)."""
    nested = [doc for doc in docs if _has_nesting(doc, spans_key)]
    rest = [doc for doc in docs if not _has_nesting(doc, spans_key)]
    chosen = (nested + rest)[:limit]
    order = {id(doc): i for i, doc in enumerate(docs)}
    return sorted(chosen, key=lambda doc: order[id(doc)])


def render(model: str, data_path: str, output: str, *, spans_key: str = "sc", limit: int = 8) -> Path:
    import spacy
    from spacy import displacy
    from spacy.tokens import DocBin

    nlp = spacy.load(model)
    gold_docs = pick_docs(list(DocBin().from_disk(data_path).get_docs(nlp.vocab)), spans_key, limit)
    predicted = list(nlp.pipe(doc.text for doc in gold_docs))
    pages = []
    for i, (gold, pred) in enumerate(zip(gold_docs, predicted)):
        gold.user_data["title"] = f"doc {i}: gold ({len(gold.spans.get(spans_key, []))} spans)"
        pred.user_data["title"] = f"doc {i}: predicted ({len(pred.spans.get(spans_key, []))} spans)"
        if spans_key not in gold.spans:
            gold.spans[spans_key] = []
        if spans_key not in pred.spans:
            pred.spans[spans_key] = []
        pages.extend([gold, pred])
    html = displacy.render(pages, style="span", options={"spans_key": spans_key}, page=True, jupyter=False)
    path = Path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html, encoding="utf-8")
    return path


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m spacy_egp.visualize",
        description="Write an HTML page of gold and predicted (nested) spans, displaCy span style.",
    )
    parser.add_argument("model", help="pipeline folder or installed package name")
    parser.add_argument("data", help=".spacy file with gold spans")
    parser.add_argument("output", help="HTML file to write")
    parser.add_argument("--spans-key", default="sc")
    parser.add_argument("--limit", type=int, default=8, help="number of docs (default 8)")
    args = parser.parse_args(argv)
    if not Path(args.data).exists():
        print(f"error: data not found: {args.data}", file=sys.stderr)
        return 1
    path = render(args.model, args.data, args.output, spans_key=args.spans_key, limit=args.limit)
    print(f"wrote {path} ({args.limit} docs, gold and predicted, doc.spans[{args.spans_key!r}])")
    return 0


if __name__ == "__main__":
    sys.exit(main())

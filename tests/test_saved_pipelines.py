"""Pipelines saved by spacy-egp 0.2.0 load with the current code and predict the same spans and relations.

tests/data/v0.2.0/ holds an efficient_globalpointer and a gplinker pipeline written by
make_fixtures.py at the 0.2.0 commit, with the predictions they made then.
"""

import json
from pathlib import Path
from typing import Any, Dict, List

import pytest
import spacy

FIXTURES = Path(__file__).resolve().parent / "data" / "v0.2.0"
SAVED = json.loads((FIXTURES / "predictions.json").read_text(encoding="utf8"))


def predictions(nlp: spacy.language.Language, texts: List[str]) -> List[Dict[str, Any]]:
    """The same record make_fixtures.py wrote: spans, their scores and relations per text."""
    out = []
    for doc in nlp.pipe(texts):
        spans = [[s.start, s.end, s.label_] for s in doc.spans["sc"]]
        scores = [float(x) for x in doc.spans["sc"].attrs.get("scores", [])]
        relations = [[r.head.start, r.head.end, r.label, r.tail.start, r.tail.end, float(r.score)]
                     for r in (doc._.relations if doc.has_extension("relations") else [])]
        out.append({"text": doc.text, "spans": spans, "scores": scores, "relations": relations})
    return out


def flat(records: List[Dict[str, Any]], field: str) -> List[float]:
    """One list of the numbers under field over all records (pytest.approx compares flat lists)."""
    return [value for record in records for value in record[field]]


@pytest.mark.parametrize("saved", SAVED, ids=[fixture["pipeline"] for fixture in SAVED])
def test_pipeline_saved_by_0_2_0_predicts_the_same(saved):
    nlp = spacy.load(FIXTURES / saved["pipeline"])
    expected = saved["predictions"]
    got = predictions(nlp, [record["text"] for record in expected])
    assert [r["spans"] for r in got] == [r["spans"] for r in expected]
    assert flat(got, "scores") == pytest.approx(flat(expected, "scores"), abs=1e-5)
    assert [[rel[:5] for rel in r["relations"]] for r in got] == [[rel[:5] for rel in r["relations"]]
                                                                   for r in expected]
    relation_scores = lambda records: [rel[5] for r in records for rel in r["relations"]]
    assert relation_scores(got) == pytest.approx(relation_scores(expected), abs=1e-5)


def test_fixtures_predict_something():
    """Guards the check above against fixtures that predict nothing (an empty list equals an empty list)."""
    by_name = {fixture["pipeline"]: fixture["predictions"] for fixture in SAVED}
    assert sum(len(record["spans"]) for record in by_name["egp"]) >= 10
    assert sum(len(record["relations"]) for record in by_name["gplinker"]) >= 3

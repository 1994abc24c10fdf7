"""Writes the pipelines that tests/test_saved_pipelines.py loads: run once, at spacy-egp 0.2.0.

An `efficient_globalpointer` and a `gplinker` pipeline with a tiny tok2vec, trained for a few
epochs on synthetic docs, saved with `nlp.to_disk`, and the spans and relations they predict
on a few texts (predictions.json). The test loads them with the current code and asserts the
same predictions, so a pipeline saved by the previous release keeps loading and predicting.

    python tests/data/v0.2.0/make_fixtures.py   # from the repository root, at the 0.2.0 commit
"""

import json
import random
import sys
from pathlib import Path
from typing import Any, Dict, List

import spacy
from spacy.language import Language
from spacy.tokens import Doc, Span
from spacy.training import Example

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))
from conftest import nested_examples, train  # noqa: E402

TINY_TOK2VEC = {
    "@architectures": "spacy.Tok2Vec.v2",
    "embed": {
        "@architectures": "spacy.MultiHashEmbed.v2",
        "width": 16,
        "rows": [500, 100, 100, 100],
        "attrs": ["NORM", "PREFIX", "SUFFIX", "SHAPE"],
        "include_static_vectors": False,
    },
    "encode": {"@architectures": "spacy.MaxoutWindowEncoder.v2", "width": 16, "window_size": 1,
               "maxout_pieces": 2, "depth": 1},
}
PEOPLE = ["John Smith", "Mary Jones", "Ann Lee"]
ORGS = ["Acme Corp", "Globex Inc", "Initech Ltd"]
PLACES = ["Paris", "Berlin", "Rome"]


def egp_pipeline() -> Language:
    """A blank English pipeline with an efficient_globalpointer on the tiny tok2vec."""
    nlp = spacy.blank("en")
    model = {"@architectures": "spacy_egp.EfficientGlobalPointer.v2", "head_size": 8, "tok2vec": TINY_TOK2VEC}
    nlp.add_pipe("efficient_globalpointer", config={"model": model})
    return nlp


def gplinker_pipeline() -> Language:
    """A blank English pipeline with a gplinker on the tiny tok2vec."""
    nlp = spacy.blank("en")
    model = {"@architectures": "spacy_egp.GPLinker.v2", "head_size": 8, "pair_head_size": 8,
             "max_pair_distance": 16, "tok2vec": TINY_TOK2VEC}
    nlp.add_pipe("gplinker", config={"model": model})
    return nlp


def relation_examples(nlp: Language, n_docs: int, seed: int = 0) -> List[Example]:
    """'PERSON works for ORG in PLACE .' with Work_For and OrgBased_In relations."""
    rng = random.Random(seed)
    examples = []
    for _ in range(n_docs):
        person, org, place = rng.choice(PEOPLE).split(), rng.choice(ORGS).split(), [rng.choice(PLACES)]
        words = person + ["works", "for"] + org + ["in"] + place + ["."]
        p_end, o_start = len(person), len(person) + 2
        o_end = o_start + len(org)
        reference = Doc(nlp.vocab, words=words)
        people, company, city = (Span(reference, 0, p_end, "Peop"), Span(reference, o_start, o_end, "Org"),
                                 Span(reference, o_end + 1, o_end + 2, "Loc"))
        reference.spans["sc"] = [people, company, city]
        reference._.relations = [(people, "Work_For", company), (company, "OrgBased_In", city)]
        examples.append(Example(Doc(nlp.vocab, words=words), reference))
    return examples


def predictions(nlp: Language, texts: List[str]) -> List[Dict[str, Any]]:
    """The spans (with scores) and relations the pipeline predicts for each text."""
    out = []
    for doc in nlp.pipe(texts):
        spans = [[s.start, s.end, s.label_] for s in doc.spans["sc"]]
        scores = [float(x) for x in doc.spans["sc"].attrs.get("scores", [])]
        relations = [[r.head.start, r.head.end, r.label, r.tail.start, r.tail.end, float(r.score)]
                     for r in (doc._.relations if doc.has_extension("relations") else [])]
        out.append({"text": doc.text, "spans": spans, "scores": scores, "relations": relations})
    return out


def save(nlp: Language, name: str, texts: List[str]) -> Dict[str, Any]:
    """Save the pipeline under HERE/name; RETURNS its predictions on texts."""
    nlp.to_disk(HERE / name)
    return {"pipeline": name, "predictions": predictions(nlp, texts)}


def main() -> None:
    """Train both pipelines and write them with predictions.json."""
    egp = egp_pipeline()
    examples = nested_examples(egp, 40, seed=3)
    train(egp, examples, n_epochs=6)
    egp_texts = [eg.reference.text for eg in examples[:6]]
    linker = gplinker_pipeline()
    train(linker, relation_examples(linker, 30), n_epochs=20)
    linker_texts = ["Mary Jones works for Acme Corp in Rome .", "Ann Lee works for Initech Ltd in Paris .",
                    "John Smith works for Globex Inc in Berlin ."]
    fixtures = [save(egp, "egp", egp_texts), save(linker, "gplinker", linker_texts)]
    (HERE / "predictions.json").write_text(json.dumps(fixtures, indent=1) + "\n", encoding="utf8")


if __name__ == "__main__":
    main()

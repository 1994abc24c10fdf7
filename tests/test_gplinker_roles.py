"""gplinker's entity_roles: the reference's two untyped entity channels, learned from relation arguments only."""

import random

import numpy
import pytest
import spacy
from spacy.tokens import Doc, Span
from spacy.training import Example

from conftest import train
from spacy_egp.pipeline.gold import GoldProblems, gold_cells, role_gold_spans
from spacy_egp.pipeline.gplinker import ROLE_LABELS, relations_score

SMALL_TOK2VEC = {
    "@architectures": "spacy.HashEmbedCNN.v2", "width": 48, "depth": 2, "embed_size": 1000,
    "window_size": 1, "maxout_pieces": 2, "subword_features": True, "pretrained_vectors": None,
}
PEOPLE = ["Ann Lee", "Bob", "Carl Smith", "Dana", "Eve Stone", "Fred"]
PLACES = ["Paris", "New York", "Rome", "Oslo", "San Jose"]
FIRMS = ["Acme Corp", "Initech", "Globex Inc", "Umbrella"]


def untyped_example(nlp, rng: random.Random) -> Example:
    """'<person> works for <firm> in <place> .', relations Work_For and Based_In; no entity types, no doc.spans."""
    person, firm, place = rng.choice(PEOPLE).split(), rng.choice(FIRMS).split(), rng.choice(PLACES).split()
    filler = rng.choice([[], ["now"], ["still", "happily"]])
    words = person + filler + ["works", "for"] + firm + ["in"] + place + ["."]
    p0 = 0
    f0 = len(person) + len(filler) + 2
    l0 = f0 + len(firm) + 1
    reference = Doc(nlp.vocab, words=words)
    person_span, firm_span = Span(reference, p0, p0 + len(person)), Span(reference, f0, f0 + len(firm))
    place_span = Span(reference, l0, l0 + len(place))
    reference._.relations = [(person_span, "Work_For", firm_span), (firm_span, "Based_In", place_span)]
    return Example(Doc(nlp.vocab, words=words), reference)


def roles_pipeline():
    nlp = spacy.blank("en")
    nlp.add_pipe("gplinker", config={"entity_roles": True, "model": {
        "tok2vec": SMALL_TOK2VEC, "head_size": 16, "pair_head_size": 16, "max_span_length": 8}})
    return nlp


def test_role_gold_spans_are_the_relation_arguments():
    nlp = spacy.blank("en")
    eg = untyped_example(nlp, random.Random(1))
    (person, _, firm), (_, _, place) = [(r.head, r.label, r.tail) for r in eg.reference._.relations]
    spans = role_gold_spans(eg, ROLE_LABELS, GoldProblems("t"))
    head, tail = ROLE_LABELS
    # the firm is the tail of one relation and the head of the other: in both channels
    assert spans == sorted([(person.start, person.end, head), (firm.start, firm.end, tail),
                            (firm.start, firm.end, head), (place.start, place.end, tail)])
    cells = gold_cells([eg], "sc", list(ROLE_LABELS), 8, GoldProblems("t"),
                       spans_of=lambda e: role_gold_spans(e, ROLE_LABELS, GoldProblems("t")))
    assert sorted(map(tuple, cells.tolist())) == sorted(
        (s, e - s - 1, ROLE_LABELS.index(label)) for s, e, label in spans)


def test_entity_roles_learn_untyped_relations():
    nlp = roles_pipeline()
    rng = random.Random(0)
    examples = [untyped_example(nlp, rng) for _ in range(40)]
    train(nlp, examples, n_epochs=25, learn_rate=0.005)
    pipe = nlp.get_pipe("gplinker")
    assert pipe.labels == tuple(sorted(ROLE_LABELS)) and pipe.relation_labels == ("Based_In", "Work_For")
    held_out = [untyped_example(nlp, random.Random(100 + i)) for i in range(20)]
    predicted = [Example(doc, eg.reference) for doc, eg in zip(nlp.pipe(eg.reference.text for eg in held_out),
                                                              held_out)]
    scores = relations_score(predicted, spans_key="sc")
    print({key: scores[key] for key in ("relations_p", "relations_r", "relations_f")})
    # untyped data: the arguments carry no type, so strict and untyped are the same figure
    assert scores["relations_f"] == scores["relations_untyped_f"] and scores["relations_f"] >= 0.9
    doc = predicted[0].predicted
    assert {span.label_ for span in doc.spans["sc"]} <= set(ROLE_LABELS)
    assert all(r.head.label_ == "" and r.tail.label_ == "" for r in doc._.relations)


def test_entity_roles_refuse_typed_labels():
    nlp = roles_pipeline()
    eg = untyped_example(nlp, random.Random(2))
    with pytest.raises(ValueError, match="entity_roles"):
        nlp.get_pipe("gplinker").initialize(lambda: [eg], labels=["Peop", "Org"])
    # typed mode (the default) still asks for the arguments to be gold entities
    typed = spacy.blank("en")
    typed.add_pipe("gplinker", config={"model": {"tok2vec": SMALL_TOK2VEC}})
    eg.reference.spans["sc"] = [Span(eg.reference, 0, 1, "Peop")]
    optimizer = typed.initialize(lambda: [eg])
    with pytest.raises(ValueError, match="not an entity"):
        typed.update([eg], sgd=optimizer)
    assert numpy.isfinite(typed.get_pipe("gplinker").predict([eg.predicted]).entities.dataXd).any()

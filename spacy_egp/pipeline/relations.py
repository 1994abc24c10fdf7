"""doc._.relations and the relation storage format.

A doc's relations live in doc.user_data as plain token offsets
(RelationOffsets), so Doc.to_bytes and DocBin(store_user_data=True) keep them,
gold ones included; `doc._.relations` reads them as Relation records of Spans
and writes them back as offsets. `register_extensions` runs at
`import spacy_egp`.
"""

from typing import Iterable, List, NamedTuple, Optional, Tuple

from spacy.tokens import Doc, Span

from .nesting import Span3

# doc.user_data key of a doc's relations, stored as plain tuples (RelationOffsets)
# so that DocBin(store_user_data=True) and Doc.to_bytes keep them.
RELATIONS_KEY = "spacy_egp.relations"


class RelationOffsets(NamedTuple):
    """One relation as stored in doc.user_data: token offsets (end exclusive) and labels."""

    head_start: int
    head_end: int
    head_label: str
    label: str
    tail_start: int
    tail_end: int
    tail_label: str
    score: Optional[float] = None  # None for gold relations

    @property
    def head(self) -> Span3:
        return (self.head_start, self.head_end, self.head_label)

    @property
    def tail(self) -> Span3:
        return (self.tail_start, self.tail_end, self.tail_label)


def relation_offsets(doc: Doc) -> List[RelationOffsets]:
    """The relations stored on a doc (none if it has none)."""
    return [RelationOffsets(*record) for record in doc.user_data.get(RELATIONS_KEY, ())]


def store_relation_offsets(doc: Doc, records: Iterable[RelationOffsets]) -> None:
    """Store a doc's relations, replacing any; plain tuples, which msgpack round-trips."""
    doc.user_data[RELATIONS_KEY] = [tuple(record) for record in records]



class Relation(NamedTuple):
    """A relation of doc._.relations: head entity, relation label, tail entity, score (None for gold)."""

    head: Span
    label: str
    tail: Span
    score: Optional[float] = None


def get_relations(doc: Doc) -> List[Relation]:
    """doc._.relations: the doc's relations, their arguments as labelled Spans."""
    return [
        Relation(
            Span(doc, record.head_start, record.head_end, label=record.head_label),
            record.label,
            Span(doc, record.tail_start, record.tail_end, label=record.tail_label),
            record.score,
        )
        for record in relation_offsets(doc)
    ]


def set_relations(doc: Doc, relations: Iterable[Tuple]) -> None:
    """doc._.relations = [(head Span, label, tail Span[, score]), ...]: store them as token offsets."""
    records = []
    for relation in relations:
        head, label, tail, score = (tuple(relation) + (None,))[:4]
        for argument in (head, tail):
            if not isinstance(argument, Span) or argument.doc is not doc:
                raise ValueError(f"A relation's arguments must be Spans of this doc, got {argument!r} in {relation!r}.")
        if not isinstance(label, str) or not label:
            raise ValueError(f"A relation's label must be a non-empty string, got {label!r} in {relation!r}.")
        records.append(
            RelationOffsets(head.start, head.end, head.label_, label, tail.start, tail.end, tail.label_, score)
        )
    store_relation_offsets(doc, records)



def register_extensions() -> None:
    """Register doc._.relations; a second call (or an extension already set by the user) changes nothing."""
    if not Doc.has_extension("relations"):
        Doc.set_extension("relations", getter=get_relations, setter=set_relations)

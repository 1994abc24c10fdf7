"""Band cells back to spans and relations: thresholds, the per-doc cap, GPLinker's decoding rule.

`cells_above` reads the cells of a (T, W, K) logit band (spacy_egp.ml.heads)
above their label's threshold, at most a cap per doc, in bounded memory;
`decode_relations` pairs predicted entities through their head and tail pairs.
"""

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy

from ..ml.util import doc_starts
from .nesting import Span3

# Cells compared with the thresholds at once: bounds decoding's working memory
# (a boolean and a few indices per cell) whatever the doc length.
DECODE_CHUNK_CELLS = 1 << 21


@dataclass
class DecodedCells:
    """The cells kept by `cells_above`, ordered by (token, width, label)."""

    token: numpy.ndarray
    width: numpy.ndarray
    label: numpy.ndarray
    logit: numpy.ndarray
    capped_docs: List[int]  # docs that had more cells above threshold than their cap


def cells_above(
    band: numpy.ndarray, lengths: numpy.ndarray, thresholds: numpy.ndarray, caps: numpy.ndarray
) -> DecodedCells:
    """The cells of a (T, W, K) logit band above their label's threshold, at most caps[d] per doc.

    thresholds (K,) logits (float64, so that a float32 logit is compared
    exactly); a cell is kept when its logit is >= its label's threshold, the
    only test of a cell. caps (n_docs,) ints: where a doc has more cells
    above threshold than its cap, its highest-scoring cells are kept.
    """
    lengths = numpy.asarray(lengths, dtype="int64")
    starts = doc_starts(numpy, lengths)
    row_cells = max(1, band.shape[1] * band.shape[2])
    parts, capped = [], []
    doc = 0
    while doc < len(lengths):
        # as many whole docs as fit in one chunk (at least one)
        last = doc + 1
        while last < len(lengths) and (starts[last] + lengths[last] - starts[doc]) * row_cells <= DECODE_CHUNK_CELLS:
            last += 1
        if last == doc + 1 and lengths[doc] * row_cells > DECODE_CHUNK_CELLS:
            found, over = _long_doc_cells(band, starts[doc], lengths[doc], thresholds, int(caps[doc]))
            capped.extend([doc] if over else [])
        else:
            found, over_docs = _docs_cells(band, starts, lengths, doc, last, thresholds, caps)
            capped.extend(over_docs)
        parts.append(found)
        doc = last
    token, width, label, logit = (numpy.concatenate([p[i] for p in parts]) if parts else _EMPTY[i] for i in range(4))
    return DecodedCells(token, width, label, logit, capped)


_EMPTY = (numpy.zeros(0, "int64"),) * 3 + (numpy.zeros(0, "float32"),)


def _nonzero_cells(block: numpy.ndarray, thresholds: numpy.ndarray, first_token: int) -> Tuple[numpy.ndarray, ...]:
    token, width, label = numpy.nonzero(block >= thresholds)
    return token + first_token, width, label, block[token, width, label]


def _keep_top(found: Tuple[numpy.ndarray, ...], where: numpy.ndarray, cap: int) -> numpy.ndarray:
    """Indices (sorted) of the `cap` highest logits among found[where]."""
    candidates = numpy.flatnonzero(where)
    if len(candidates) <= cap:
        return candidates
    top = numpy.argpartition(-found[3][candidates], cap - 1)[:cap] if cap > 0 else []
    return numpy.sort(candidates[top])


def _docs_cells(band, starts, lengths, first, last, thresholds, caps) -> Tuple[Tuple[numpy.ndarray, ...], List[int]]:
    """Cells of docs first..last-1 from one comparison over their rows."""
    begin, end = starts[first], starts[last - 1] + lengths[last - 1]
    found = _nonzero_cells(band[begin:end], thresholds, begin)
    doc_of = numpy.searchsorted(starts[first:last], found[0], side="right") - 1 + first
    counts = numpy.bincount(doc_of - first, minlength=last - first)
    over = [first + int(i) for i in numpy.flatnonzero(counts > caps[first:last])]
    if over:
        keep = numpy.ones(len(found[0]), bool)
        for doc in over:
            keep[doc_of == doc] = False
            keep[_keep_top(found, doc_of == doc, int(caps[doc]))] = True
        found = tuple(array[keep] for array in found)
    return found, over


def _long_doc_cells(band, start, length, thresholds, cap) -> Tuple[Tuple[numpy.ndarray, ...], bool]:
    """Cells of one long doc, its rows compared chunk by chunk; never more than 2 * cap kept at once."""
    rows = max(1, DECODE_CHUNK_CELLS // max(1, band.shape[1] * band.shape[2]))
    kept, n_kept, over = [], 0, False
    for begin in range(start, start + length, rows):
        found = _nonzero_cells(band[begin : min(begin + rows, start + length)], thresholds, begin)
        kept.append(found)
        n_kept += len(found[0])
        if n_kept > 2 * cap:
            kept, n_kept, over = [_top_of(kept, cap)], cap, True
    if n_kept > cap:
        kept, over = [_top_of(kept, cap)], True
    return tuple(numpy.concatenate([k[i] for k in kept]) for i in range(4)), over


def _top_of(kept: List[Tuple[numpy.ndarray, ...]], cap: int) -> Tuple[numpy.ndarray, ...]:
    found = tuple(numpy.concatenate([k[i] for k in kept]) for i in range(4))
    index = _keep_top(found, numpy.ones(len(found[0]), bool), cap)
    return tuple(array[index] for array in found)


def decode_relations(
    entities: Sequence[Span3],
    head_pairs: Dict[Tuple[int, int, int], float],
    tail_pairs: Dict[Tuple[int, int, int], float],
    *,
    tails: Optional[Sequence[Span3]] = None,
    entity_scores: Optional[Sequence[float]] = None,
) -> List[Tuple[Span3, int, Span3, float]]:
    """GPLinker's decoding rule: the relations (head entity, relation index, tail entity, score).

    A relation r holds from entity s to entity o (two entities of different
    boundaries) when both its head pair (r, s.start, o.start) and its tail pair
    (r, s.end - 1, o.end - 1) are among the pairs kept (at or above threshold);
    its score is the lower of the two pairs' probabilities. head_pairs and
    tail_pairs map (relation index, first token, second token) to a probability.

    An entity predicted with several types is ONE argument, of its
    highest-scoring type (entity_scores, in the order of entities; without
    them, the first label in sorted order): the pairs see boundaries only, so
    each type would repeat the relation and all but one would count against
    precision. tails: the candidate tail entities (entity roles: the objects),
    default the entities themselves.
    """
    heads = _one_type_per_boundary(entities, entity_scores)
    tails = heads if tails is None else _one_type_per_boundary(tails, None)
    heads_by_start: Dict[int, List[Span3]] = {}
    for entity in heads:
        heads_by_start.setdefault(entity[0], []).append(entity)
    tails_by_start: Dict[int, List[Span3]] = {}
    for entity in tails:
        tails_by_start.setdefault(entity[0], []).append(entity)
    found = []
    for (relation, first, second), head_score in head_pairs.items():
        for head in heads_by_start.get(first, ()):
            for tail in tails_by_start.get(second, ()):
                tail_score = tail_pairs.get((relation, head[1] - 1, tail[1] - 1))
                if tail_score is not None and head[:2] != tail[:2]:
                    found.append((head, relation, tail, min(head_score, tail_score)))
    return sorted(found)


def _one_type_per_boundary(entities: Sequence[Span3], scores: Optional[Sequence[float]]) -> List[Span3]:
    """One entity per (start, end): the highest-scoring label (ties and no scores: the first in sorted order)."""
    best: Dict[Tuple[int, int], Tuple[float, Span3]] = {}
    order = sorted(range(len(entities)), key=lambda i: entities[i])
    for i in order:
        entity = entities[i]
        score = scores[i] if scores is not None else 0.0
        kept = best.get(entity[:2])
        if kept is None or score > kept[0]:
            best[entity[:2]] = (score, entity)
    return sorted(entity for _, entity in best.values())

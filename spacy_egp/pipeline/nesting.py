"""How spans overlap: the one nesting check of the package.

Used by the components' gold handling (duplicate and crossing gold spans), the
converters' reports, the displaCy page and the benchmark's nested-span scores.
"""

from dataclasses import dataclass, field
from typing import Iterable, List, Set, Tuple

Boundary = Tuple[int, int]
Span3 = Tuple[int, int, str]  # (start token, end token exclusive, label)


@dataclass
class Nesting:
    """How a set of distinct (start, end) boundaries (end exclusive) overlap.

    nested_pairs: pairs (outer, inner) with inner inside outer;
    inside: the boundaries that lie inside another; containing: those that
    contain another; crossing_pairs: pairs that overlap without nesting.
    """

    nested_pairs: List[Tuple[Boundary, Boundary]] = field(default_factory=list)
    inside: Set[Boundary] = field(default_factory=set)
    containing: Set[Boundary] = field(default_factory=set)
    crossing_pairs: List[Tuple[Boundary, Boundary]] = field(default_factory=list)

    @property
    def nested(self) -> Set[Boundary]:
        """The boundaries that contain, or lie inside, another one."""
        return self.inside | self.containing


def nesting(boundaries: Iterable[Boundary]) -> Nesting:
    """Classify every overlapping pair of the distinct boundaries (end exclusive)."""
    spans = sorted(set(boundaries))
    found = Nesting()
    for i, (a_start, a_end) in enumerate(spans):
        for b_start, b_end in spans[i + 1 :]:
            if b_start >= a_end:
                break
            # sorted: a_start <= b_start < a_end
            if b_end <= a_end or b_start == a_start:
                outer, inner = ((a_start, a_end), (b_start, b_end)) if b_end <= a_end else ((b_start, b_end), (a_start, a_end))
                found.nested_pairs.append((outer, inner))
                found.inside.add(inner)
                found.containing.add(outer)
            else:
                found.crossing_pairs.append(((a_start, a_end), (b_start, b_end)))
    return found


"""Small facts shared by the heads, the components and the tools: one helper each.

- A batch's docs are concatenated (T tokens in all); `doc_starts` gives the
  index of each doc's first token in that concatenation.
- Thresholds and priors are probabilities, the heads' cells logits:
  `probability_to_logit` and `sigmoid` convert between them.
"""

import math
from typing import Any, Union

import numpy


def doc_starts(xp: Any, lengths: Any) -> Any:
    """The index of each doc's first token in the concatenation of the docs' tokens.

    xp (module): numpy or cupy, the array module of `lengths` (e.g. `ops.xp`).
    lengths (array-like): The docs' lengths in tokens, in batch order.
    RETURNS (array): int64 starts, [0, len(doc 0), len(doc 0) + len(doc 1), ...], one per doc.
    """
    lengths = xp.asarray(lengths).astype("int64", copy=False)
    return xp.cumsum(lengths) - lengths


def probability_to_logit(probability: float) -> float:
    """The logit of a probability, in float64: 0 -> the lowest finite float, 1 -> inf.

    As a threshold: a cell is kept when its (float32) logit is >= this,
    exactly when the sigmoid of the logit is at least the probability, so the
    reported float32 score is never below float32(probability). The lowest
    finite float for 0 keeps every cell of a doc but never the -inf cells
    outside docs. As a prior: the bias that makes an untrained cell's
    probability `probability`.
    """
    if probability <= 0:
        return -numpy.finfo("float64").max
    if probability >= 1:
        return numpy.inf
    return math.log(probability) - math.log1p(-probability)


def sigmoid(logits: Union[float, numpy.ndarray], dtype: str = "float32") -> numpy.ndarray:
    """The probabilities of logits, computed in float64 without overflow, returned in `dtype`.

    Each sign gets the form that cannot overflow: 1 / (1 + e^-x) for x >= 0,
    e^x / (1 + e^x) below, both with e^-|x| <= 1; so -inf -> 0 and inf -> 1.
    """
    x = numpy.asarray(logits, dtype="float64")
    small = numpy.exp(-numpy.abs(x))
    return numpy.where(x >= 0, 1.0 / (1.0 + small), small / (1.0 + small)).astype(dtype)

"""The multi-label categorical cross-entropy (ZLPR) of GlobalPointer.

For one doc and one label, with P the gold cells and N the other valid cells:

    loss = log(1 + sum_{n in N} exp(s_n)) + log(1 + sum_{p in P} exp(-s_p))

The 1 (a logit 0 in the log-sum-exp) is what makes 0 the decision threshold.
Invalid cells (spans past the end of the doc or longer than max_span_length)
take no part: they are dropped by boolean selection (set to -inf before the
exponential), never pushed down with a large finite constant.

Loss scale. The reference (bert4keras `global_pointer_crossentropy`) averages
this quantity over every (doc, label) row of the batch, and so do we: the loss
is NOT summed over cells or spans and does not grow with the batch size. At
initialisation (logits near 0) a row costs about log(1 + #cells), e.g. ~6.5 for
a 37-token doc, so a first loss of 5-8 is normal; a well-fitted model has rows
near 0.01-0.1. spaCy prints the SUM of these batch means since the last
evaluation, so the printed figure also scales with `eval_frequency`.

The sparse variant takes the positives as indices, as the reference's
`sparse_multilabel_categorical_crossentropy` does, so no dense gold array is
built. Unlike the reference it computes the negative term over the non-gold
cells directly, not by subtracting the gold cells' mass from the total (which
cancels in float32 at large logits); so it equals the dense loss up to
rounding for any logits.
"""

from typing import Tuple

from thinc.api import Ops
from thinc.types import Floats2d, Floats3d, Ints1d


def _segment_log1p_sum_exp(
    ops: Ops, values: Floats3d, lengths: Ints1d, with_one: bool = True
) -> Tuple[Floats2d, Floats3d]:
    """Per segment and label: log(1 + sum(exp(values))) over the segment's cells.

    values (T, W, K) with -inf on the cells that take no part; lengths: rows
    per segment (tokens per doc), all > 0. RETURNS the (B, K) values and
    d(value)/d(values) (T, W, K). Each segment is shifted by its own maximum,
    so logits of any size give finite results. with_one=False drops the 1
    (a plain log-sum-exp; every segment must then have a finite value).
    """
    xp = ops.xp
    top = ops.reduce_max(values.max(axis=1), lengths)[0]
    if with_one:
        top = xp.maximum(top, 0)
    exps = xp.exp(values - xp.repeat(top, lengths, axis=0)[:, None, :])
    totals = ops.reduce_sum(exps.sum(axis=1), lengths)
    if with_one:
        totals += xp.exp(-top)
    grads = exps / xp.repeat(totals, lengths, axis=0)[:, None, :]
    return top + xp.log(totals), grads


def _batch_rows(lengths: Ints1d, n_labels: int) -> int:
    return max(len(lengths) * n_labels, 1)


def zlpr_loss(
    ops: Ops, scores: Floats3d, valid, gold, lengths: Ints1d
) -> Tuple[float, Floats3d]:
    """Dense ZLPR averaged over the (doc, label) rows of a batch, as in the reference.

    scores (T, W, K): band of logits of the concatenated docs; valid (T, W) and
    gold (T, W, K): boolean; lengths: tokens per doc (empty docs count as rows
    of loss 0, as padding rows do in the reference).
    RETURNS (float, Floats3d): the loss and d(loss)/d(scores).
    """
    xp = ops.xp
    n_rows = _batch_rows(lengths, scores.shape[2])
    lengths = ops.asarray1i(lengths)
    lengths = lengths[lengths > 0]
    if scores.size == 0:
        return 0.0, ops.alloc3f(*scores.shape)
    valid = valid[:, :, None]
    negative = xp.where(valid & ~gold, scores, -xp.inf)
    positive = xp.where(valid & gold, -scores, -xp.inf)
    neg_loss, neg_grad = _segment_log1p_sum_exp(ops, negative, lengths)
    pos_loss, pos_grad = _segment_log1p_sum_exp(ops, positive, lengths)
    loss = float(neg_loss.sum() + pos_loss.sum()) / n_rows
    return loss, ((neg_grad - pos_grad) / n_rows).astype("float32")


def sparse_zlpr_loss(
    ops: Ops, scores: Floats3d, valid, positives, lengths: Ints1d
) -> Tuple[float, Floats3d]:
    """Sparse ZLPR: the value and gradient of `zlpr_loss`, without a dense gold array.

    positives (P, 3): the (t, w, label) band cells of the gold spans, each once.
    The negative term is the log-sum-exp over the non-gold cells themselves:
    the gold cells of a private copy of the band are set to -inf. (The
    reference's A + log(1 - exp(G - A)), with A over all cells and G over the
    gold ones, cancels in float32 once a gold logit is large: the gradient
    changes sign near 14 and vanishes from 16 on.) So it equals the dense loss
    up to rounding for any logits.
    """
    xp = ops.xp
    n_rows = _batch_rows(lengths, scores.shape[2])
    lengths = ops.asarray1i(lengths)
    nonempty = lengths[lengths > 0]
    if scores.size == 0:
        return 0.0, ops.alloc3f(*scores.shape)
    t, w, label = (xp.asarray(positives, dtype="int64").reshape((-1, 3))[:, i] for i in range(3))
    negative = xp.where(valid[:, :, None], scores, -xp.inf)
    negative[t, w, label] = -xp.inf
    neg_loss, d_scores = _segment_log1p_sum_exp(ops, negative, nonempty)
    loss = float(neg_loss.sum())
    if len(t):
        # Gold cells grouped by (doc, label) row, each row a segment of -logits.
        doc = xp.searchsorted(xp.cumsum(nonempty), t, side="right")
        order = xp.argsort(doc * scores.shape[2] + label, kind="stable")
        t, w, label, doc = t[order], w[order], label[order], doc[order]
        _, sizes = xp.unique(doc * scores.shape[2] + label, return_counts=True)
        gold = scores[t, w, label][:, None, None]
        pos_loss, pos_grad = _segment_log1p_sum_exp(ops, -gold, ops.asarray1i(sizes))
        d_scores[t, w, label] -= pos_grad[:, 0, 0]
        loss += float(pos_loss.sum())
    return loss / n_rows, (d_scores / n_rows).astype("float32")

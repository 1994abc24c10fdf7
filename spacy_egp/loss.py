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

The sparse variant (positives given as indices, as in the reference's
`sparse_multilabel_categorical_crossentropy`) computes the negative term as
log(exp(LSE(all cells, 0)) - sum_p exp(s_p)), so that no dense gold array is
built; it equals the dense loss up to rounding.
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
    Per (doc, label) row, with A = log(1 + sum_valid exp(s)) and
    G = log(sum_gold exp(s)), the negative term is A + log(1 - exp(G - A));
    1 - exp(G - A) is clipped at 1e-7 as in the reference (a row whose gold
    cells hold all the mass).
    """
    xp = ops.xp
    n_labels = scores.shape[2]
    n_rows = _batch_rows(lengths, n_labels)
    lengths = ops.asarray1i(lengths)
    nonempty = lengths[lengths > 0]
    if scores.size == 0:
        return 0.0, ops.alloc3f(*scores.shape)
    every = xp.where(valid[:, :, None], scores, -xp.inf)
    all_lse, all_grad = _segment_log1p_sum_exp(ops, every, nonempty)
    if len(positives) == 0:
        return float(all_lse.sum()) / n_rows, (all_grad / n_rows).astype("float32")
    # Gold cells grouped by row; a row is (index among non-empty docs, label).
    t, w, label = (xp.asarray(positives)[:, i] for i in range(3))
    doc = xp.searchsorted(xp.cumsum(nonempty), t, side="right")
    order = xp.argsort(doc * n_labels + label, kind="stable")
    t, w, label, doc = t[order], w[order], label[order], doc[order]
    rows, first, sizes = xp.unique(doc * n_labels + label, return_index=True, return_counts=True)
    row_doc, row_label = doc[first], label[first]
    gold = scores[t, w, label][:, None, None]
    sizes = ops.asarray1i(sizes)
    pos_lse, pos_grad = _segment_log1p_sum_exp(ops, -gold, sizes)
    gold_lse, gold_grad = _segment_log1p_sum_exp(ops, gold, sizes, with_one=False)
    ratio = xp.exp(gold_lse[:, 0] - all_lse[row_doc, row_label])
    share = xp.clip(1 - ratio, 1e-7, 1)
    inverse_share = xp.ones(all_lse.shape, dtype="float32")
    inverse_share[row_doc, row_label] = 1 / share
    d_scores = all_grad * xp.repeat(inverse_share, nonempty, axis=0)[:, None, :]
    gold_factor = xp.repeat(ratio / share, sizes, axis=0)
    d_scores[t, w, label] -= gold_factor * gold_grad[:, 0, 0] + pos_grad[:, 0, 0]
    loss = float(all_lse.sum() + xp.log(share).sum() + pos_lse.sum())
    return loss / n_rows, (d_scores / n_rows).astype("float32")

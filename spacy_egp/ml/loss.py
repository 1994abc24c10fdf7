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

Soft labels (Su Jianlin, "多标签“Softmax+交叉熵”的软标签版本",
https://kexue.fm/archives/9064, 2022; the ZLPR paper, arXiv 2208.02955).
With a target probability t_i in [0, 1] per valid cell of a row:

    loss = log(1 + sum_i t_i exp(-s_i)) + log(1 + sum_i (1 - t_i) exp(s_i))

The article obtains it from the soft binary cross-entropy
-t log sigmoid(s) - (1 - t) log(1 - sigmoid(s)) = log (1 + e^-s)^t + log (1 + e^s)^(1-t),
expanding each product and keeping the first-order terms, exactly as the hard
ZLPR is the first-order part of the hard binary cross-entropy. At t in {0, 1}
the terms of weight 0 vanish and it IS the hard loss above. Its gradient,

    d loss / d s_i = (1 - t_i) e^{s_i} / Z_neg - t_i e^{-s_i} / Z_pos

(Z_neg and Z_pos: the arguments of the two logs),

vanishes for every cell at once where t_i e^{-s_i} = (1 - t_i) e^{s_i}, i.e.
t_i = sigmoid(2 s_i); the loss is convex (a sum of log-sum-exps of affine
functions), so that is its minimum. The calibrated probability of a score is
therefore sigmoid(2 s), NOT sigmoid(s): a student fitted to t = sigmoid(s_teacher)
learns s_teacher / 2 (the same decisions at the default threshold 0.5, but halved logits).
Targets t = sigmoid(2 s_teacher) make the student's optimum s_teacher itself.

The weights enter as log t and log(1 - t) added to the exponents; a weight of
exactly 0 (t = 0 in the positive term, t = 1 in the negative one) removes the
cell from that term (-inf), so nothing is clipped to an epsilon (the article's
clip-and-remask workaround is not needed) and hard targets give bit-identical
values to the hard loss. Invalid cells are dropped whatever their target.
"""

from typing import Tuple

from thinc.api import Ops
from thinc.types import Array2d, ArrayXd, Floats1d, Floats2d, Floats3d, Ints1d, Ints2d


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
    n_rows, lengths = _rows_and_segments(lengths, scores.shape[2], ops)
    if scores.size == 0:
        return 0.0, ops.alloc3f(*scores.shape)
    valid = valid[:, :, None]
    negative = xp.where(valid & ~gold, scores, -xp.inf)
    positive = xp.where(valid & gold, -scores, -xp.inf)
    return _zlpr_terms(ops, negative, positive, lengths, n_rows)


def _rows_and_segments(lengths: Ints1d, n_labels: int, ops: Ops) -> Tuple[int, Ints1d]:
    """The batch's (doc, label) row count (empty docs included) and the lengths of the non-empty docs."""
    lengths = ops.asarray1i(lengths)
    return _batch_rows(lengths, n_labels), lengths[lengths > 0]


def _zlpr_terms(ops: Ops, negative: Floats3d, positive: Floats3d, lengths: Ints1d, n_rows: int) -> Tuple[float, Floats3d]:
    """Both ZLPR terms, log(1 + sum e^x) per (doc, label) row of each band, averaged over `n_rows`.

    negative: the exponents of the negative term (s, plus log weights in the
    soft loss); positive: those of the positive term (-s, likewise); -inf
    leaves a cell out. RETURNS (float, Floats3d): the loss and d(loss)/d(scores).
    """
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
    n_rows, nonempty = _rows_and_segments(lengths, scores.shape[2], ops)
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


def _log_weights(ops: Ops, weights: ArrayXd, keep: ArrayXd) -> ArrayXd:
    """log(weights) where keep and weights > 0, else -inf, with no log(0) warnings.

    A zero weight must remove its cell exactly (-inf), not shrink it by an
    epsilon: with scores near 1e4 a clipped log weight (~ -16) would not.
    """
    xp = ops.xp
    keep = keep & (weights > 0)
    return xp.where(keep, xp.log(xp.where(keep, weights, 1)), -xp.inf)


def _check_probabilities(ops: Ops, probabilities: ArrayXd) -> None:
    # NaN fails both comparisons, so it is caught too.
    if probabilities.size and not bool(ops.xp.all((probabilities >= 0) & (probabilities <= 1))):
        raise ValueError("Soft ZLPR targets must be probabilities in [0, 1].")


def soft_zlpr_loss(
    ops: Ops, scores: Floats3d, valid: Array2d, targets: Floats3d, lengths: Ints1d
) -> Tuple[float, Floats3d]:
    """Dense soft-label ZLPR, averaged over the (doc, label) rows like `zlpr_loss`.

    scores (T, W, K): band of logits of the concatenated docs; valid (T, W):
    boolean; targets (T, W, K): probabilities in [0, 1] (a target on an invalid
    cell is ignored); lengths: tokens per doc (empty docs count as rows of loss 0).
    Per row: log(1 + sum t e^-s) + log(1 + sum (1 - t) e^s), see the module
    docstring (kexue.fm/archives/9064). With 0/1 targets it equals `zlpr_loss`.
    RETURNS (float, Floats3d): the loss and d(loss)/d(scores).
    """
    xp = ops.xp
    n_rows, lengths = _rows_and_segments(lengths, scores.shape[2], ops)
    if scores.size == 0:
        return 0.0, ops.alloc3f(*scores.shape)
    _check_probabilities(ops, targets)
    cells = valid[:, :, None]
    # Same dtype as the scores, so 0/1 targets reproduce the hard loss's arithmetic.
    log_pos = _log_weights(ops, targets, cells).astype(scores.dtype)
    log_neg = _log_weights(ops, 1 - targets, cells).astype(scores.dtype)
    # Invalid cells may hold -inf logits: zero them so that -inf + inf never
    # happens; their log weight (-inf) removes them from both terms.
    finite = xp.where(cells, scores, 0)
    negative = finite + log_neg
    positive = log_pos - finite
    return _zlpr_terms(ops, negative, positive, lengths, n_rows)


def _listed_cells(
    ops: Ops, valid: Array2d, cells: Ints2d, probabilities: Floats1d, width: int, n_labels: int
) -> Tuple[Ints1d, Ints1d, Ints1d, Floats1d]:
    """The listed cells as (t, w, label, p), invalid ones dropped; duplicates refused.

    A duplicate would be counted twice by the sums but its gradient written
    once, silently breaking the equality with the dense loss.
    """
    xp = ops.xp
    cells = xp.asarray(cells, dtype="int64").reshape((-1, 3))
    probabilities = xp.asarray(probabilities).reshape((-1,))
    if len(cells) != len(probabilities):
        raise ValueError(f"{len(cells)} cells but {len(probabilities)} probabilities.")
    _check_probabilities(ops, probabilities)
    flat = (cells[:, 0] * width + cells[:, 1]) * n_labels + cells[:, 2]
    if len(xp.unique(flat)) != len(flat):
        raise ValueError("Each soft-target cell must be listed once.")
    keep = valid[cells[:, 0], cells[:, 1]]
    t, w, label = (cells[keep, i] for i in range(3))
    return t, w, label, probabilities[keep]


def _row_segments(
    ops: Ops, nonempty: Ints1d, t: Ints1d, label: Ints1d, n_labels: int
) -> Tuple[Ints1d, Ints1d]:
    """An order grouping cells by (doc, label) row, and the size of each group."""
    xp = ops.xp
    doc = xp.searchsorted(xp.cumsum(nonempty), t, side="right")
    key = doc * n_labels + label
    order = xp.argsort(key, kind="stable")
    _, sizes = xp.unique(key, return_counts=True)
    return order, sizes


def sparse_soft_zlpr_loss(
    ops: Ops,
    scores: Floats3d,
    valid: Array2d,
    cells: Ints2d,
    probabilities: Floats1d,
    lengths: Ints1d,
) -> Tuple[float, Floats3d]:
    """Sparse soft-label ZLPR: `soft_zlpr_loss` without a dense target array.

    cells (P, 3): the (t, w, label) band cells that carry soft mass (e.g. a
    teacher's cells above a floor probability), each once; probabilities (P,):
    their targets in [0, 1]. Every other valid cell is a hard negative (t = 0),
    so the result is the dense loss on targets that are 0 off the list (not on
    a teacher's full band: what fell under the floor counts as 0). Listed cells
    outside the band are ignored, as the dense loss ignores them. Like
    `sparse_zlpr_loss`, the negative term is computed over the cells
    themselves, never as a difference of sums.
    RETURNS (float, Floats3d): the loss and d(loss)/d(scores).
    """
    xp = ops.xp
    n_rows, nonempty = _rows_and_segments(lengths, scores.shape[2], ops)
    if scores.size == 0:
        return 0.0, ops.alloc3f(*scores.shape)
    n_labels = scores.shape[2]
    t, w, label, p = _listed_cells(ops, valid, cells, probabilities, scores.shape[1], n_labels)
    negative = xp.where(valid[:, :, None], scores, -xp.inf)
    # Weight 1 - p on the listed cells (-inf removes a cell of p = 1); 1 elsewhere.
    negative[t, w, label] += _log_weights(ops, 1 - p, xp.ones(len(p), bool)).astype(scores.dtype)
    neg_loss, d_scores = _segment_log1p_sum_exp(ops, negative, nonempty)
    loss = float(neg_loss.sum())
    positive = p > 0  # p = 0 cells have no positive term at all
    t, w, label, p = t[positive], w[positive], label[positive], p[positive]
    if len(t):
        order, sizes = _row_segments(ops, nonempty, t, label, n_labels)
        t, w, label, p = t[order], w[order], label[order], p[order]
        values = xp.log(p).astype(scores.dtype) - scores[t, w, label]
        pos_loss, pos_grad = _segment_log1p_sum_exp(ops, values[:, None, None], ops.asarray1i(sizes))
        d_scores[t, w, label] -= pos_grad[:, 0, 0]
        loss += float(pos_loss.sum())
    return loss / n_rows, (d_scores / n_rows).astype("float32")

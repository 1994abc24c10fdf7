"""ZLPR loss: value and gradient against a numpy port of the reference, and finite differences."""

import numpy
import pytest
from thinc.api import NumpyOps

from spacy_egp.ml.heads import band_mask
from spacy_egp.ml.loss import sparse_zlpr_loss, zlpr_loss

OPS = NumpyOps()


def reference_multilabel_crossentropy(y_true, y_pred):
    """bert4keras multilabel_categorical_crossentropy, rows = last axis (float64)."""
    y_pred = (1 - 2 * y_true) * y_pred
    y_neg = y_pred - y_true * 1e12
    y_pos = y_pred - (1 - y_true) * 1e12
    zeros = numpy.zeros_like(y_pred[..., :1])
    y_neg = numpy.concatenate([y_neg, zeros], axis=-1)
    y_pos = numpy.concatenate([y_pos, zeros], axis=-1)

    def logsumexp(x):
        top = x.max(axis=-1, keepdims=True)
        return (top + numpy.log(numpy.exp(x - top).sum(axis=-1, keepdims=True)))[..., 0]

    return logsumexp(y_neg) + logsumexp(y_pos)


def reference_loss(scores, lengths, gold):
    """Mean over (doc, label) rows; invalid cells dropped, as padding/tril are in the reference."""
    rows = []
    start = 0
    for n in lengths:
        mask = band_mask(OPS, OPS.asarray1i([n]), scores.shape[1])
        for label in range(scores.shape[2]):
            s = scores[start : start + n, :, label][mask].astype("float64")
            y = gold[start : start + n, :, label][mask].astype("float64")
            rows.append(reference_multilabel_crossentropy(y[None], s[None])[0] if s.size else 0.0)
        start += n
    return float(numpy.mean(rows))


def random_batch(seed, lengths=(4, 0, 6, 1), width=4, n_labels=3, scale=2.0):
    rng = numpy.random.default_rng(seed)
    total = sum(lengths)
    scores = rng.normal(0, scale, size=(total, width, n_labels)).astype("float32")
    valid = band_mask(OPS, OPS.asarray1i(lengths), width)
    gold = (rng.random((total, width, n_labels)) < 0.2) & valid[:, :, None]
    scores = numpy.where(valid[:, :, None], scores, -numpy.inf).astype("float32")
    return scores, valid, gold, OPS.asarray1i(lengths)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_loss_matches_reference(seed):
    scores, valid, gold, lengths = random_batch(seed)
    loss, _ = zlpr_loss(OPS, scores, valid, gold, lengths)
    assert loss == pytest.approx(reference_loss(scores, lengths, gold), rel=1e-5)


def test_gradient_matches_finite_differences():
    scores, valid, gold, lengths = random_batch(3)
    _, d_scores = zlpr_loss(OPS, scores, valid, gold, lengths)
    assert numpy.all(d_scores[~valid] == 0)
    base = numpy.where(valid[:, :, None], scores, 0).astype("float64")
    epsilon = 1e-3
    for index in zip(*numpy.nonzero(numpy.broadcast_to(valid[:, :, None], scores.shape))):
        plus, minus = base.copy(), base.copy()
        plus[index] += epsilon
        minus[index] -= epsilon
        numeric = (reference_loss(plus, lengths, gold) - reference_loss(minus, lengths, gold)) / (2 * epsilon)
        assert d_scores[index] == pytest.approx(numeric, rel=1e-3, abs=1e-5)


def test_gradient_signs_push_gold_up_and_others_down():
    scores, valid, gold, lengths = random_batch(4)
    _, d_scores = zlpr_loss(OPS, scores, valid, gold, lengths)
    assert numpy.all(d_scores[gold] < 0)
    assert numpy.all(d_scores[valid[:, :, None] & ~gold] > 0)


def test_extreme_logits_give_finite_loss_and_gradients():
    scores, valid, gold, lengths = random_batch(5, scale=1.0)
    huge = numpy.where(numpy.isfinite(scores), numpy.sign(scores) * 1e4, -numpy.inf).astype("float32")
    loss, d_scores = zlpr_loss(OPS, huge, valid, gold, lengths)
    assert numpy.isfinite(loss) and numpy.all(numpy.isfinite(d_scores))
    assert loss == pytest.approx(reference_loss(huge, lengths, gold), rel=1e-5)


def test_perfect_scores_give_near_zero_loss_and_empty_batch_zero():
    scores, valid, gold, lengths = random_batch(6)
    perfect = numpy.where(gold, 30.0, -30.0).astype("float32")
    loss, _ = zlpr_loss(OPS, perfect, valid, gold, lengths)
    assert 0 <= loss < 1e-9
    empty = numpy.zeros((0, 0, 3), dtype="float32")
    loss, d_empty = zlpr_loss(OPS, empty, numpy.zeros((0, 0), bool), numpy.zeros((0, 0, 3), bool), OPS.asarray1i([0, 0]))
    assert loss == 0.0 and d_empty.shape == (0, 0, 3)


@pytest.mark.parametrize("seed,scale", [(0, 2.0), (1, 2.0), (2, 0.5), (3, 5.0)])
def test_sparse_loss_equals_dense_loss(seed, scale):
    scores, valid, gold, lengths = random_batch(seed, scale=scale)
    positives = numpy.argwhere(gold)
    dense_loss, dense_grad = zlpr_loss(OPS, scores, valid, gold, lengths)
    sparse_loss, sparse_grad = sparse_zlpr_loss(OPS, scores, valid, positives, lengths)
    assert sparse_loss == pytest.approx(dense_loss, rel=1e-5, abs=1e-5)
    numpy.testing.assert_allclose(sparse_grad, dense_grad, rtol=1e-5, atol=1e-5)


def test_sparse_loss_without_gold_cells():
    scores, valid, gold, lengths = random_batch(7)
    no_gold = numpy.zeros_like(gold)
    dense = zlpr_loss(OPS, scores, valid, no_gold, lengths)
    sparse = sparse_zlpr_loss(OPS, scores, valid, numpy.zeros((0, 3), dtype=int), lengths)
    assert sparse[0] == pytest.approx(dense[0], rel=1e-6)
    numpy.testing.assert_allclose(sparse[1], dense[1], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("gold_logit", [0.0, 4.0, 8.0, 10.5, 14.0, 16.0, 20.0, 25.0, 30.0])
def test_sparse_loss_is_exact_at_high_gold_logits(gold_logit):
    """A fitted row: gold cells high, the rest low. Sparse = dense = the float64 closed form.

    The reference's A + log(1 - exp(G - A)) cancels here in float32 (wrong gold
    gradient sign at 14, zero negative gradients from 16 on).
    """
    lengths = OPS.asarray1i([6, 5])
    width, n_labels = 4, 2
    valid = band_mask(OPS, lengths, width)
    scores = numpy.where(valid[:, :, None], -6.0, -numpy.inf) * numpy.ones(n_labels)
    scores = scores.astype("float32")
    scores[0, 1, 0] = scores[8, 0, 1] = -3.0  # hard negatives
    gold = numpy.zeros(scores.shape, bool)
    for t, w, k, value in [(0, 0, 0, gold_logit), (2, 3, 0, gold_logit - 1), (7, 2, 1, gold_logit)]:
        gold[t, w, k] = True
        scores[t, w, k] = value
    dense_loss, dense_grad = zlpr_loss(OPS, scores, valid, gold, lengths)
    sparse_loss, sparse_grad = sparse_zlpr_loss(OPS, scores, valid, numpy.argwhere(gold), lengths)
    expected_loss, expected_grad = float64_zlpr(scores, valid, gold, lengths)
    assert dense_loss == pytest.approx(expected_loss, rel=1e-5)
    assert sparse_loss == pytest.approx(expected_loss, rel=1e-5)
    numpy.testing.assert_allclose(sparse_grad, expected_grad, rtol=1e-4, atol=1e-12)
    numpy.testing.assert_allclose(dense_grad, expected_grad, rtol=1e-4, atol=1e-12)
    assert numpy.all(sparse_grad[gold] < 0) and numpy.all(sparse_grad[valid[:, :, None] & ~gold] > 0)


def float64_zlpr(scores, valid, gold, lengths):
    """Loss and gradient in float64, row by row, from the definition."""
    grad = numpy.zeros(scores.shape)
    total, rows, start = 0.0, 0, 0
    for n in lengths:
        for k in range(scores.shape[2]):
            s = scores[start : start + n, :, k].astype("float64")
            cells = valid[start : start + n]
            neg = cells & ~gold[start : start + n, :, k]
            pos = cells & gold[start : start + n, :, k]
            z_neg = 1 + numpy.exp(s[neg]).sum()
            z_pos = 1 + numpy.exp(-s[pos]).sum()
            total += numpy.log(z_neg) + numpy.log(z_pos)
            row_grad = numpy.zeros(s.shape)
            row_grad[neg] = numpy.exp(s[neg]) / z_neg
            row_grad[pos] = -numpy.exp(-s[pos]) / z_pos
            grad[start : start + n, :, k] = row_grad
            rows += 1
        start += n
    return total / rows, grad / rows


def test_sparse_loss_stays_finite_on_extreme_logits():
    """Logits of +-1e4: every exponential is shifted by its row's maximum."""
    scores, valid, gold, lengths = random_batch(8, scale=1.0)
    huge = numpy.where(numpy.isfinite(scores), numpy.sign(scores) * 1e4, -numpy.inf).astype("float32")
    loss, grad = sparse_zlpr_loss(OPS, huge, valid, numpy.argwhere(gold), lengths)
    assert numpy.isfinite(loss) and numpy.all(numpy.isfinite(grad))

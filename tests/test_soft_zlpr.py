"""Soft-label ZLPR (kexue.fm/archives/9064): dense and sparse, against a float64 closed form.

Per (doc, label) row, over its valid cells:
    loss = log(1 + sum t e^-s) + log(1 + sum (1 - t) e^s)
averaged over all rows of the batch (empty docs are rows of loss 0).
"""

import numpy
import pytest
from thinc.api import NumpyOps

from spacy_egp.ml.heads import band_mask
from spacy_egp.ml.loss import soft_zlpr_loss, sparse_soft_zlpr_loss, sparse_zlpr_loss, zlpr_loss

OPS = NumpyOps()
LENGTHS = (4, 0, 6, 1)


def float64_soft_zlpr(scores, valid, targets, lengths):
    """Loss and gradient in float64, row by row, from the formula (no project code)."""
    grad = numpy.zeros(scores.shape)
    total, rows, start = 0.0, 0, 0
    for n in lengths:
        for k in range(scores.shape[2]):
            cells = valid[start : start + n]
            s = scores[start : start + n, :, k].astype("float64")[cells]
            t = targets[start : start + n, :, k].astype("float64")[cells]
            z_pos = 1 + numpy.sum(t * numpy.exp(-s))
            z_neg = 1 + numpy.sum((1 - t) * numpy.exp(s))
            total += numpy.log(z_pos) + numpy.log(z_neg)
            row_grad = numpy.zeros(cells.shape)
            row_grad[cells] = (1 - t) * numpy.exp(s) / z_neg - t * numpy.exp(-s) / z_pos
            grad[start : start + n, :, k] = row_grad
            rows += 1
        start += n
    return total / rows, grad / rows


def random_soft_batch(seed, lengths=LENGTHS, width=4, n_labels=3, scale=2.0):
    """A band with -inf outside it, and targets mixing exact 0s, exact 1s and values in (0, 1).

    Invalid cells get arbitrary targets in [0, 1]: they must be ignored.
    """
    rng = numpy.random.default_rng(seed)
    total = sum(lengths)
    valid = band_mask(OPS, OPS.asarray1i(lengths), width)
    scores = rng.normal(0, scale, size=(total, width, n_labels))
    scores = numpy.where(valid[:, :, None], scores, -numpy.inf).astype("float32")
    targets = rng.random((total, width, n_labels))
    kind = rng.random(targets.shape)
    targets[kind < 0.4] = 0.0
    targets[(kind >= 0.4) & (kind < 0.5)] = 1.0
    return scores, valid, targets.astype("float32"), OPS.asarray1i(lengths)


def as_sparse(targets, valid, floor=0.0):
    """The valid cells whose target exceeds floor, as (cells, probabilities)."""
    cells = numpy.argwhere((targets > floor) & valid[:, :, None])
    return cells, targets[tuple(cells.T)]


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_dense_matches_float64_closed_form(seed):
    scores, valid, targets, lengths = random_soft_batch(seed)
    loss, grad = soft_zlpr_loss(OPS, scores, valid, targets, lengths)
    expected_loss, expected_grad = float64_soft_zlpr(scores, valid, targets, lengths)
    assert loss == pytest.approx(expected_loss, rel=1e-5)
    numpy.testing.assert_allclose(grad, expected_grad, rtol=1e-4, atol=1e-7)
    assert grad.shape == scores.shape and grad.dtype == numpy.float32
    assert numpy.all(grad[~valid] == 0)


def test_gradient_matches_finite_differences():
    scores, valid, targets, lengths = random_soft_batch(4)
    _, grad = soft_zlpr_loss(OPS, scores, valid, targets, lengths)
    base = numpy.where(valid[:, :, None], scores, 0).astype("float64")
    epsilon = 1e-4
    for index in zip(*numpy.nonzero(numpy.broadcast_to(valid[:, :, None], scores.shape))):
        plus, minus = base.copy(), base.copy()
        plus[index] += epsilon
        minus[index] -= epsilon
        up = float64_soft_zlpr(plus, valid, targets, lengths)[0]
        down = float64_soft_zlpr(minus, valid, targets, lengths)[0]
        assert grad[index] == pytest.approx((up - down) / (2 * epsilon), rel=1e-3, abs=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_hard_targets_give_exactly_the_hard_loss(seed):
    """0/1 targets: bit-identical to zlpr_loss and sparse_zlpr_loss, loss and gradient."""
    scores, valid, targets, lengths = random_soft_batch(seed)
    gold = (targets > 0.5) & valid[:, :, None]
    hard = gold.astype("float32")
    dense = soft_zlpr_loss(OPS, scores, valid, hard, lengths)
    reference = zlpr_loss(OPS, scores, valid, gold, lengths)
    assert dense[0] == reference[0]
    numpy.testing.assert_array_equal(dense[1], reference[1])
    positives = numpy.argwhere(gold)
    ones = numpy.ones(len(positives), "float32")
    sparse = sparse_soft_zlpr_loss(OPS, scores, valid, positives, ones, lengths)
    sparse_reference = sparse_zlpr_loss(OPS, scores, valid, positives, lengths)
    assert sparse[0] == sparse_reference[0]
    numpy.testing.assert_array_equal(sparse[1], sparse_reference[1])


@pytest.mark.parametrize("seed,scale", [(0, 2.0), (1, 0.5), (2, 5.0), (3, 2.0)])
def test_sparse_equals_dense(seed, scale):
    scores, valid, targets, lengths = random_soft_batch(seed, scale=scale)
    cells, probabilities = as_sparse(targets, valid)
    assert len(cells) and numpy.any(probabilities == 1) and numpy.any(probabilities < 1)
    dense = soft_zlpr_loss(OPS, scores, valid, targets, lengths)
    sparse = sparse_soft_zlpr_loss(OPS, scores, valid, cells, probabilities, lengths)
    assert sparse[0] == pytest.approx(dense[0], rel=1e-6)
    numpy.testing.assert_allclose(sparse[1], dense[1], rtol=1e-5, atol=1e-7)


def test_sparse_with_a_floor_is_dense_on_the_floored_targets():
    """Cells at or under the floor are hard negatives; listed 0s and invalid cells change nothing."""
    scores, valid, targets, lengths = random_soft_batch(5)
    floor = 0.3
    cells, probabilities = as_sparse(targets, valid, floor)
    floored = numpy.where(targets > floor, targets, 0).astype("float32")
    dense = soft_zlpr_loss(OPS, scores, valid, floored, lengths)
    assert dense[0] != pytest.approx(soft_zlpr_loss(OPS, scores, valid, targets, lengths)[0], rel=1e-3)
    # Extra entries: a listed 0, and a cell outside the band with mass.
    outside = numpy.argwhere(~valid)[0]
    zero_cell = numpy.argwhere(valid[:, :, None] & (floored == 0))[0]
    cells = numpy.vstack([cells, [*outside, 1], zero_cell])
    probabilities = numpy.concatenate([probabilities, [0.9, 0.0]]).astype("float32")
    sparse = sparse_soft_zlpr_loss(OPS, scores, valid, cells, probabilities, lengths)
    assert sparse[0] == pytest.approx(dense[0], rel=1e-6)
    numpy.testing.assert_allclose(sparse[1], dense[1], rtol=1e-5, atol=1e-7)


def test_sparse_without_cells_is_all_negative():
    scores, valid, _, lengths = random_soft_batch(6)
    zeros = numpy.zeros(scores.shape, "float32")
    dense = soft_zlpr_loss(OPS, scores, valid, zeros, lengths)
    no_cells, no_probabilities = numpy.zeros((0, 3), int), numpy.zeros(0, "float32")
    sparse = sparse_soft_zlpr_loss(OPS, scores, valid, no_cells, no_probabilities, lengths)
    assert sparse[0] == pytest.approx(dense[0], rel=1e-6)
    numpy.testing.assert_allclose(sparse[1], dense[1], rtol=1e-6, atol=1e-8)
    assert dense[0] == zlpr_loss(OPS, scores, valid, zeros.astype(bool), lengths)[0]


def test_extreme_logits_stay_finite_and_sparse_equals_dense():
    """Logits of +-1e4 with soft targets: every exponential is shifted by its row's maximum."""
    scores, valid, targets, lengths = random_soft_batch(7, scale=1.0)
    huge = numpy.where(numpy.isfinite(scores), numpy.sign(scores) * 1e4, -numpy.inf).astype("float32")
    dense = soft_zlpr_loss(OPS, huge, valid, targets, lengths)
    sparse = sparse_soft_zlpr_loss(OPS, huge, valid, *as_sparse(targets, valid), lengths)
    assert numpy.isfinite(dense[0]) and numpy.all(numpy.isfinite(dense[1]))
    assert sparse[0] == pytest.approx(dense[0], rel=1e-6)
    numpy.testing.assert_allclose(sparse[1], dense[1], rtol=1e-5, atol=1e-7)


def descend(targets, steps=300, rate=1.0):
    """Plain gradient descent on one row (one doc, one label) of cells with these targets."""
    n = len(targets)
    lengths = OPS.asarray1i([n])
    valid = band_mask(OPS, lengths, 1)
    target_band = numpy.asarray(targets, "float32").reshape((n, 1, 1))
    scores = numpy.zeros((n, 1, 1), "float32")
    for _ in range(steps):
        scores = scores - rate * soft_zlpr_loss(OPS, scores, valid, target_band, lengths)[1]
    return scores.reshape(-1).astype("float64")


def sigmoid(x):
    return 1 / (1 + numpy.exp(-x))


@pytest.mark.parametrize("p", [0.02, 0.2, 0.5, 0.7, 0.95])
def test_one_cell_is_calibrated_at_sigmoid_of_twice_the_score(p):
    """log(1 + p e^-s) + log(1 + (1 - p) e^s) is least at sigmoid(2 s) = p (the article's result)."""
    (score,) = descend([p])
    assert sigmoid(2 * score) == pytest.approx(p, abs=1e-5)
    assert score == pytest.approx(0.5 * numpy.log(p / (1 - p)), abs=1e-4)
    if p != 0.5:  # the plain sigmoid is NOT the calibrated probability
        assert abs(sigmoid(score) - p) > 0.05


def test_a_row_of_cells_is_calibrated_jointly():
    """The optimum holds for every cell of a row at once, not only for a lone cell."""
    targets = [0.02, 0.1, 0.35, 0.5, 0.8, 0.97]
    scores = descend(targets)
    numpy.testing.assert_allclose(sigmoid(2 * scores), targets, atol=1e-5)


def test_invalid_targets_and_duplicate_cells_are_refused():
    scores, valid, targets, lengths = random_soft_batch(8)
    for bad in (1.5, -0.1, numpy.nan):
        broken = targets.copy()
        broken[0, 0, 0] = bad
        with pytest.raises(ValueError):
            soft_zlpr_loss(OPS, scores, valid, broken, lengths)
    cells, probabilities = as_sparse(targets, valid)
    duplicated = numpy.vstack([cells, cells[:1]]), numpy.append(probabilities, 0.5)
    with pytest.raises(ValueError):
        sparse_soft_zlpr_loss(OPS, scores, valid, *duplicated, lengths)
    with pytest.raises(ValueError):
        sparse_soft_zlpr_loss(OPS, scores, valid, cells, probabilities[:-1], lengths)


def test_empty_batch():
    empty = numpy.zeros((0, 0, 3), "float32")
    no_cells = numpy.zeros((0, 0), bool)
    loss, grad = soft_zlpr_loss(OPS, empty, no_cells, empty, OPS.asarray1i([0, 0]))
    assert loss == 0.0 and grad.shape == (0, 0, 3)
    loss, grad = sparse_soft_zlpr_loss(
        OPS, empty, no_cells, numpy.zeros((0, 3), int), numpy.zeros(0), OPS.asarray1i([0, 0])
    )
    assert loss == 0.0 and grad.shape == (0, 0, 3)

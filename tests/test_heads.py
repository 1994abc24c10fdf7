"""The span heads against an independent numpy implementation of the formulas."""

import numpy
import pytest
from spacy.util import registry
from thinc.api import NumpyOps, Ragged, noop

from spacy_egp.ml.heads import (
    band_mask,
    build_egp_head,
    build_gp_head,
    egp_parameter_count,
    gp_parameter_count,
)

OPS = NumpyOps()


def reference_rope(x: numpy.ndarray) -> numpy.ndarray:
    """bert4keras: sinusoidal embedding interleaved (sin, cos), then x*cos + rot(x)*sin."""
    n, d = x.shape
    inv_freq = numpy.power(10000.0, -2 * numpy.arange(d // 2) / d)
    angles = numpy.arange(n)[:, None] * inv_freq[None, :]
    pos = numpy.stack([numpy.sin(angles), numpy.cos(angles)], axis=-1).reshape(n, d)
    cos_pos = numpy.repeat(pos[:, 1::2], 2, axis=-1)
    sin_pos = numpy.repeat(pos[:, ::2], 2, axis=-1)
    x2 = numpy.stack([-x[:, 1::2], x[:, ::2]], axis=-1).reshape(n, d)
    return x * cos_pos + x2 * sin_pos


def reference_egp(h, W, b, Wl, bl, d, use_rope=True):
    """Full n x n x K EGP logits of one doc, straight from the formula (float64)."""
    p = h @ W + b
    q, k = p[:, :d], p[:, d:]
    if use_rope:
        q, k = reference_rope(q), reference_rope(k)
    bias = (p @ Wl + bl) / 2
    n_labels = bias.shape[1] // 2
    logits = (q @ k.T)[:, :, None] / numpy.sqrt(d)
    logits = logits + bias[:, None, :n_labels] + bias[None, :, n_labels:]
    return logits


def reference_gp(h, W, b, d, n_labels, use_rope=True):
    p = (h @ W + b).reshape(len(h), n_labels, 2 * d)
    out = numpy.zeros((len(h), len(h), n_labels))
    for a in range(n_labels):
        q, k = p[:, a, :d], p[:, a, d:]
        if use_rope:
            q, k = reference_rope(q), reference_rope(k)
        out[:, :, a] = q @ k.T / numpy.sqrt(d)
    return out


def band_from_full(full: numpy.ndarray, width: int) -> numpy.ndarray:
    n = full.shape[0]
    band = numpy.full((n, width, full.shape[2]), -numpy.inf)
    for i in range(n):
        for w in range(min(width, n - i)):
            band[i, w] = full[i, i + w]
    return band


def make_head(kind, width, head_size, n_labels, max_span_length=None, use_rope=True, seed=0):
    build = build_egp_head if kind == "egp" else build_gp_head
    head = build(head_size, use_rope, max_span_length, n_labels)
    head.initialize(X=Ragged(OPS.alloc2f(3, width), OPS.asarray1i([3])))
    rng = numpy.random.default_rng(seed)
    for layer in head.walk():
        for name in layer.param_names:
            value = layer.get_param(name)
            layer.set_param(name, rng.normal(0, 0.3, value.shape).astype("float32"))
    return head


def linear_params(layer):
    # Thinc's Linear computes X @ W.T + b with W of shape (nO, nI)
    return layer.get_param("W").T.astype("float64"), layer.get_param("b").astype("float64")


@pytest.mark.parametrize("use_rope", [True, False])
def test_egp_matches_numpy_reference(use_rope):
    D, d, K = 12, 8, 3
    head = make_head("egp", D, d, K, use_rope=use_rope)
    W, b = linear_params(head.get_ref("projection"))
    Wl, bl = linear_params(head.get_ref("label_term"))
    lengths = [5, 0, 9, 1]
    rng = numpy.random.default_rng(1)
    docs = [rng.normal(size=(n, D)) for n in lengths]
    X = Ragged(OPS.asarray2f(numpy.concatenate(docs)), OPS.asarray1i(lengths))
    Y, _ = head(X, is_train=False)
    assert Y.dataXd.shape == (sum(lengths), max(lengths), K)
    start = 0
    for h in docs:
        expected = band_from_full(reference_egp(h, W, b, Wl, bl, d, use_rope), max(lengths))
        got = Y.dataXd[start : start + len(h)]
        numpy.testing.assert_array_equal(numpy.isinf(got), numpy.isinf(expected))
        finite = numpy.isfinite(expected)
        numpy.testing.assert_allclose(got[finite], expected[finite], rtol=1e-4, atol=1e-4)
        start += len(h)


def test_gp_matches_numpy_reference():
    D, d, K = 10, 6, 4
    head = make_head("gp", D, d, K)
    W, b = linear_params(head.get_ref("projection"))
    h = numpy.random.default_rng(2).normal(size=(7, D))
    Y, _ = head(Ragged(OPS.asarray2f(h), OPS.asarray1i([7])), is_train=False)
    expected = band_from_full(reference_gp(h, W, b, d, K), 7)
    finite = numpy.isfinite(expected)
    numpy.testing.assert_array_equal(numpy.isfinite(Y.dataXd), finite)
    numpy.testing.assert_allclose(Y.dataXd[finite], expected[finite], rtol=1e-4, atol=1e-4)


def test_rope_matches_reference_and_is_relative():
    """q_i . k_j after RoPE depends on the positions only through j - i."""
    d = 16
    rng = numpy.random.default_rng(3)
    q, k = rng.normal(size=d), rng.normal(size=d)
    n = 40
    rotated_q = reference_rope(numpy.tile(q, (n, 1)))
    rotated_k = reference_rope(numpy.tile(k, (n, 1)))
    products = rotated_q @ rotated_k.T
    for offset in (0, 1, 5, 17):
        diagonal = numpy.diagonal(products, offset)
        numpy.testing.assert_allclose(diagonal, diagonal[0], rtol=1e-9, atol=1e-9)
    assert not numpy.allclose(products[0, 1], products[0, 2])


def test_egp_scores_shift_invariant_through_rope():
    """The same token vectors at a later position in a doc give the same band."""
    D, d, K = 8, 8, 2
    head = make_head("egp", D, d, K)
    rng = numpy.random.default_rng(4)
    tokens = rng.normal(size=(4, D))
    prefix = rng.normal(size=(3, D))
    alone, _ = head(Ragged(OPS.asarray2f(tokens), OPS.asarray1i([4])), is_train=False)
    shifted, _ = head(
        Ragged(OPS.asarray2f(numpy.concatenate([prefix, tokens])), OPS.asarray1i([7])),
        is_train=False,
    )
    numpy.testing.assert_allclose(shifted.dataXd[3:, :4], alone.dataXd, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", ["egp", "gp"])
def test_head_gradients_match_finite_differences(kind):
    D, d, K = 5, 4, 2
    head = make_head(kind, D, d, K, max_span_length=3)
    rng = numpy.random.default_rng(5)
    lengths = OPS.asarray1i([4, 2])
    X = rng.normal(size=(6, D)).astype("float64")
    weights = rng.normal(size=(6, 3, K))

    def objective(inputs):
        Y, backprop = head(Ragged(OPS.asarray2f(inputs), lengths), is_train=True)
        finite = numpy.isfinite(Y.dataXd)
        value = float((numpy.where(finite, Y.dataXd, 0) * weights).sum())
        return value, backprop, numpy.where(finite, weights, 0)

    _, backprop, d_out = objective(X)
    dX = backprop(Ragged(OPS.asarray(d_out.astype("float32")), lengths)).data
    epsilon = 1e-2
    for index in numpy.ndindex(X.shape):
        plus, minus = X.copy(), X.copy()
        plus[index] += epsilon
        minus[index] -= epsilon
        numeric = (objective(plus)[0] - objective(minus)[0]) / (2 * epsilon)
        assert dX[index] == pytest.approx(numeric, rel=2e-2, abs=2e-3)


def test_parameter_gradients_match_finite_differences():
    D, d, K = 4, 4, 2
    head = make_head("egp", D, d, K)
    X = Ragged(OPS.asarray2f(numpy.random.default_rng(6).normal(size=(5, D))), OPS.asarray1i([5]))
    weights = numpy.random.default_rng(7).normal(size=(5, 5, K))

    def value():
        Y, _ = head(X, is_train=False)
        return float((numpy.where(numpy.isfinite(Y.dataXd), Y.dataXd, 0) * weights).sum())

    Y, backprop = head(X, is_train=True)
    backprop(Ragged(OPS.asarray(numpy.where(numpy.isfinite(Y.dataXd), weights, 0).astype("f")), X.lengths))
    for layer in (head.get_ref("projection"), head.get_ref("label_term")):
        gradient = layer.get_grad("W").copy()
        W = layer.get_param("W")
        for index in [(0, 0), (1, 2), (W.shape[0] - 1, W.shape[1] - 1)]:
            original = W[index]
            W[index] = original + 1e-2
            layer.set_param("W", W)
            up = value()
            W[index] = original - 1e-2
            layer.set_param("W", W)
            down = value()
            W[index] = original
            layer.set_param("W", W)
            assert gradient[index] == pytest.approx((up - down) / 2e-2, rel=2e-2, abs=2e-3)


def test_band_mask_marks_cells_inside_each_doc():
    mask = band_mask(OPS, OPS.asarray1i([3, 0, 2]), 3)
    expected = numpy.array(
        [[1, 1, 1], [1, 1, 0], [1, 0, 0], [1, 1, 0], [1, 0, 0]], dtype=bool
    )
    numpy.testing.assert_array_equal(mask, expected)


def test_max_span_length_limits_the_band_not_the_memory_of_long_docs():
    head = make_head("egp", 4, 4, 3, max_span_length=5)
    n = 20000
    X = Ragged(OPS.alloc2f(n, 4) + 0.1, OPS.asarray1i([n]))
    Y, _ = head(X, is_train=False)
    assert Y.dataXd.shape == (n, 5, 3)


def count_params(model) -> int:
    return sum(layer.get_param(name).size for layer in model.walk() for name in layer.param_names if layer.has_param(name))


@pytest.mark.parametrize("architecture,closed_form", [
    ("spacy_egp.EfficientGlobalPointer.v1", egp_parameter_count),
    ("spacy_egp.GlobalPointer.v1", gp_parameter_count),
])
def test_parameter_counts_equal_closed_forms(architecture, closed_form):
    """D = 768, d = 64, K = 100: EGP adds 4d + 2 per label, GP 2Dd + 2d."""
    D, d, K = 768, 64, 100
    build = registry.architectures.get(architecture)
    tok2vec = noop()  # stands in for a tok2vec of width D: only the head is counted
    model = build(tok2vec=tok2vec, head_size=d, nO=K)
    head = model.get_ref("head")
    head.initialize(X=Ragged(OPS.alloc2f(2, D), OPS.asarray1i([2])))
    assert count_params(head) == closed_form(D, d, K)
    if architecture.endswith("EfficientGlobalPointer.v1"):
        assert count_params(head) == 2 * D * d + 2 * d + K * (4 * d + 2) == 124232
    else:
        assert count_params(head) == K * (2 * D * d + 2 * d) == 9843200


@pytest.mark.parametrize("kind", ["egp", "gp"])
def test_half_precision_token_vectors_give_a_float32_band_and_finite_loss(kind):
    """What mixed precision hands the head (float16 vectors, up to float16's max) stays finite.

    The head computes in float32 whatever the input precision, cells outside a
    doc are -inf (never a big finite constant that float16 would overflow), and
    the ZLPR loss and its gradient are finite.
    """
    from spacy_egp.ml.loss import zlpr_loss

    head = make_head(kind, 8, 4, 3, max_span_length=5)
    lengths = OPS.asarray1i([6, 3])
    rng = numpy.random.default_rng(0)
    X = (rng.normal(size=(9, 8)) * 2e4).clip(-65504, 65504).astype("float16")
    Y, backprop = head(Ragged(X, lengths), is_train=True)
    band = Y.dataXd
    assert band.dtype == numpy.float32
    inside = band_mask(OPS, lengths, band.shape[1])
    assert numpy.isneginf(band[~inside]).all() and numpy.isfinite(band[inside]).all()
    gold = numpy.zeros(band.shape, dtype=bool)
    gold[0, 2, 1] = gold[6, 0, 2] = True
    loss, d_band = zlpr_loss(OPS, band, inside, gold, lengths)
    assert numpy.isfinite(loss) and numpy.isfinite(d_band).all()
    dX = backprop(Ragged(d_band, lengths)).data
    assert numpy.isfinite(dX).all()

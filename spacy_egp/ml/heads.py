"""The span heads: Efficient GlobalPointer (EGP), GlobalPointer (GP) and RoPE.

EGP (Su Jianlin, 2022, https://kexue.fm/archives/8877) scores the token pair
(i, j), i <= j, as a span of label a:

    s_a(i, j) = q_i . k_j / sqrt(d)  +  (w1_a . [q_i; k_i] + w2_a . [q_j; k_j]) / 2

q and k are the two halves of ONE projection of the token vectors (width 2d);
RoPE rotates them before the product, while the label term reads the
projection before RoPE. GP keeps one q/k projection per label and has no label
term: s_a(i, j) = q_{a,i} . k_{a,j} / sqrt(d).

Choices made once:

- Score layout, the "band": a batch is the concatenation of its docs' tokens
  (T tokens in all) and the scores are an array (T, W, K) whose cell
  (t, w, a) is the span that starts at token t and ends at token t + w
  (inclusive), W = min(max_span_length, longest doc). Memory and time grow
  linearly with document length, no padding is needed between docs, and the
  same (t, w) indices serve the loss, decoding and thresholds. Cells that run
  past the end of their doc hold -inf (never a large finite constant, so
  half precision cannot overflow); `band_mask` gives the same cells as a
  boolean array.
- Thinc ops rather than torch: the heads are a few dozen array operations
  whose gradients are short and exactly testable, and keeping them in Thinc
  means numpy on CPU, cupy on GPU (`spacy train --gpu-id 0`), no
  numpy<->torch copies, and plain Thinc (msgpack) serialization: the label
  count is a Thinc dimension that `from_bytes` restores before the weights, so
  a saved pipeline reloads without rebuilding a torch module and without
  unpickling anything.
- The q/k split is first half / second half of the projection; the reference
  interleaves (even / odd columns). That is a fixed permutation of the
  projection's columns, so the two parameterisations are the same model.

Parameter counts (token vectors of width D, head size d, K labels):

    EGP: (D * 2d + 2d)  +  K * (2d * 2 + 2)   i.e. a fixed projection plus
         4d + 2 per label (two weight vectors of 2d and two biases)
    GP:  K * (D * 2d + 2d)                    i.e. 2Dd + 2d per label
"""

from typing import Any, Callable, Dict, Optional, Tuple

from thinc.api import Linear, Model, Ops
from thinc.types import Array2d, Floats2d, Floats3d, Ints1d, Ragged

from .util import doc_starts, probability_to_logit

ROPE_BASE = 10000.0

BandBackprop = Callable[[Floats3d], Tuple[Floats3d, Floats3d]]


def egp_parameter_count(width: int, head_size: int, n_labels: int) -> int:
    """Closed form of the EGP head's parameter count (see module docstring)."""
    return width * 2 * head_size + 2 * head_size + n_labels * (4 * head_size + 2)


def gp_parameter_count(width: int, head_size: int, n_labels: int) -> int:
    """Closed form of the GP head's parameter count (see module docstring)."""
    return n_labels * (width * 2 * head_size + 2 * head_size)


def band_width(lengths: Ints1d, max_span_length: Optional[int]) -> int:
    """The number of span widths scored for a batch of docs of these lengths."""
    longest = int(lengths.max()) if len(lengths) else 0
    if max_span_length is None:
        return longest
    return min(longest, max_span_length)


def band_mask(ops: Ops, lengths: Ints1d, width: int):
    """Boolean array (T, W): True where span (t, t + w) lies inside t's doc."""
    lengths = ops.asarray1i(lengths)
    total = int(lengths.sum())
    doc_ends = ops.xp.repeat(doc_starts(ops.xp, lengths) + lengths, lengths)
    remaining = doc_ends - ops.xp.arange(total)
    return ops.xp.arange(width)[None, :] < remaining[:, None]


def positions_in_doc(ops: Ops, lengths: Ints1d) -> Ints1d:
    """Each token's position within its own doc, counting from 0."""
    lengths = ops.asarray1i(lengths)
    return ops.xp.arange(int(lengths.sum())) - ops.xp.repeat(doc_starts(ops.xp, lengths), lengths)


def rope_angles(ops: Ops, lengths: Ints1d, head_size: int) -> Tuple[Floats2d, Floats2d]:
    """cos and sin (T, d/2) of the rotation angles position * base^(-2m/d)."""
    positions = positions_in_doc(ops, lengths).astype("float32")
    frequencies = ROPE_BASE ** (-ops.xp.arange(0, head_size, 2, dtype="float32") / head_size)
    angles = positions[:, None] * frequencies[None, :]
    return ops.xp.cos(angles), ops.xp.sin(angles)


def rotate(X: Floats3d, cos: Floats2d, sin: Floats2d) -> Floats3d:
    """Rotate the pairs of columns (2m, 2m+1) of X (T, H, d) by the angles.

    This is the reference's RoPE layout. Passing -sin applies the inverse
    rotation, which is also the backward pass, since rotations are orthogonal.
    """
    even, odd = X[..., 0::2], X[..., 1::2]
    cos, sin = cos[:, None, :], sin[:, None, :]
    out = X.copy()
    out[..., 0::2] = even * cos - odd * sin
    out[..., 1::2] = odd * cos + even * sin
    return out


def pointer_band(ops: Ops, Q: Floats3d, K: Floats3d, width: int) -> Tuple[Floats3d, BandBackprop]:
    """Band of scaled dot products: out[t, w, h] = Q[t, h] . K[t + w, h] / sqrt(d).

    Q, K: (T, H, d). Pairs that reach past the batch's last token stay 0; pairs
    that cross a doc boundary are computed and masked by the caller.
    """
    n_tokens, n_heads, head_size = Q.shape
    scale = 1.0 / head_size**0.5
    out = _banded_products(ops, Q, K, width)
    out *= scale

    def backprop(d_out: Floats3d) -> Tuple[Floats3d, Floats3d]:
        dQ = ops.alloc3f(*Q.shape)
        dK = ops.alloc3f(*K.shape)
        for w in range(min(width, n_tokens)):
            d_w = d_out[: n_tokens - w, w, :, None] * scale
            dQ[: n_tokens - w] += d_w * K[w:]
            dK[w:] += d_w * Q[: n_tokens - w]
        return dQ, dK

    return out, backprop


def _banded_products(ops: Ops, Q: Floats3d, K: Floats3d, width: int) -> Floats3d:
    """out[t, w, h] = Q[t, h] . K[t + w, h] (0 past the last token), by block matrix products.

    The tokens are cut into blocks of W: block b's queries times the keys of
    blocks b and b + 1 is one (W, d) x (d, 2W) product that holds every pair
    of the band starting in block b (at row i, column i + w). One batched
    matmul replaces W elementwise passes, at twice the multiplications.
    """
    xp = ops.xp
    n_tokens, n_heads, head_size = Q.shape
    if n_tokens == 0 or width == 0:
        return ops.alloc3f(n_tokens, width, n_heads)
    n_blocks = -(-n_tokens // width)
    padded = n_blocks * width
    Qp = ops.alloc3f(n_heads, padded, head_size)
    Qp[:, :n_tokens] = Q.transpose(1, 0, 2)
    Kp = ops.alloc3f(n_heads, padded + width, head_size)
    Kp[:, :n_tokens] = K.transpose(1, 0, 2)
    blocks = (n_heads, n_blocks, width, head_size)
    keys = xp.concatenate([Kp[:, :padded].reshape(blocks), Kp[:, width:].reshape(blocks)], axis=2)
    products = xp.matmul(Qp.reshape(blocks), keys.transpose(0, 1, 3, 2))  # (H, blocks, W, 2W)
    rows = xp.arange(width)
    band = products[:, :, rows[:, None], rows[:, None] + rows[None, :]]  # (H, blocks, W, W)
    return xp.ascontiguousarray(band.reshape(n_heads, padded, width)[:, :n_tokens].transpose(1, 2, 0))


def add_span_ends(ops: Ops, starts: Floats2d, ends: Floats2d, width: int):
    """Band (T, W, K) whose cell (t, w, a) is starts[t, a] + ends[t + w, a]."""
    n_tokens, n_labels = starts.shape
    if n_tokens == 0 or width == 0:
        out = ops.alloc3f(n_tokens, width, n_labels)
    else:
        # one pass over the band in memory order (a loop over widths would stride across it W times)
        padded = ops.alloc2f(n_tokens + width - 1, n_labels)
        padded[:n_tokens] = ends
        windows = ops.xp.lib.stride_tricks.sliding_window_view(padded, width, axis=0)  # (T, K, W), a view
        out = windows.transpose(0, 2, 1) + starts[:, None, :]

    def backprop(d_out: Floats3d) -> Tuple[Floats2d, Floats2d]:
        d_ends = ops.alloc2f(n_tokens, n_labels)
        for w in range(min(width, n_tokens)):
            d_ends[w:] += d_out[: n_tokens - w, w]
        return d_out.sum(axis=1), d_ends

    return out, backprop


def _rope_qk(
    model: Model, Q: Floats3d, K: Floats3d, lengths: Ints1d
) -> Tuple[Floats3d, Floats3d, Callable]:
    """Apply RoPE (if enabled) to Q and K; return them and their backprop."""
    if not model.attrs["use_rope"]:
        return Q, K, lambda dQ, dK: (dQ, dK)
    cos, sin = rope_angles(model.ops, lengths, Q.shape[-1])

    def backprop(dQ: Floats3d, dK: Floats3d) -> Tuple[Floats3d, Floats3d]:
        return rotate(dQ, cos, -sin), rotate(dK, cos, -sin)

    return rotate(Q, cos, sin), rotate(K, cos, sin), backprop


def _mask_outside(ops: Ops, scores: Floats3d, inside: Array2d) -> Tuple[Floats3d, Callable]:
    """Set the cells where the (T, W) mask `inside` is False to -inf, in place (one band in memory, not three).

    -inf, never a large finite constant: a masked cell then has probability 0
    exactly and adds nothing to the loss or its gradient.
    """
    outside = ~inside[:, :, None]
    ops.xp.copyto(scores, -ops.xp.inf, where=outside)

    def backprop(d_scores: Floats3d) -> Floats3d:
        d_scores = d_scores.copy()
        ops.xp.copyto(d_scores, 0.0, where=outside)
        return d_scores

    return scores, backprop


def build_egp_head(
    head_size: int,
    use_rope: bool,
    max_span_length: Optional[int],
    nO: Optional[int] = None,
    *,
    span_prior: Optional[float] = None,
) -> Model[Ragged, Ragged]:
    """The EGP head: token vectors (T, D) → band of span logits (T, W, nO).

    span_prior: the label term's biases start at logit(span_prior) (start and
    end halves alike, so their mean is that logit); None: at 0.
    """
    attrs = {"use_rope": use_rope, "max_span_length": max_span_length, "span_prior": span_prior}
    return _pointer_layer("efficient_globalpointer_head", egp_forward, init_head, head_size, nO, attrs, label_term=True)


def build_gp_head(
    head_size: int, use_rope: bool, max_span_length: Optional[int], nO: Optional[int] = None
) -> Model[Ragged, Ragged]:
    """The GP head: token vectors (T, D) → band of span logits (T, W, nO)."""
    attrs = {"use_rope": use_rope, "max_span_length": max_span_length}
    return _pointer_layer("globalpointer_head", gp_forward, init_head, head_size, nO, attrs, label_term=False)


def _pointer_layer(
    name: str,
    forward: Callable,
    init: Callable,
    head_size: int,
    nO: Optional[int],
    attrs: Dict[str, Any],
    *,
    label_term: bool,
    params: Optional[Dict[str, None]] = None,
) -> Model[Ragged, Ragged]:
    """What every head and pointer is: a projection of the token vectors, and EGP's label term on it.

    label_term (bool): EGP: one q/k projection of width 2 * head_size shared by
        the nO channels, plus the label term (sized at init); GP: the projection
        alone, of width 2 * head_size per channel (sized at init).
    attrs (Dict[str, Any]): What the layer scores (use_rope, the band's width, its prior).
    """
    layers = [Linear(nO=2 * head_size), Linear()] if label_term else [Linear()]
    refs = dict(zip(("projection", "label_term"), layers))
    return Model(
        name, forward, init=init, layers=layers, refs=refs, params=params or {},
        dims={"nO": nO, "nI": None}, attrs={"head_size": head_size, **attrs},
    )


def init_head(model: Model, X: Optional[Ragged] = None, Y: Optional[Ragged] = None) -> None:
    """Infer nI from the token vectors and size the label-dependent layers."""
    if X is not None and not model.has_dim("nI"):
        model.set_dim("nI", X.data.shape[1])
    if not model.has_dim("nI"):
        raise ValueError(
            f"{model.name}: the width of the token vectors is unknown. Give the tok2vec "
            "an explicit output width (e.g. `width` of spacy.Tok2VecListener.v1) or "
            "initialize with example docs."
        )
    if Y is not None and not model.has_dim("nO"):
        model.set_dim("nO", Y.data.shape[-1])
    if not model.has_dim("nO"):
        raise ValueError(
            f"{model.name}: the number of labels is unknown. Initialize the component "
            "with examples that carry gold spans, or pass `labels`."
        )
    n_labels, head_size = model.get_dim("nO"), model.attrs["head_size"]
    projection = model.get_ref("projection")
    projection.set_dim("nI", model.get_dim("nI"))
    if model.has_ref("label_term"):
        model.get_ref("label_term").set_dim("nI", 2 * head_size)
        model.get_ref("label_term").set_dim("nO", 2 * n_labels)
    else:
        projection.set_dim("nO", 2 * head_size * n_labels)
    for layer in model.layers:
        layer.initialize()
    if model.attrs.get("span_prior") is not None:
        _init_span_prior(model, X)


def _init_span_prior(model: Model, X: Optional[Ragged]) -> None:
    """Start every cell near logit(span_prior), so that the untrained head predicts (almost) nothing.

    The label term's biases are set to that logit (it adds their mean). With
    glorot weights, q.k / sqrt(d) of a CNN tok2vec's vectors spreads with a
    standard deviation of about 5 and would still put ~20 % of the cells above
    0; so when sample vectors X are given, the projection is scaled down until
    that term has unit standard deviation on them (q.k is quadratic in it).
    """
    prior = model.attrs["span_prior"]
    if X is not None and len(X.data):
        d = model.attrs["head_size"]
        lengths = X.lengths
        P = model.get_ref("projection").predict(model.ops.asarray2f(X.data))
        Q, K, _ = _rope_qk(model, P[:, None, :d], P[:, None, d:], lengths)
        dots, _ = pointer_band(model.ops, Q, K, band_width(lengths, model.attrs["max_span_length"]))
        spread = float(dots[band_mask(model.ops, lengths, dots.shape[1])].std())
        if spread > 1.0:
            for name in ("W", "b"):
                model.get_ref("projection").get_param(name)[...] /= spread**0.5
    model.get_ref("label_term").get_param("b")[...] = probability_to_logit(prior)


def egp_forward(model: Model, X: Ragged, is_train: bool) -> Tuple[Ragged, Callable]:
    ops, d = model.ops, model.attrs["head_size"]
    width = band_width(X.lengths, model.attrs["max_span_length"])
    P, bp_projection = model.get_ref("projection")(ops.asarray2f(X.data), is_train)
    B, bp_label_term = model.get_ref("label_term")(P, is_train)
    n_labels = B.shape[1] // 2
    Q, K, bp_rope = _rope_qk(model, P[:, None, :d], P[:, None, d:], X.lengths)
    dots, bp_dots = pointer_band(ops, Q, K, width)
    scores, bp_ends = add_span_ends(ops, B[:, :n_labels] / 2, B[:, n_labels:] / 2, width)
    scores += dots
    scores, bp_mask = _mask_outside(ops, scores, band_mask(ops, X.lengths, scores.shape[1]))

    def backprop(dY: Ragged) -> Ragged:
        d_scores = bp_mask(dY.dataXd)
        d_starts, d_ends = bp_ends(d_scores)
        dQ, dK = bp_rope(*bp_dots(d_scores.sum(axis=2, keepdims=True)))
        dP = ops.xp.concatenate([dQ[:, 0], dK[:, 0]], axis=1)
        dP += bp_label_term(ops.xp.concatenate([d_starts, d_ends], axis=1) / 2)
        return Ragged(bp_projection(dP), X.lengths)

    return Ragged(scores, X.lengths), backprop


def gp_forward(model: Model, X: Ragged, is_train: bool) -> Tuple[Ragged, Callable]:
    ops, d, n_labels = model.ops, model.attrs["head_size"], model.get_dim("nO")
    width = band_width(X.lengths, model.attrs["max_span_length"])
    P, bp_projection = model.get_ref("projection")(ops.asarray2f(X.data), is_train)
    P3 = P.reshape((P.shape[0], n_labels, 2 * d))
    Q, K, bp_rope = _rope_qk(model, P3[..., :d], P3[..., d:], X.lengths)
    dots, bp_dots = pointer_band(ops, Q, K, width)
    scores, bp_mask = _mask_outside(ops, dots, band_mask(ops, X.lengths, dots.shape[1]))

    def backprop(dY: Ragged) -> Ragged:
        dQ, dK = bp_rope(*bp_dots(bp_mask(dY.dataXd)))
        dP = ops.xp.concatenate([dQ, dK], axis=2).reshape(P.shape)
        return Ragged(bp_projection(dP), X.lengths)

    return Ragged(scores, X.lengths), backprop


# --------------------------------------------------------------------------
# Pair pointers (GPLinker): scores of ordered token pairs, in both directions
# --------------------------------------------------------------------------
#
# GPLinker scores, for each channel c (a relation type's head-head or tail-tail
# pointer), every ordered pair (i, j) of tokens of a doc, with no RoPE and no
# tril mask (the first argument may come after the second). Two pointers:
#
# - EGP pair pointer (the reference's: bert4keras EfficientGlobalPointer with
#   RoPE=False, tril_mask=False): ONE q/k projection p_i = [q_i; k_i] (width
#   2d) shared by all channels, plus a per-channel label term (4d + 2 params):
#
#       s_c(i, j) = q_i . k_j / sqrt(d)  +  (w1_c . p_i + b1_c + w2_c . p_j + b2_c) / 2
#
# - GP pair pointer (`build_pair_head`): one q/k projection per channel,
#   s_c(i, j) = q_{c,i} . k_{c,j} / sqrt(d), plus (span_prior only) a
#   per-channel bias.
#
# Pairs are kept within a window, |i - j| <= max_pair_distance, which keeps
# memory linear in document length.
#
# Layout, the "pair band" (T, 2W, C), W = min(max_pair_distance + 1, longest
# doc): cell (t, w, c), w < W, is the pair (t, t + w) (first argument first);
# cell (t, W + w, c) is the pair (t + w, t) (first argument after the second).
# Column W would be the diagonal again and is never valid. The two halves are
# two bands of `pointer_band`, (q, k) and (k, q), so they share its products
# and its gradient.


def pair_mask(ops: Ops, lengths: Ints1d, width: int):
    """Boolean array (T, 2W): True where the pair of cell (t, w) lies inside t's doc (see pair band)."""
    forward = band_mask(ops, lengths, width)
    reverse = forward.copy()
    reverse[:, :1] = False  # the diagonal, already in the forward half
    return ops.xp.concatenate([forward, reverse], axis=1)


def pair_pointer(ops: Ops, Q: Floats3d, K: Floats3d, width: int) -> Tuple[Floats3d, BandBackprop]:
    """Pair band of scaled dot products (T, 2W, H): both halves of the layout above, unmasked."""
    forward, bp_forward = pointer_band(ops, Q, K, width)
    reverse, bp_reverse = pointer_band(ops, K, Q, width)  # reverse[t, w] = Q[t + w] . K[t]

    def backprop(d_out: Floats3d) -> Tuple[Floats3d, Floats3d]:
        dQ, dK = bp_forward(d_out[:, :width])
        dK_reverse, dQ_reverse = bp_reverse(d_out[:, width:])
        return dQ + dQ_reverse, dK + dK_reverse

    return ops.xp.concatenate([forward, reverse], axis=1), backprop


def build_pair_head(
    head_size: int, max_pair_distance: int, nO: Optional[int] = None, *, span_prior: Optional[float] = None
) -> Model[Ragged, Ragged]:
    """The GP pair pointer: token vectors (T, D) → pair band of logits (T, 2W, nO).

    nO channels, each with its own q/k projection of width 2 * head_size (as
    GP's labels); pairs farther apart than max_pair_distance are not scored.
    span_prior: a per-channel bias (GP has no label term to carry one) starting
    at logit(span_prior), with the projection scaled as the EGP head's (see
    `_init_span_prior`); None: no bias at all (spacy_egp.GPLinker.v1's pointer).
    """
    attrs = {"use_rope": False, "max_pair_distance": max_pair_distance, "pair_prior": span_prior}
    return _pointer_layer("pair_pointer_head", pair_forward, init_pair_head, head_size, nO, attrs, label_term=False,
                          params={"b": None} if span_prior is not None else {})


def build_egp_pair_head(
    head_size: int, max_pair_distance: int, nO: Optional[int] = None, *, span_prior: Optional[float] = None
) -> Model[Ragged, Ragged]:
    """The EGP pair pointer: token vectors (T, D) → pair band of logits (T, 2W, nO).

    One q/k projection of width 2 * head_size shared by the nO channels, and a
    label term per channel (see above); no RoPE, no tril mask. span_prior: the
    label term's biases start at logit(span_prior), the projection scaled as
    the EGP head's; None: biases at 0.
    """
    attrs = {"use_rope": False, "max_pair_distance": max_pair_distance, "pair_prior": span_prior}
    return _pointer_layer("egp_pair_pointer_head", egp_pair_forward, init_pair_head, head_size, nO, attrs,
                          label_term=True)


def build_pair_heads(head_pointer: Model, tail_pointer: Model) -> Model[Ragged, Ragged]:
    """GPLinker's head-head and tail-tail pointers as one pair band (T, 2W, nO), nO = 2R.

    Channels [0, R) are the head pointer's, [R, 2R) the tail pointer's: each
    pointer has a projection of its own, as the reference's two layers.
    """
    return Model(
        "pair_pointers",
        _pair_heads_forward,
        init=_init_pair_heads,
        layers=[head_pointer, tail_pointer],
        dims={"nO": None, "nI": None},
        attrs={"max_pair_distance": head_pointer.attrs["max_pair_distance"]},
    )


def _init_pair_heads(model: Model, X: Optional[Ragged] = None, Y: Optional[Ragged] = None) -> None:
    if model.has_dim("nO"):
        n_channels = model.get_dim("nO")
        if n_channels % 2:
            raise ValueError(f"{model.name}: nO must be even (head and tail pointers), got {n_channels}.")
        for pointer in model.layers:
            if not pointer.has_dim("nO"):
                pointer.set_dim("nO", n_channels // 2)
    init_side_by_side(model, X)


def init_side_by_side(model: Model, X: Optional[Ragged] = None) -> None:
    """Initialize layers that all read the model's input X: each gets the model's nI, if it lacks one."""
    for layer in model.layers:
        if model.has_dim("nI") and not layer.has_dim("nI"):
            layer.set_dim("nI", model.get_dim("nI"))
        layer.initialize(X=X)


def _pair_heads_forward(model: Model, X: Ragged, is_train: bool) -> Tuple[Ragged, Callable]:
    head_pointer, tail_pointer = model.layers
    heads, bp_heads = head_pointer(X, is_train)
    tails, bp_tails = tail_pointer(X, is_train)
    n_heads = heads.dataXd.shape[2]

    def backprop(dY: Ragged) -> Ragged:
        d_band = dY.dataXd
        d_heads = bp_heads(Ragged(model.ops.xp.ascontiguousarray(d_band[:, :, :n_heads]), X.lengths))
        d_tails = bp_tails(Ragged(model.ops.xp.ascontiguousarray(d_band[:, :, n_heads:]), X.lengths))
        return Ragged(d_heads.data + d_tails.data, X.lengths)

    return Ragged(model.ops.xp.concatenate([heads.dataXd, tails.dataXd], axis=2), X.lengths), backprop


def init_pair_head(model: Model, X: Optional[Ragged] = None, Y: Optional[Ragged] = None) -> None:
    """init_head (nI, nO, the layers), then the pair prior if any."""
    init_head(model, X, Y)
    prior = model.attrs["pair_prior"]
    if prior is None:
        return
    if X is not None and len(X.data):
        _scale_pair_projection(model, X)
    logit = probability_to_logit(prior)
    if model.has_ref("label_term"):
        model.get_ref("label_term").get_param("b")[...] = logit
    else:
        model.set_param("b", model.ops.xp.full((model.get_dim("nO"),), logit, dtype="float32"))


def _scale_pair_projection(model: Model, X: Ragged) -> None:
    """Scale the projection down until q.k / sqrt(d) has unit spread on the sample pairs (as `_init_span_prior`)."""
    d, lengths = model.attrs["head_size"], X.lengths
    projection = model.get_ref("projection")
    P = projection.predict(model.ops.asarray2f(X.data))
    P3 = P.reshape((P.shape[0], -1, 2 * d))
    width = pair_band_width(lengths, model.attrs["max_pair_distance"])
    dots, _ = pointer_band(model.ops, P3[..., :d], P3[..., d:], width)
    spread = float(dots[band_mask(model.ops, lengths, width)].std())
    if spread > 1.0:
        for name in ("W", "b"):
            projection.get_param(name)[...] /= spread**0.5


def pair_band_width(lengths: Ints1d, max_pair_distance: int) -> int:
    """W of the pair band for docs of these lengths: distances 0..max_pair_distance, within the longest doc."""
    return band_width(lengths, max_pair_distance + 1)


def pair_forward(model: Model, X: Ragged, is_train: bool) -> Tuple[Ragged, Callable]:
    ops, d, n_channels = model.ops, model.attrs["head_size"], model.get_dim("nO")
    width = pair_band_width(X.lengths, model.attrs["max_pair_distance"])
    P, bp_projection = model.get_ref("projection")(ops.asarray2f(X.data), is_train)
    P3 = P.reshape((P.shape[0], n_channels, 2 * d))
    scores, bp_scores = pair_pointer(ops, P3[..., :d], P3[..., d:], width)
    has_bias = model.has_param("b")
    if has_bias:
        scores += model.get_param("b")
    scores, bp_mask = _mask_outside(ops, scores, pair_mask(ops, X.lengths, width))

    def backprop(dY: Ragged) -> Ragged:
        d_scores = bp_mask(dY.dataXd)
        if has_bias:
            model.inc_grad("b", d_scores.sum(axis=(0, 1)))
        dQ, dK = bp_scores(d_scores)
        dP = ops.xp.concatenate([dQ, dK], axis=2).reshape(P.shape)
        return Ragged(bp_projection(dP), X.lengths)

    return Ragged(scores, X.lengths), backprop


def egp_pair_forward(model: Model, X: Ragged, is_train: bool) -> Tuple[Ragged, Callable]:
    ops, d = model.ops, model.attrs["head_size"]
    width = pair_band_width(X.lengths, model.attrs["max_pair_distance"])
    P, bp_projection = model.get_ref("projection")(ops.asarray2f(X.data), is_train)
    B, bp_label_term = model.get_ref("label_term")(P, is_train)
    n_channels = B.shape[1] // 2
    first, second = B[:, :n_channels] / 2, B[:, n_channels:] / 2
    dots, bp_dots = pair_pointer(ops, P[:, None, :d], P[:, None, d:], width)
    # forward half: (t, t + w), first argument at t; reverse half: (t + w, t), first argument at t + w
    forward, bp_forward = add_span_ends(ops, first, second, width)
    reverse, bp_reverse = add_span_ends(ops, second, first, width)
    scores = ops.xp.concatenate([forward, reverse], axis=1)
    scores += dots
    scores, bp_mask = _mask_outside(ops, scores, pair_mask(ops, X.lengths, width))

    def backprop(dY: Ragged) -> Ragged:
        d_scores = bp_mask(dY.dataXd)
        d_first, d_second = bp_forward(d_scores[:, :width])
        d_second_reverse, d_first_reverse = bp_reverse(d_scores[:, width:])
        dQ, dK = bp_dots(d_scores.sum(axis=2, keepdims=True))
        dP = ops.xp.concatenate([dQ[:, 0], dK[:, 0]], axis=1)
        d_B = ops.xp.concatenate([d_first + d_first_reverse, d_second + d_second_reverse], axis=1) / 2
        dP += bp_label_term(d_B)
        return Ragged(bp_projection(dP), X.lengths)

    return Ragged(scores, X.lengths), backprop

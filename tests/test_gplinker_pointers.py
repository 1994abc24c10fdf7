"""gplinker's pair pointers as the reference builds them (bert4keras EfficientGlobalPointer), their prior,
their cap, the reference's loss weighting and one relation per argument boundary."""

import math
import warnings

import numpy
import pytest
import spacy
from spacy.tokens import Doc, Span
from spacy.training import Example
from thinc.api import NumpyOps, fix_random_seed
from thinc.types import Ragged

from spacy_egp.pipeline.decoding import decode_relations
from spacy_egp.pipeline.gold import pair_cell
from spacy_egp.ml.heads import build_egp_pair_head, build_pair_head, build_pair_heads, pair_band_width
from spacy_egp.ml.gplinker_model import GPLinkerScores

OPS = NumpyOps()
WORDS = "John Smith works for Acme Corp in Paris .".split()
ENTITIES = [(0, 2, "Peop"), (4, 6, "Org"), (7, 8, "Loc")]
RELATIONS = [(0, "Work_For", 1), (1, "OrgBased_In", 2)]
SMALL_TOK2VEC = {
    "@architectures": "spacy.HashEmbedCNN.v2", "width": 32, "depth": 1, "embed_size": 500,
    "window_size": 1, "maxout_pieces": 2, "subword_features": True, "pretrained_vectors": None,
}


def make_example(nlp, words=WORDS, entities=ENTITIES, relations=RELATIONS) -> Example:
    reference = Doc(nlp.vocab, words=words)
    reference.spans["sc"] = [Span(reference, *entity) for entity in entities]
    reference._.relations = [
        (Span(reference, *entities[h]), label, Span(reference, *entities[t])) for h, label, t in relations
    ]
    return Example(Doc(nlp.vocab, words=words), reference)


def _tokens(lengths=(7, 4), width=6, seed=0) -> Ragged:
    rng = numpy.random.default_rng(seed)
    return Ragged(rng.normal(size=(sum(lengths), width)).astype("float32"), OPS.asarray1i(list(lengths)))


# --------------------------------------------------------------------------
# The EGP pair pointer against bert4keras's EfficientGlobalPointer
# --------------------------------------------------------------------------


def reference_egp_logits(x, p_kernel, p_bias, q_kernel, q_bias, heads, head_size):
    """bert4keras.layers.EfficientGlobalPointer.call for ONE doc, RoPE=False, tril_mask=False, no padding.

    Transcribed from bert4keras (layers.py):
        inputs = self.p_dense(inputs)
        qw, kw = inputs[..., ::2], inputs[..., 1::2]
        logits = tf.einsum('bmd,bnd->bmn', qw, kw) / self.head_size**0.5
        bias = tf.einsum('bnh->bhn', self.q_dense(inputs)) / 2
        logits = logits[:, None] + bias[:, ::2, None] + bias[:, 1::2, :, None]
    x (n, D); p_dense: (D, 2d) kernel; q_dense: (2d, 2 * heads) kernel, both with bias.
    RETURNS (heads, n, n): logits[h, m, n], m the first argument's token, n the second's.
    """
    inputs = x @ p_kernel + p_bias
    qw, kw = inputs[:, ::2], inputs[:, 1::2]
    logits = numpy.einsum("md,nd->mn", qw, kw) / head_size**0.5
    bias = numpy.einsum("nh->hn", inputs @ q_kernel + q_bias) / 2
    return logits[None] + bias[::2, None, :] + bias[1::2, :, None]


def reference_weights(head, head_size):
    """This head's parameters laid out as bert4keras's p_dense and q_dense kernels.

    Our projection is [q; k] (first half, second half), bert4keras interleaves (q = even, k = odd
    columns); our label term's first nO columns add at the first argument's token and the last nO
    at the second's, bert4keras's odd columns at the first (rows m) and even ones at the second (columns n).
    """
    d = head_size
    W, b = head.get_ref("projection").get_param("W"), head.get_ref("projection").get_param("b")
    interleave = numpy.empty(2 * d, dtype=int)
    interleave[0::2], interleave[1::2] = numpy.arange(d), d + numpy.arange(d)
    p_kernel, p_bias = W.T[:, interleave].astype("float64"), b[interleave].astype("float64")
    label_W, label_b = head.get_ref("label_term").get_param("W"), head.get_ref("label_term").get_param("b")
    n_channels = label_W.shape[0] // 2
    columns = numpy.empty(2 * n_channels, dtype=int)
    columns[0::2], columns[1::2] = n_channels + numpy.arange(n_channels), numpy.arange(n_channels)
    # q_dense reads the interleaved projection: its rows follow the same permutation
    q_kernel = label_W.T[interleave][:, columns].astype("float64")
    return p_kernel, p_bias, q_kernel, label_b[columns].astype("float64")


def test_egp_pair_scores_match_bert4keras_formula():
    d, n_channels, max_distance = 4, 3, 4
    X = _tokens()
    head = build_egp_pair_head(d, max_distance, nO=n_channels)
    head.initialize(X=X)
    # non-zero label-term biases, so that a swapped start/end half cannot pass
    head.get_ref("label_term").get_param("b")[...] = numpy.random.default_rng(3).normal(size=2 * n_channels)
    scores = head.predict(X).dataXd
    width = pair_band_width(X.lengths, max_distance)
    assert scores.shape == (len(X.data), 2 * width, n_channels)
    weights = reference_weights(head, d)
    offset, compared = 0, 0
    for length in X.lengths.tolist():
        x = X.data[offset : offset + length].astype("float64")
        want = reference_egp_logits(x, *weights, heads=n_channels, head_size=d)
        for m in range(length):
            for n in range(length):
                cell = pair_cell(m, n, width)
                if abs(m - n) > max_distance:
                    assert cell is None
                    continue
                got = scores[offset + cell[0], cell[1]]
                numpy.testing.assert_allclose(got, want[:, m, n], rtol=1e-4, atol=1e-5)
                compared += 1
        offset += length
    # every ordered pair within the window, both directions and the diagonal once
    assert compared == int(numpy.isfinite(scores[:, :, 0]).sum())


def _finite_difference_check(model, X, seed):
    weights = numpy.random.default_rng(seed).normal(size=model.predict(X).dataXd.shape)

    def loss(data):
        scores = model.predict(Ragged(data.astype("float32"), X.lengths)).dataXd
        return float(numpy.where(numpy.isfinite(scores), scores * weights, 0.0).sum())

    scores, backprop = model.begin_update(X)
    d_scores = numpy.where(numpy.isfinite(scores.dataXd), weights, 0.0).astype("float32")
    dX = backprop(Ragged(d_scores, X.lengths)).data
    eps = 1e-2
    for t, k in [(0, 0), (3, 2), (6, 5), (7, 1), (10, 3)]:
        plus, minus = X.data.astype("float64").copy(), X.data.astype("float64").copy()
        plus[t, k] += eps
        minus[t, k] -= eps
        numeric = (loss(plus) - loss(minus)) / (2 * eps)
        assert dX[t, k] == pytest.approx(numeric, rel=2e-2, abs=2e-2)
    return d_scores


def test_egp_pair_gradient_matches_finite_differences():
    X = _tokens(seed=1)
    head = build_egp_pair_head(4, 4, nO=3)
    head.initialize(X=X)
    head.get_ref("label_term").get_param("b")[...] = numpy.random.default_rng(4).normal(size=6)
    _finite_difference_check(head, X, seed=2)


def test_egp_pair_parameter_gradients_match_finite_differences():
    X = _tokens(seed=5)
    head = build_egp_pair_head(4, 4, nO=2)
    head.initialize(X=X)
    weights = numpy.random.default_rng(6).normal(size=head.predict(X).dataXd.shape)
    scores, backprop = head.begin_update(X)
    backprop(Ragged(numpy.where(numpy.isfinite(scores.dataXd), weights, 0.0).astype("float32"), X.lengths))

    def loss():
        out = head.predict(X).dataXd
        return float(numpy.where(numpy.isfinite(out), out.astype("float64") * weights, 0.0).sum())

    eps = 1e-2
    for layer in ("projection", "label_term"):
        for name, index in (("W", (1, 2)), ("b", (1,))):
            node = head.get_ref(layer)
            param = node.get_param(name)
            analytic = float(node.get_grad(name)[index])
            original = float(param[index])
            param[index] = original + eps
            plus = loss()
            param[index] = original - eps
            minus = loss()
            param[index] = original
            assert analytic == pytest.approx((plus - minus) / (2 * eps), rel=2e-2, abs=2e-2), (layer, name)


def test_head_and_tail_pointers_have_projections_of_their_own():
    X = _tokens(seed=7)
    pointers = build_pair_heads(build_egp_pair_head(4, 4), build_egp_pair_head(4, 4))
    pointers.set_dim("nO", 6)
    pointers.initialize(X=X)
    head_pointer, tail_pointer = pointers.layers
    band = pointers.predict(X).dataXd
    numpy.testing.assert_array_equal(band[:, :, :3], head_pointer.predict(X).dataXd)
    numpy.testing.assert_array_equal(band[:, :, 3:], tail_pointer.predict(X).dataXd)
    assert not numpy.array_equal(
        head_pointer.get_ref("projection").get_param("W"), tail_pointer.get_ref("projection").get_param("W")
    )
    _finite_difference_check(pointers, X, seed=8)


def test_gp_pair_pointer_with_prior_gradient_and_bias():
    X = _tokens(seed=9)
    head = build_pair_head(4, 4, nO=2, span_prior=0.01)
    head.initialize(X=X)
    assert numpy.allclose(head.get_param("b"), math.log(0.01 / 0.99))
    _finite_difference_check(head, X, seed=10)
    # without a prior: no bias parameter at all (spacy_egp.GPLinker.v1's pointer)
    assert not build_pair_head(4, 4, nO=2).has_param("b")


# --------------------------------------------------------------------------
# The architectures
# --------------------------------------------------------------------------


def _gplinker(nlp, name="gplinker", **model):
    config = {"model": {"tok2vec": SMALL_TOK2VEC, "head_size": 16, "pair_head_size": 16, **model}}
    return nlp.add_pipe("gplinker", name=name, config=config)


def test_v2_pair_pointers_are_egp_or_gp():
    nlp = spacy.blank("en")
    egp = _gplinker(nlp, "egp")
    gp = _gplinker(nlp, "gp", pair_pointer="gp")
    v1 = _gplinker(nlp, "v1", **{"@architectures": "spacy_egp.GPLinker.v1"})
    nlp.initialize(lambda: [make_example(nlp)])
    n_relations, width = 2, 32
    egp_pointers = egp.model.get_ref("pair_head").layers
    assert [p.name for p in egp_pointers] == ["egp_pair_pointer_head"] * 2
    # shared projection 2d wide, label term 4d + 2 per relation type
    for pointer in egp_pointers:
        assert pointer.get_ref("projection").get_param("W").shape == (2 * 16, width)
        assert pointer.get_ref("label_term").get_param("W").size + pointer.get_ref("label_term").get_param("b").size \
            == n_relations * (4 * 16 + 2)
    for pointer in gp.model.get_ref("pair_head").layers:
        assert pointer.get_ref("projection").get_param("W").shape == (n_relations * 2 * 16, width)
        assert pointer.has_param("b")
    v1_head = v1.model.get_ref("pair_head")
    assert v1_head.name == "pair_pointer_head" and not v1_head.has_param("b")
    assert v1_head.get_ref("projection").get_param("W").shape == (2 * n_relations * 2 * 16, width)
    with pytest.raises(ValueError, match="pair_pointer must be one of"):
        _gplinker(spacy.blank("en"), pair_pointer="global")


def test_untrained_gplinker_predicts_almost_no_pairs_and_no_relations():
    fix_random_seed(0)  # the share of passing pairs depends on the initial weights: no order dependence
    nlp = spacy.blank("en")
    pipe = _gplinker(nlp)
    v1 = _gplinker(nlp, "v1", **{"@architectures": "spacy_egp.GPLinker.v1"})
    examples = [make_example(nlp) for _ in range(3)]
    nlp.initialize(lambda: examples)
    docs = [nlp.make_doc(" ".join(WORDS * 6)) for _ in range(4)]
    band = pipe.predict(docs).pairs.dataXd
    finite = band[numpy.isfinite(band)]
    # the prior (0.01) puts the pairs' logits near -4.6, with the q.k term scaled to about unit spread
    # (measured: standard deviation 1.2-1.7, 0-1.1 % of pairs passing over seeds 0-11)
    assert (finite >= 0).mean() < 0.02
    assert numpy.median(finite) == pytest.approx(math.log(0.01 / 0.99), abs=1.0)
    # v1's pair pointers have no prior: about half of all pairs pass
    v1_band = v1.predict(docs).pairs.dataXd
    assert 0.2 < (v1_band[numpy.isfinite(v1_band)] >= 0).mean() < 0.8
    with nlp.select_pipes(disable=["v1"]):
        processed = list(nlp.pipe(" ".join(WORDS * 6) for _ in range(4)))
    assert sum(len(doc._.relations) for doc in processed) == 0


def test_pair_cap_and_no_cap():
    nlp = spacy.blank("en")
    pipe = _gplinker(nlp)
    nlp.initialize(lambda: [make_example(nlp)])
    doc = nlp.make_doc(" ".join(WORDS))
    scores = pipe.predict([doc])
    everything = numpy.where(numpy.isfinite(scores.pairs.dataXd), 1.0, scores.pairs.dataXd).astype("float32")
    pairs = Ragged(everything, scores.pairs.lengths)
    n_valid_per_pointer = int(numpy.isfinite(everything).sum()) // 2
    thresholds = pipe.relation_logit_thresholds()
    with pytest.warns(UserWarning, match="max_pairs_per_token"):
        capped = pipe.pairs_above(pairs, thresholds)
    cap = math.ceil(len(doc) * pipe.cfg["max_pairs_per_token"])
    assert [len(found) for found in capped[0]] == [cap, cap]
    pipe.cfg["max_pairs_per_token"] = None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        uncapped = pipe.pairs_above(pairs, thresholds)
    assert [len(found) for found in uncapped[0]] == [n_valid_per_pointer] * 2
    # max_spans_per_token = null no longer caps pairs, nor does it uncap them
    pipe.cfg["max_pairs_per_token"] = 0.5
    pipe.cfg["max_spans_per_token"] = None
    with pytest.warns(UserWarning):
        assert [len(found) for found in pipe.pairs_above(pairs, thresholds)[0]] == [5, 5]
    with pytest.raises(ValueError, match="max_pairs_per_token"):
        nlp.add_pipe("gplinker", name="bad", config={"max_pairs_per_token": -1})


def test_a_span_with_two_types_gives_one_relation():
    # "Acme" predicted as Org (0.9) and as Loc (0.6): one relation, with the Org argument
    acme_org, acme_loc, paris = (4, 6, "Org"), (4, 6, "Loc"), (7, 8, "Loc")
    entities, entity_scores = [acme_loc, acme_org, paris], [0.6, 0.9, 0.8]
    head_pairs, tail_pairs = {(0, 4, 7): 0.9}, {(0, 5, 7): 0.7}
    found = decode_relations(entities, head_pairs, tail_pairs, entity_scores=entity_scores)
    assert found == [(acme_org, 0, paris, 0.7)]
    # and through the component, against the scorer: precision is not charged twice
    nlp = spacy.blank("en")
    pipe = _gplinker(nlp)
    eg = make_example(nlp)
    nlp.initialize(lambda: [eg])
    doc = eg.predicted
    scores = pipe.predict([doc])
    entities_band = numpy.full(scores.entities.dataXd.shape, -10.0, dtype="float32")
    for (start, end, label), logit in [((0, 2, "Peop"), 5.0), ((4, 6, "Org"), 3.0), ((4, 6, "Loc"), 1.0),
                                       ((7, 8, "Loc"), 4.0)]:
        entities_band[start, end - start - 1, pipe.labels.index(label)] = logit
    pairs = numpy.where(numpy.isfinite(scores.pairs.dataXd), -10.0, scores.pairs.dataXd).astype("float32")
    width, n = pairs.shape[1] // 2, len(pipe.relation_labels)
    based = pipe.relation_labels.index("OrgBased_In")
    pairs[(*pair_cell(4, 7, width), based)] = 2.0
    pairs[(*pair_cell(5, 7, width), n + based)] = 2.0
    pipe.set_annotations([doc], GPLinkerScores(Ragged(entities_band, scores.entities.lengths),
                                               Ragged(pairs, scores.pairs.lengths)))
    assert len(doc.spans["sc"]) == 4
    assert [(r.head.label_, r.label, r.tail.text) for r in doc._.relations] == [("Org", "OrgBased_In", "Paris")]
    result = pipe.scorer([eg], spans_key="sc")
    assert (result["relations_p"], result["relations_r"]) == (1.0, 0.5)


# --------------------------------------------------------------------------
# The loss: the reference's weighting
# --------------------------------------------------------------------------


def _zlpr_row(logits, gold):
    """ZLPR of one (doc, channel) row from its formula, in float64."""
    negatives, positives = logits[~gold], logits[gold]
    return math.log1p(numpy.exp(negatives).sum()) + math.log1p(numpy.exp(-positives).sum())


@pytest.mark.parametrize("loss_weighting", ["reference", "per_pointer"])
def test_loss_weighs_rows_as_the_reference_or_pointers_equally(loss_weighting):
    nlp = spacy.blank("en")
    pipe = nlp.add_pipe("gplinker", config={"model": {"tok2vec": SMALL_TOK2VEC, "head_size": 16, "pair_head_size": 16},
                                            "loss_weighting": loss_weighting})
    examples = [make_example(nlp), make_example(nlp, entities=ENTITIES, relations=RELATIONS[:1])]
    nlp.initialize(lambda: examples)
    scores = pipe.predict([eg.predicted for eg in examples])
    loss, gradient = pipe.get_loss(examples, scores)
    labels, relation_labels = pipe.labels, pipe.relation_labels
    width = scores.pairs.dataXd.shape[1] // 2
    # each pointer's rows: entity types, head-pair relation types, tail-pair relation types
    rows: dict = {"entity": [], "head": [], "tail": []}
    offset = 0
    for eg in examples:
        n = len(eg.predicted)
        entity_band = scores.entities.dataXd[offset : offset + n].astype("float64")
        pair_band = scores.pairs.dataXd[offset : offset + n].astype("float64")
        for k, label in enumerate(labels):
            gold = numpy.zeros(entity_band.shape[:2], bool)
            for span in eg.reference.spans["sc"]:
                if span.label_ == label:
                    gold[span.start, span.end - span.start - 1] = True
            valid = numpy.isfinite(entity_band[:, :, k])
            rows["entity"].append(_zlpr_row(entity_band[:, :, k][valid], gold[valid]))
        for r, label in enumerate(relation_labels):
            heads = numpy.zeros(pair_band.shape[:2], bool)
            tails = numpy.zeros(pair_band.shape[:2], bool)
            for relation in eg.reference._.relations:
                if relation.label == label:
                    heads[pair_cell(relation.head.start, relation.tail.start, width)] = True
                    tails[pair_cell(relation.head.end - 1, relation.tail.end - 1, width)] = True
            for pointer, channel, gold in (("head", r, heads), ("tail", len(relation_labels) + r, tails)):
                valid = numpy.isfinite(pair_band[:, :, channel])
                rows[pointer].append(_zlpr_row(pair_band[:, :, channel][valid], gold[valid]))
        offset += n
    if loss_weighting == "reference":  # K.mean(K.sum(loss, axis=1)): per doc the sum of its rows
        expected = sum(sum(values) for values in rows.values()) / len(examples)
    else:
        expected = sum(numpy.mean(values) for values in rows.values())
    assert loss == pytest.approx(expected, rel=1e-4)
    assert isinstance(gradient, GPLinkerScores)


def test_loss_weighting_must_be_known():
    with pytest.raises(ValueError, match="loss_weighting = 'sum'.*'per_pointer'"):
        spacy.blank("en").add_pipe("gplinker", config={"loss_weighting": "sum"})


@pytest.mark.parametrize("pair_pointer", ["egp", "gp"])
def test_both_pair_pointers_learn_the_relations_of_a_few_sentences(pair_pointer):
    nlp = spacy.blank("en")
    _gplinker(nlp, pair_pointer=pair_pointer)
    places = ["Paris", "Rome", "Oslo", "Lima"]
    examples = [make_example(nlp, words=WORDS[:7] + [place, "."]) for place in places]
    optimizer = nlp.initialize(lambda: examples)
    optimizer.learn_rate = 0.01
    losses = []
    for _ in range(40):
        step: dict = {}
        nlp.update(examples, sgd=optimizer, losses=step)
        losses.append(step["gplinker"])
    assert losses[-1] < 0.05 * losses[0]
    for doc, eg in zip(nlp.pipe(eg.reference.text for eg in examples), examples):
        predicted = {(r.head.text, r.label, r.tail.text) for r in doc._.relations}
        assert predicted == {(r.head.text, r.label, r.tail.text) for r in eg.reference._.relations}

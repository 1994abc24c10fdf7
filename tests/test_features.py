"""spacy_egp.CharBigramEmbed.v1: hashed left/right character bigrams on top of MultiHashEmbed."""

from typing import List

import numpy
import pytest
import spacy
from spacy.language import Language
from spacy.ml.models.tok2vec import MultiHashEmbed
from spacy.tokens import Doc
from spacy.strings import hash_string
from spacy.util import registry
from thinc.api import Config, Model

from spacy_egp.ml.features import BOUNDARY, bigram_keys, build_char_bigram_embed, char_bigram_features

ATTRS = ["NORM", "PREFIX", "SUFFIX", "SHAPE"]
ROWS = [500, 100, 100, 50]
WIDTH = 16


@pytest.fixture(scope="module")
def nlp() -> Language:
    return spacy.blank("zh")  # one token per character


def _embed(docs: List[Doc], **kwargs) -> Model:
    model = build_char_bigram_embed(WIDTH, kwargs.pop("attrs", ATTRS), kwargs.pop("rows", ROWS), False,
                                    bigram_rows=kwargs.pop("bigram_rows", 300), **kwargs)
    model.initialize(X=docs)
    return model


def test_output_shapes(nlp: Language) -> None:
    docs = [nlp("北京市长"), nlp("我"), nlp("上海浦东新区的医院")]
    model = _embed(docs)
    outputs = model.predict(docs)
    assert [o.shape for o in outputs] == [(len(doc), WIDTH) for doc in docs]
    assert all(numpy.isfinite(o).all() for o in outputs)


def _tables(model: Model) -> List[Model]:
    """The HashEmbed tables: the lexical attributes' (ATTRS order), then the left and right bigram's."""
    return [node for node in model.walk() if node.name == "hashembed"]


def _table_keys(docs: List[Doc], table_index: int) -> numpy.ndarray:
    """The uint64 keys a table looks up for these docs: a token attribute, or a bigram of NORMs."""
    if table_index < len(ATTRS):
        return numpy.concatenate([doc.to_array([ATTRS[table_index]]) for doc in docs]).astype("uint64")
    boundary = hash_string(BOUNDARY)
    column = table_index - len(ATTRS)
    return numpy.concatenate([bigram_keys(doc.to_array(["NORM"]), boundary)[:, column] for doc in docs])


def _table_rows(table: Model, keys: numpy.ndarray) -> numpy.ndarray:
    """(n, 4) rows of a HashEmbed table for n keys: thinc's murmurhash of each key with the table's seed, mod nV."""
    return table.ops.hash(numpy.ascontiguousarray(keys), table.attrs["seed"]) % table.get_dim("nV")


def test_training_gradients_reach_exactly_the_rows_of_the_docs_keys(nlp: Language) -> None:
    """After one backward pass every table has a gradient on the rows its keys hash to, and nowhere else."""
    docs = [nlp("北京市长"), nlp("上海")]
    model = _embed(docs)
    outputs, backprop = model.begin_update(docs)
    rng = numpy.random.default_rng(0)
    backprop([rng.normal(size=o.shape).astype("float32") for o in outputs])
    tables = _tables(model)
    assert [t.get_dim("nV") for t in tables] == ROWS + [300, 300]
    for index, table in enumerate(tables):
        rows = set(_table_rows(table, _table_keys(docs, index)).ravel().tolist())
        touched = set(numpy.flatnonzero(numpy.abs(table.get_grad("E")).sum(axis=1)).tolist())
        assert touched == rows, f"table {index}"


def test_training_gradient_of_the_tables_matches_finite_differences(nlp: Language) -> None:
    """The tables' gradient after one backward pass is the derivative of sum(outputs * d_outputs)."""
    spacy.util.fix_random_seed(0)
    docs = [nlp("北京市长"), nlp("上海")]
    model = _embed(docs)
    rng = numpy.random.default_rng(1)
    d_outputs = [rng.normal(size=(len(doc), WIDTH)) for doc in docs]

    def loss() -> float:
        return sum(float((o.astype("float64") * d).sum()) for o, d in zip(model.predict(docs), d_outputs))

    _, backprop = model.begin_update(docs)
    backprop([d.astype("float32") for d in d_outputs])
    eps = 1e-3  # small: a Maxout piece switching inside [x - eps, x + eps] would break the derivative
    tables = _tables(model)
    for index in (0, len(ATTRS), len(ATTRS) + 1):  # the NORM table and both bigram tables
        table = tables[index]
        E, grad = table.get_param("E"), table.get_grad("E").copy()
        # a row of the first doc's first key and one of the second doc's last key, a few columns of each
        rows = _table_rows(table, _table_keys(docs, index))[[0, -1], 0].tolist()
        for row, column in [(row, column) for row in rows for column in (0, 7, 15)]:
            original = float(E[row, column])
            E[row, column] = original + eps
            plus = loss()
            E[row, column] = original - eps
            minus = loss()
            E[row, column] = original
            assert grad[row, column] == pytest.approx((plus - minus) / (2 * eps), rel=5e-2, abs=1e-3)


def test_bigram_keys_left_right_and_boundary() -> None:
    boundary = 7
    keys = bigram_keys(numpy.asarray([1, 2, 3], dtype="uint64"), boundary)
    assert keys.shape == (3, 2) and keys.dtype == numpy.uint64
    # the right bigram of a token is the left bigram of the next one
    assert keys[0, 1] == keys[1, 0] and keys[1, 1] == keys[2, 0]
    # order matters: "12" != "21"
    assert bigram_keys(numpy.asarray([2, 1], dtype="uint64"), boundary)[0, 1] != keys[0, 1]
    # the edges use the boundary symbol
    assert keys[0, 0] == bigram_keys(numpy.asarray([boundary, 1], dtype="uint64"), 0)[1, 0]
    assert bigram_keys(numpy.asarray([], dtype="uint64"), boundary).shape == (0, 2)


def test_neighbour_changes_the_token_vector(nlp: Language) -> None:
    """Same middle character, different left neighbour: different vectors only with bigrams."""
    a, b = nlp("北京市"), nlp("南京市")
    model = _embed([a, b])
    out_a, out_b = model.predict([a, b])
    assert not numpy.allclose(out_a[1], out_b[1])  # 京 after 北 vs after 南
    numpy.testing.assert_allclose(out_a[2], out_b[2], rtol=1e-5)  # 市: same token, same bigrams 京市, 市+edge
    # a plain MultiHashEmbed over NORM only gives 京 the same vector whatever its neighbours
    plain = MultiHashEmbed(WIDTH, ["NORM"], [500], False)
    plain.initialize(X=[a, b])
    plain_a, plain_b = plain.predict([a, b])
    numpy.testing.assert_allclose(plain_a[1], plain_b[1])
    # and with NORM only plus bigrams, 市 (left bigram 京市, right bigram 市+boundary) is the same in both docs
    norm_only = _embed([a, b], attrs=["NORM"], rows=[500])
    norm_a, norm_b = norm_only.predict([a, b])
    numpy.testing.assert_allclose(norm_a[2], norm_b[2], rtol=1e-5)
    assert not numpy.allclose(norm_a[1], norm_b[1])
    assert not numpy.allclose(norm_a[0], norm_b[0])


def test_empty_docs(nlp: Language) -> None:
    docs = [nlp(""), nlp("北京"), nlp("")]
    model = _embed(docs)
    outputs = model.predict(docs)
    assert [o.shape for o in outputs] == [(0, WIDTH), (2, WIDTH), (0, WIDTH)]
    assert model.predict([nlp("")])[0].shape == (0, WIDTH)
    features = char_bigram_features().predict([nlp("")])
    assert features[0].shape == (0, 2)


def test_serialization_round_trip(nlp: Language) -> None:
    docs = [nlp("北京市长江大桥"), nlp("上海")]
    model = _embed(docs)
    expected = model.predict(docs)
    fresh = build_char_bigram_embed(WIDTH, ATTRS, ROWS, False, bigram_rows=300)
    fresh.from_bytes(model.to_bytes())
    for got, want in zip(fresh.predict(docs), expected):
        numpy.testing.assert_array_equal(got, want)


def test_mismatched_rows() -> None:
    with pytest.raises(ValueError):
        build_char_bigram_embed(WIDTH, ATTRS, ROWS[:2], False)


def test_unknown_attribute() -> None:
    with pytest.raises(ValueError):
        char_bigram_features("NOT_AN_ATTR")


def test_boundary_is_a_string_not_a_character() -> None:
    assert len(BOUNDARY) > 1  # cannot collide with a one-character token


CONFIG = """
[model]
@architectures = "spacy.Tok2Vec.v2"

[model.embed]
@architectures = "spacy_egp.CharBigramEmbed.v1"
width = 16
attrs = ["NORM", "PREFIX", "SUFFIX", "SHAPE"]
rows = [500, 100, 100, 50]
include_static_vectors = false
bigram_rows = 300

[model.encode]
@architectures = "spacy.MaxoutWindowEncoder.v2"
width = 16
window_size = 1
maxout_pieces = 3
depth = 2
"""


def test_registered_and_resolved_from_a_config(nlp: Language) -> None:
    assert registry.architectures.get("spacy_egp.CharBigramEmbed.v1") is build_char_bigram_embed
    tok2vec = registry.resolve(Config().from_str(CONFIG))["model"]
    docs = [nlp("北京市"), nlp("")]
    tok2vec.initialize(X=docs)
    assert [o.shape for o in tok2vec.predict(docs)] == [(3, 16), (0, 16)]


def test_in_the_egp_pipeline(nlp: Language) -> None:
    """The shipped CLUENER config with the bigram embed builds and initializes."""
    from pathlib import Path

    from spacy_egp.benchmark.ablation import build_config

    template = Config().from_disk(Path(__file__).parent.parent / "configs" / "cluener_cnn.cfg", interpolate=False)
    config = build_config(template, "bigram", max_steps=10, eval_frequency=5)
    pipeline = spacy.util.load_model_from_config(config, auto_fill=True)
    from spacy.tokens import Span

    doc = pipeline.make_doc("北京市长")
    doc.spans["sc"] = [Span(doc, 0, 2, label="LOC")]
    pipeline.initialize(lambda: [spacy.training.Example(pipeline.make_doc(doc.text), doc)])
    assert len(list(pipeline.pipe(["北京市长江大桥", ""]))) == 2

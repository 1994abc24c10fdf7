"""spacy_egp.CharBigramEmbed.v2: each character's place in a segmenter's words (jieba), on top of v1."""

from typing import Iterable, List, Tuple

import numpy
import pytest
import spacy
from spacy.language import Language
from spacy.strings import hash_string
from spacy.tokens import Doc
from spacy.util import registry
from thinc.api import Config, Model

from spacy_egp.ml.features import (build_char_bigram_embed, build_char_bigram_embed_v2, get_segmenter,
                                   segmenter_word_features, word_keys)

ATTRS = ["NORM", "PREFIX", "SUFFIX", "SHAPE"]
ROWS = [500, 100, 100, 50]
WIDTH = 16


@pytest.fixture(scope="module")
def nlp() -> Language:
    return spacy.blank("zh")  # one token per character


def fixed_segmentation(words: List[str]):
    """A segmenter that returns `words` (which must spell the text) with their offsets."""

    def segment(text: str) -> Iterable[Tuple[str, int, int]]:
        assert "".join(words) == text
        start = 0
        for word in words:
            yield word, start, start + len(word)
            start += len(word)

    return segment


def test_word_keys_tags_and_words(nlp: Language) -> None:
    doc = nlp("北京市长江大桥")
    keys = word_keys(doc, fixed_segmentation(["北京市", "长江大桥"]))
    expected = [("B", "北京市"), ("M", "北京市"), ("E", "北京市"),
                ("B", "长江大桥"), ("M", "长江大桥"), ("M", "长江大桥"), ("E", "长江大桥")]
    assert keys.dtype == numpy.uint64 and keys.shape == (7, 2)
    assert keys[:, 0].tolist() == [hash_string(tag) for tag, _ in expected]
    assert keys[:, 1].tolist() == [hash_string(f"{tag}|{word}") for tag, word in expected]


def test_one_character_word_is_S_and_the_same_word_elsewhere_differs_by_tag(nlp: Language) -> None:
    doc = nlp("我在北京")
    keys = word_keys(doc, fixed_segmentation(["我", "在", "北京"]))
    assert keys[0, 0] == keys[1, 0] == hash_string("S")
    assert keys[2, 1] != keys[3, 1]  # B|北京 vs E|北京


def test_a_token_of_several_characters_takes_its_first_characters_word() -> None:
    vocab = spacy.blank("zh").vocab
    doc = Doc(vocab, words=["北京", "市长"], spaces=[False, False])
    keys = word_keys(doc, fixed_segmentation(["北京市", "长"]))
    assert keys[:, 1].tolist() == [hash_string("B|北京市"), hash_string("E|北京市")]


def test_empty_doc(nlp: Language) -> None:
    assert word_keys(nlp(""), fixed_segmentation([])).shape == (0, 2)


def test_jieba_segments_the_text(nlp: Language) -> None:
    segment = get_segmenter("jieba")
    text = "浙商银行企业信贷部"
    words = list(segment(text))
    assert "".join(word for word, _, _ in words) == text
    assert all(text[start:end] == word for word, start, end in words)
    features = segmenter_word_features("jieba").predict([nlp(text), nlp("")])
    assert [f.shape for f in features] == [(len(text), 2), (0, 2)]


def test_unknown_segmenter() -> None:
    with pytest.raises(ValueError, match="unknown segmenter 'pkuseg'"):
        get_segmenter("pkuseg")


def _embed(docs: List[Doc], segmenter=None) -> Model:
    model = build_char_bigram_embed_v2(WIDTH, ATTRS, ROWS, False, bigram_rows=300, segmenter=segmenter,
                                       word_rows=200)
    model.initialize(X=docs)
    return model


def test_without_a_segmenter_v2_is_v1_weights_included(nlp: Language) -> None:
    docs = [nlp("北京市长江大桥"), nlp("上海")]
    v1 = build_char_bigram_embed(WIDTH, ATTRS, ROWS, False, bigram_rows=300)
    v1.initialize(X=docs)
    v2 = build_char_bigram_embed_v2(WIDTH, ATTRS, ROWS, False, bigram_rows=300)
    v2.from_bytes(v1.to_bytes())
    for got, want in zip(v2.predict(docs), v1.predict(docs)):
        numpy.testing.assert_array_equal(got, want)


def test_the_words_change_the_vectors_and_get_gradients(nlp: Language) -> None:
    """Same characters, another segmentation: only the word tables' lookups differ, so the vectors do."""
    docs = [nlp("南京市长江大桥")]
    model = _embed(docs, segmenter="jieba")
    tables = [node for node in model.walk() if node.name == "hashembed"]
    assert len(tables) == len(ATTRS) + 4
    outputs, backprop = model.begin_update(docs)
    assert outputs[0].shape == (7, WIDTH)
    backprop([model.ops.alloc2f(7, WIDTH) + 1.0])
    assert all(numpy.abs(table.get_grad("E")).sum() > 0 for table in tables[-2:])
    features = model.walk()
    word_layer = next(node for node in features if node.name == "segmenter_word_features")
    jieba_keys = word_layer.predict(docs)[0]
    other = word_keys(docs[0], fixed_segmentation(["南京", "市长", "江大桥"]))
    assert (numpy.asarray(jieba_keys) != other).any()


def test_serialization_round_trip(nlp: Language) -> None:
    docs = [nlp("北京市长江大桥"), nlp("上海")]
    model = _embed(docs, segmenter="jieba")
    fresh = build_char_bigram_embed_v2(WIDTH, ATTRS, ROWS, False, bigram_rows=300, segmenter="jieba",
                                       word_rows=200)
    fresh.from_bytes(model.to_bytes())
    for got, want in zip(fresh.predict(docs), model.predict(docs)):
        numpy.testing.assert_array_equal(got, want)


CONFIG = """
[model]
@architectures = "spacy_egp.CharBigramEmbed.v2"
width = 16
attrs = ["NORM", "PREFIX", "SUFFIX", "SHAPE"]
rows = [500, 100, 100, 50]
include_static_vectors = false
bigram_rows = 300
segmenter = "jieba"
word_rows = 200
"""


def test_registered_and_resolved_from_a_config(nlp: Language) -> None:
    assert registry.architectures.get("spacy_egp.CharBigramEmbed.v2") is build_char_bigram_embed_v2
    embed = registry.resolve(Config().from_str(CONFIG))["model"]
    docs = [nlp("北京市"), nlp("")]
    embed.initialize(X=docs)
    assert [o.shape for o in embed.predict(docs)] == [(3, 16), (0, 16)]

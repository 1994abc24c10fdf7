"""Extra token features for the tok2vec: hashed character bigrams.

For Chinese, spaCy's "char" segmenter makes every character a token, so the
lexical features of MultiHashEmbed (NORM, PREFIX, SUFFIX, SHAPE) all describe a
single character. Character bigrams are the classic strong feature of Chinese
NER taggers: they tell a token which word it probably begins or ends, before
any context encoder runs. `spacy_egp.CharBigramEmbed.v1` is MultiHashEmbed plus
two more hash-embedding tables, one for the left bigram (previous token + this
token) and one for the right bigram (this token + next token); a boundary
symbol stands in for the missing neighbour at the edges of the doc.

`spacy_egp.CharBigramEmbed.v2` can add the words of a segmenter (jieba, which
spaCy's own Chinese tokenizer also wraps): each character gets its position in
the word the segmenter puts it in (B, M, E or S, the begin/inside tags of
word-boundary features) and that position together with the word itself (a
hashed lexicon match), two more hash-embedding tables.
"""

import logging
from typing import Callable, Iterable, List, Optional, Tuple, Union, cast

import numpy
from spacy.attrs import intify_attr
from spacy.ml.featureextractor import FeatureExtractor
from spacy.ml.staticvectors import StaticVectors
from spacy.strings import hash_string
from spacy.tokens import Doc
from spacy.util import registry
from thinc.api import HashEmbed, Maxout, Model, Ragged, chain, concatenate, list2ragged, ragged2list, with_array
from thinc.types import Floats2d, Ints2d

BOUNDARY = "<egp-doc-boundary>"
# Odd 64-bit constants: (left, right) -> left * A + right * B (mod 2**64) is asymmetric, so "ab" != "ba".
# HashEmbed hashes the key again with its own seed, so this only needs to keep distinct pairs apart.
_MIX_LEFT = numpy.uint64(0x9E3779B97F4A7C15)
_MIX_RIGHT = numpy.uint64(0xC2B2AE3D27D4EB4F)
SEGMENTERS = ("jieba",)
Segment = Callable[[str], Iterable[Tuple[str, int, int]]]


def bigram_keys(tokens: numpy.ndarray, boundary: int) -> numpy.ndarray:
    """The (n, 2) uint64 keys of the left and right bigram of each of n token ids.

    tokens (numpy.ndarray): the uint64 attribute ids (e.g. NORM hashes) of a doc's tokens.
    boundary (int): the id that stands in for the neighbour before the first and after the last token.
    RETURNS (numpy.ndarray): column 0 = key of (previous, this), column 1 = key of (this, next).
    """
    tokens = numpy.asarray(tokens, dtype=numpy.uint64).reshape(-1)
    edge = numpy.asarray([boundary], dtype=numpy.uint64)
    previous = numpy.concatenate([edge, tokens[:-1]]) if len(tokens) else tokens
    following = numpy.concatenate([tokens[1:], edge]) if len(tokens) else tokens
    with numpy.errstate(over="ignore"):
        left = previous * _MIX_LEFT + tokens * _MIX_RIGHT
        right = tokens * _MIX_LEFT + following * _MIX_RIGHT
    return numpy.stack([left, right], axis=1).astype(numpy.uint64)


def char_bigram_features(attr: Union[str, int] = "NORM") -> Model[List[Doc], List[Ints2d]]:
    """A layer that maps each doc to the (n, 2) keys of its tokens' left and right bigrams.

    attr (Union[str, int]): the token attribute the bigrams are made of.
    RETURNS (Model[List[Doc], List[Ints2d]]): the feature layer (no parameters, no gradient).
    """
    attr_id = intify_attr(attr)
    if attr_id is None:
        raise ValueError(f"unknown token attribute {attr!r}")
    boundary = hash_string(BOUNDARY)

    def forward(model: Model[List[Doc], List[Ints2d]], docs: List[Doc],
                is_train: bool) -> Tuple[List[Ints2d], Callable]:
        features = [model.ops.asarray2i(bigram_keys(doc.to_array([attr_id]), boundary), dtype="uint64")
                    for doc in docs]
        return features, lambda d_features: []

    return Model("char_bigram_features", forward, attrs={"attr": attr_id})


def jieba_segment() -> Segment:
    """jieba's word segmentation of a text as (word, start, end) character offsets; its dictionary loads on first use."""
    try:
        import jieba
    except ImportError as error:
        raise ImportError("segmenter = \"jieba\" needs the jieba package, a requirement of spacy-egp: "
                          "pip install jieba") from error
    jieba.setLogLevel(logging.WARNING)  # it logs the dictionary's loading at INFO
    return jieba.tokenize


def get_segmenter(name: str) -> Segment:
    """The segmenter called `name` (one of SEGMENTERS)."""
    if name != "jieba":
        raise ValueError(f"unknown segmenter {name!r}: use one of {SEGMENTERS}, or null for none")
    return jieba_segment()


def word_keys(doc: Doc, segment: Segment) -> numpy.ndarray:
    """The (n, 2) uint64 keys of each token's place in the segmenter's words.

    doc (Doc): the doc; a token takes the word of its first character.
    segment (Segment): maps a text to its words as (word, start, end) character offsets.
    RETURNS (numpy.ndarray): column 0 = key of the tag (B, M, E or S: the character begins, is inside, ends or
        is a one-character word), column 1 = key of the tag together with the word.
    """
    tags = numpy.zeros((len(doc.text), 2), dtype=numpy.uint64)
    for word, start, end in segment(doc.text):
        for position in range(start, end):
            tag = "S" if end - start == 1 else "B" if position == start else "E" if position == end - 1 else "M"
            tags[position] = (hash_string(tag), hash_string(f"{tag}|{word}"))
    starts = numpy.fromiter((token.idx for token in doc), dtype=numpy.int64, count=len(doc))
    return tags[starts]


def segmenter_word_features(segmenter: str) -> Model[List[Doc], List[Ints2d]]:
    """A layer that maps each doc to the (n, 2) keys of `word_keys` (no parameters, no gradient).

    segmenter (str): the segmenter's name, one of SEGMENTERS.
    RETURNS (Model[List[Doc], List[Ints2d]]): the feature layer.
    """
    segment = get_segmenter(segmenter)

    def forward(model: Model[List[Doc], List[Ints2d]], docs: List[Doc],
                is_train: bool) -> Tuple[List[Ints2d], Callable]:
        features = [model.ops.asarray2i(word_keys(doc, segment), dtype="uint64") for doc in docs]
        return features, lambda d_features: []

    return Model("segmenter_word_features", forward, attrs={"segmenter": segmenter})


def _hashed_pair(features: Model[List[Doc], List[Ints2d]], width: int, rows: int,
                 seed: int) -> Model[List[Doc], Ragged]:
    """Two hash-embedding tables, one per column of a feature layer's (n, 2) keys, concatenated."""
    tables = [HashEmbed(width, rows, column=column, seed=seed + column, dropout=0.0) for column in range(2)]
    return chain(features, cast(Model[List[Ints2d], Ragged], list2ragged()), with_array(concatenate(*tables)))


def _empty_safe(width: int) -> Model[Ragged, Ragged]:
    """Give a batch without tokens the (0, `width`) shape that the Maxout layer after it expects.

    thinc flattens a list of empty feature arrays to shape (0, 0), and the
    concatenation of embeddings keeps that, so an all-empty batch would reach
    the Maxout's gemm with 0 columns.
    """

    def forward(model: Model[Ragged, Ragged], X: Ragged, is_train: bool) -> Tuple[Ragged, Callable]:
        if X.data.shape[0] != 0:
            return X, lambda dY: dY
        shape = X.data.shape

        def backprop(dY: Ragged) -> Ragged:
            return Ragged(model.ops.alloc2f(*shape), dY.lengths)

        return Ragged(model.ops.alloc2f(0, width), X.lengths), backprop

    return Model("empty_safe", forward)


@registry.architectures("spacy_egp.CharBigramEmbed.v1")
def build_char_bigram_embed(
    width: int,
    attrs: List[Union[str, int]],
    rows: List[int],
    include_static_vectors: bool,
    bigram_rows: int = 20000,
    bigram_attr: Union[str, int] = "NORM",
) -> Model[List[Doc], List[Floats2d]]:
    """MultiHashEmbed plus hashed embeddings of each token's left and right character bigram.

    A drop-in `embed` for spacy.Tok2Vec.v2: each attribute in `attrs` gets a
    HashEmbed table as in spacy.MultiHashEmbed.v2 (same seeds), the left
    bigram (previous token + this token) and the right bigram (this token +
    next token) one more table each (a boundary symbol stands in for the
    missing neighbour at a doc's ends), and a Maxout layer (3 pieces, layer
    normalization) mixes the concatenation down to `width`. It is
    CharBigramEmbed.v2 without a segmenter, whose docstring describes the
    arguments.
    """
    return build_char_bigram_embed_v2(width, attrs, rows, include_static_vectors, bigram_rows=bigram_rows,
                                      bigram_attr=bigram_attr)


@registry.architectures("spacy_egp.CharBigramEmbed.v2")
def build_char_bigram_embed_v2(
    width: int,
    attrs: List[Union[str, int]],
    rows: List[int],
    include_static_vectors: bool,
    bigram_rows: int = 20000,
    bigram_attr: Union[str, int] = "NORM",
    segmenter: Optional[str] = None,
    word_rows: int = 20000,
) -> Model[List[Doc], List[Floats2d]]:
    """CharBigramEmbed.v1, plus (with a `segmenter`) each character's place in the segmenter's words.

    With `segmenter = "jieba"`, two more tables embed each character's tag in
    its jieba word (B, M, E or S) and that tag together with the word; with
    `segmenter = null` this is CharBigramEmbed.v1, weights included.

    width (int): the output width, also the width of every embedding table.
    attrs (List[Union[str, int]]): the token attributes to embed, e.g. NORM, PREFIX, SUFFIX, SHAPE.
    rows (List[int]): the rows of each attribute's table, same length as `attrs`.
    include_static_vectors (bool): also use the vocab's static vectors (mapped to `width`, not updated).
    bigram_rows (int): the rows of each of the two bigram tables.
    bigram_attr (Union[str, int]): the token attribute the bigrams are made of.
    segmenter (Optional[str]): "jieba", or None for no word features.
    word_rows (int): the rows of each of the two word tables.
    RETURNS (Model[List[Doc], List[Floats2d]]): one (n_tokens, width) array per doc.
    """
    if len(rows) != len(attrs):
        raise ValueError(f"Mismatched lengths: {len(rows)} vs {len(attrs)}")
    seed = 7
    embeddings = []
    for index in range(len(attrs)):
        seed += 1
        embeddings.append(HashEmbed(width, rows[index], column=index, seed=seed, dropout=0.0))
    lexical: Model[List[Doc], Ragged] = chain(
        FeatureExtractor(attrs),
        cast(Model[List[Ints2d], Ragged], list2ragged()),
        with_array(concatenate(*embeddings)),
    )
    parts = [lexical, _hashed_pair(char_bigram_features(bigram_attr), width, bigram_rows, seed + 1)]
    if segmenter is not None:
        parts.append(_hashed_pair(segmenter_word_features(segmenter), width, word_rows, seed + 3))
    if include_static_vectors:
        parts.append(StaticVectors(width, dropout=0.0))
    n_word_tables = 2 if segmenter is not None else 0
    concat_size = width * (len(embeddings) + 2 + n_word_tables + include_static_vectors)
    max_out: Model[Ragged, Ragged] = with_array(Maxout(width, concat_size, nP=3, dropout=0.0, normalize=True))
    model = chain(concatenate(*parts), _empty_safe(concat_size), max_out, ragged2list())
    model.name = "char_bigram_embed"
    return model

"""The benchmark's spaCy ner and spancat whose own layers learn at head_lr_scale times the rate."""

import numpy
import pytest
import spacy
from spacy.tokens import Doc, SpanGroup
from spacy.training import Example
from thinc.api import SGD

from spacy_egp.benchmark.scaled_heads import SCALED_NER_FACTORY, SCALED_SPANCAT_FACTORY

WORDS = ["Ann", "works", "for", "Acme", "in", "Rome", "."]


def _gold(nlp):
    doc = Doc(nlp.vocab, words=WORDS, ents=["B-PER", "O", "O", "B-ORG", "O", "B-LOC", "O"])
    doc.spans["sc"] = SpanGroup(doc, name="sc", spans=list(doc.ents))
    return Example(Doc(nlp.vocab, words=WORDS), doc)


def _one_step(factory, scale, head_ref):
    """The change of the head's `head_ref` layer and of the tok2vec in one SGD step, and the pipeline."""
    spacy.util.fix_random_seed(0)
    nlp = spacy.blank("en")
    pipe = nlp.add_pipe(factory, config={"head_lr_scale": scale})
    examples = [_gold(nlp)]
    nlp.initialize(lambda: examples)
    head = next(node for node in pipe.model.get_ref(head_ref).walk() if node.has_param("W"))
    embed = next(node for node in pipe.model.get_ref("tok2vec").walk() if node.has_param("E"))  # a hash table
    head_before, embed_before = head.get_param("W").copy(), embed.get_param("E").copy()
    pipe.update(examples, sgd=SGD(0.01))
    return head.get_param("W") - head_before, embed.get_param("E") - embed_before, nlp


# ner: the first step moves only the output layer of the transition model ("upper", which starts at 0);
# spancat: its scorer (LinearLogistic's linear layer)
@pytest.mark.parametrize("factory,head_ref", [(SCALED_NER_FACTORY, "upper"), (SCALED_SPANCAT_FACTORY, "scorer")])
def test_head_steps_head_lr_scale_times_as_far_the_tok2vec_as_far_and_loads_back(tmp_path, factory, head_ref):
    steps = {scale: _one_step(factory, scale, head_ref) for scale in (1.0, 10.0)}
    head_1, embed_1, _ = steps[1.0]
    head_10, embed_10, nlp = steps[10.0]
    assert abs(head_1).max() > 0
    numpy.testing.assert_allclose(head_10, 10 * head_1, rtol=1e-3, atol=1e-7)
    if factory == SCALED_SPANCAT_FACTORY:  # ner's tok2vec gets no gradient while "upper" is 0
        assert abs(embed_1).max() > 0
    numpy.testing.assert_allclose(embed_10, embed_1, rtol=1e-5, atol=1e-8)
    nlp.to_disk(tmp_path / "nlp")
    assert spacy.load(tmp_path / "nlp").get_pipe(factory).head_lr_scale == 10.0


@pytest.mark.parametrize("factory", [SCALED_NER_FACTORY, SCALED_SPANCAT_FACTORY])
@pytest.mark.parametrize("scale", [0, -1.0])
def test_a_scale_that_is_not_positive_is_refused(factory, scale):
    with pytest.raises(ValueError, match="head_lr_scale must be > 0"):
        spacy.blank("en").add_pipe(factory, config={"head_lr_scale": scale})

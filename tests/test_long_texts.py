"""A 2,078-character CMeEE document through the shipped transformer config (strided spans of 128, stride 96).

The Chinese encoder (../shared/models/me5s-zh-char) reads at most 128 pieces at a
time; spacy-transformers cuts longer docs into overlapping windows and averages
the windows' pieces back onto tokens. Two things must hold for a doc 16 windows
long: every token gets a real vector (no token falls between windows), and the
EGP head learns spans at the doc's end as well as at its start. The encoder is
frozen here (its vectors computed once, as for an annotating component), so the
test trains only the head and stays fast on a CPU.
"""

import json
import math
from pathlib import Path

import numpy
import pytest
import spacy
from spacy.tokens import Doc
from spacy.training import Example
from thinc.api import Adam, Config

REPO = Path(__file__).resolve().parent.parent
ME5S = REPO.parent / "shared" / "models" / "me5s-zh-char"
CONFIG = REPO / "configs" / "cmeee5k_trf_offline.cfg"
LONGEST_RECORD = 4043  # CMeEE_dev.json's longest text (2,078 characters); i % 5 == 3, so a cmeee5k train doc
END_CHARS = 400  # "near the end": spans starting in the last 400 characters (past 15 windows)


@pytest.fixture(scope="module")
def long_doc(shared_data: Path) -> Doc:
    record = json.loads((shared_data / "cmeee" / "CMeEE_dev.json").read_text(encoding="utf8"))[LONGEST_RECORD]
    nlp = spacy.blank("zh")
    doc = nlp.make_doc(record["text"])
    spans = [doc.char_span(e["start_idx"], e["end_idx"] + 1, label=e["type"]) for e in record["entities"]]
    assert all(span is not None for span in spans)  # one token per character: every entity aligns
    doc.spans["sc"] = sorted(set(spans), key=lambda s: (s.start, s.end, s.label_))
    assert len(doc) >= 2000
    return doc


@pytest.fixture(scope="module")
def nlp(long_doc: Doc):
    if not (ME5S / "config.json").exists():
        pytest.fail(f"The Chinese encoder is missing: expected it in {ME5S} (see README.md).")
    config = Config().from_disk(CONFIG, interpolate=False)
    config["paths"]["transformer"] = str(ME5S)
    # the head alone learns (encoder frozen), at a plain rate
    config["components"]["efficient_globalpointer"]["head_lr_scale"] = 1.0
    return spacy.util.load_model_from_config(config, auto_fill=True, validate=True)


def test_every_token_of_a_long_doc_gets_a_vector_through_the_strided_windows(nlp, long_doc: Doc) -> None:
    transformer = nlp.get_pipe("transformer")
    getter = transformer.model.attrs["get_spans"]
    windows = getter([long_doc])[0]
    covered = numpy.zeros(len(long_doc), dtype=bool)
    for window in windows:
        covered[window.start:window.end] = True
        assert len(window) <= 128
    assert covered.all() and len(windows) >= math.ceil((len(long_doc) - 128) / 96) + 1
    nlp.initialize(lambda: [Example(nlp.make_doc(long_doc.text), long_doc)])
    doc = transformer(nlp.make_doc(long_doc.text))
    tok2vec = nlp.get_pipe("efficient_globalpointer").model.get_ref("tok2vec")
    vectors = tok2vec.predict([doc])[0]
    assert vectors.shape == (len(long_doc), 384) and numpy.isfinite(vectors).all()
    # a token outside every window would be pooled from no pieces: an all-zero row
    assert (numpy.abs(vectors).sum(axis=1) > 0).all()


def test_spans_at_the_end_of_a_long_doc_are_learned(nlp, long_doc: Doc) -> None:
    predicted = nlp.make_doc(long_doc.text)
    examples = [Example(predicted, long_doc)]
    nlp.initialize(lambda: examples)
    nlp.get_pipe("transformer")(predicted)  # frozen encoder: the listener reads doc._.trf_data
    optimizer = Adam(0.005)
    for _ in range(60):
        nlp.update(examples, sgd=optimizer, exclude=["transformer"], drop=0.0)
    annotated = nlp(long_doc.text)
    found = {(s.start, s.end, s.label_) for s in annotated.spans["sc"]}
    near_end = len(long_doc.text) - END_CHARS
    end = [(s.start, s.end, s.label_) for s in long_doc.spans["sc"] if s.start_char >= near_end]
    start = [(s.start, s.end, s.label_) for s in long_doc.spans["sc"] if s.end_char <= END_CHARS]
    # this record's entities sit in its first 520 characters and its last 70 (16 in all)
    assert len(end) >= 2 and len(start) >= 8
    assert all(span in found for span in end), (sorted(found), end)
    assert sum(span in found for span in start) / len(start) >= 0.8

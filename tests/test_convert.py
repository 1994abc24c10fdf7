"""Tests of spacy_egp.convert on the real files of ../shared/data (and small made-up files).

The counts asserted here are those of ../shared/data/SPLITS.md and the SOURCE.md
files. Tests that need ../shared/data FAIL (never skip) when it is missing: set
SPACY_EGP_SHARED_DATA to its location if it is not beside the repository.
"""

import hashlib
import json
import os
import subprocess
import sys
import zipfile
from collections import Counter
from pathlib import Path

import pytest
import spacy
from spacy.tokens import DocBin, SpanGroup

from spacy_egp.data.convert import (
    ConversionError,
    DATASETS,
    convert,
    convert_dataset,
    iter_bio_sentences,
    nesting_counts,
    parse_select,
    read_text,
)

from spacy_egp.cli.convert import main
from spacy_egp.data import fetch
from spacy_egp.data.datasets import RELATION_DATASETS, file_sha256

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SPACY_EGP_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def data() -> Path:
    """../shared/data; a missing folder is a failure, not a skip."""
    if not (SHARED_DATA / "SPLITS.md").is_file():
        pytest.fail(
            f"The datasets are missing: {SHARED_DATA}/SPLITS.md not found. These tests read the real "
            f"files of ../shared/data (set SPACY_EGP_SHARED_DATA to their folder).",
            pytrace=False,
        )
    return SHARED_DATA


def spans_of(doc, key="sc"):
    return [(s.start, s.end, s.label_, s.text) for s in doc.spans[key]]


# ---------------------------------------------------------------- basics


def test_blank_zh_segments_by_character():
    nlp = spacy.blank("zh")
    assert nlp.config["nlp"]["tokenizer"]["segmenter"] == "char"
    assert [t.text for t in nlp.make_doc("浙商银行")] == ["浙", "商", "银", "行"]


@pytest.mark.parametrize(
    "expression,kept",
    [
        ("i % 5 in 2,3,4", [2, 3, 4, 7, 8, 9]),
        ("i % 5 in {2, 3, 4}", [2, 3, 4, 7, 8, 9]),
        ("mod 5 in 2,3,4", [2, 3, 4, 7, 8, 9]),
        ("i % 5 == 1", [1, 6]),
        ("i % 5 not in 0,1", [2, 3, 4, 7, 8, 9]),
        ("i % 10 != 0", [1, 2, 3, 4, 5, 6, 7, 8, 9]),
        ("i % 10 == 0", [0]),
        (None, list(range(10))),
        ("all", list(range(10))),
    ],
)
def test_parse_select(expression, kept):
    selection = parse_select(expression)
    assert [i for i in range(10) if selection(i)] == kept


@pytest.mark.parametrize("expression", ["i % 5", "i % 0 == 0", "i % 5 == 7", "i % 5 == 1,2", "first 10"])
def test_parse_select_rejects(expression):
    with pytest.raises(ValueError):
        parse_select(expression)


def test_nesting_counts():
    # (0,4) holds (0,2) and (1,3); (1,3) crosses (0,2); (5,6) alone.
    assert nesting_counts([(0, 4), (0, 2), (1, 3), (5, 6)]) == (2, 2, 1)
    assert nesting_counts([(0, 1), (0, 1)]) == (0, 0, 0)


# ---------------------------------------------------------------- CLUENER


def test_cluener_dev(data):
    docs, stats = convert("cluener", str(data / "cluener/dev.json"), lang="zh")
    assert stats.docs == len(docs) == 1343
    assert stats.spans == 3072 and stats.misaligned == 0
    assert stats.labels == Counter(
        name=465, company=378, game=295, organization=367, movie=151,
        address=373, position=433, government=247, scene=209, book=154,
    )
    assert stats.nested_pairs == 0
    # every doc carries the key, even without spans (the scorer needs it)
    assert all("sc" in doc.spans for doc in docs)
    # one token per character
    assert all(len(doc) == len(doc.text.replace(" ", "")) for doc in docs[:200])


def test_cluener_train(data):
    docs, stats = convert("cluener", str(data / "cluener/train.json"), lang="zh")
    assert stats.docs == 10748
    assert stats.spans == 23972 and stats.misaligned == 0
    assert stats.labels["name"] == 3756 and stats.labels["book"] == 1139
    assert stats.nested_pairs == 2
    assert stats.records_read == 10748


# ---------------------------------------------------------------- CMeEE


def test_cmeee_all_dev_records(data):
    docs, stats = convert("cmeee", str(data / "cmeee/CMeEE_dev.json"), lang="zh")
    assert stats.docs == 5000
    assert stats.spans == 20300 and stats.misaligned == 0 and stats.duplicates == 0
    assert stats.labels == Counter(
        dis=4935, sym=4130, pro=2057, equ=238, dru=1440, ite=923, bod=5883, dep=110, mic=584
    )
    assert stats.spans_inside == 1207 and stats.docs_with_nesting == 511
    assert stats.crossing_pairs == 0 and stats.same_boundaries == 16
    # The nested example of cmeee/SOURCE.md is kept whole.
    doc = next(d for d in docs if d.text == "因而儿童肺部病变较轻，肺内炎性病变吸收较快。")
    assert isinstance(doc.spans["sc"], SpanGroup)
    assert spans_of(doc) == [
        (4, 6, "bod", "肺部"),
        (4, 8, "sym", "肺部病变"),
        (11, 12, "bod", "肺"),
        (11, 17, "sym", "肺内炎性病变"),
    ]


def test_cmeee5k_splits(data, tmp_path):
    results = convert_dataset("cmeee5k", str(data), str(tmp_path), write=False)
    counts = {name: stats.docs for name, (_, stats) in results.items()}
    assert counts == {"train": 3000, "dev": 1000, "test": 1000}
    assert sum(stats.spans for _, stats in results.values()) == 20300
    # record i goes to test (i % 5 == 0), dev (== 1) or train (2, 3, 4): the first records
    records = json.loads(read_text(str(data / "cmeee/CMeEE_dev.json")))
    assert results["test"][0][0].text == records[0]["text"] and results["test"][0][1].text == records[5]["text"]
    assert results["dev"][0][0].text == records[1]["text"]
    assert [d.text for d in results["train"][0][:4]] == [records[i]["text"] for i in (2, 3, 4, 7)]
    assert sum(s.spans_inside for _, s in results.values()) == 1207


# ---------------------------------------------------------------- GENIA


def test_genia_dev_and_splits(data, tmp_path):
    docs, stats = convert("spans-jsonl", str(data / "genia/dev.jsonlines"), lang="en")
    assert stats.docs == 1765 and stats.tokens == 45495
    assert stats.spans == 4714
    assert stats.labels == Counter(DNA=1161, RNA=139, protein=2466, cell_line=372, cell_type=576)
    assert stats.spans_inside == 443 and stats.docs_with_nesting == 342 and stats.same_boundaries == 4
    # built from the given tokens, not re-tokenized; the nested example of genia/SOURCE.md
    first = json.loads(read_text(str(data / "genia/dev.jsonlines")).splitlines()[0])
    assert [t.text for t in docs[0]] == first["tokens"]
    doc = next(d for d in docs if d.text.startswith("SCL and related hemopoietic"))
    assert [t.text for t in doc][4] == "helix-loop-helix"
    assert spans_of(doc) == [
        (0, 1, "protein", "SCL"),
        (3, 7, "protein", "hemopoietic helix-loop-helix transcription factors"),
        (4, 5, "protein", "helix-loop-helix"),
        (5, 7, "protein", "transcription factors"),
    ]
    results = convert_dataset("genia-small", str(data), str(tmp_path), write=False)
    assert {k: s.docs for k, (_, s) in results.items()} == {"train": 1588, "dev": 177, "test": 1732}
    assert results["train"][1].spans + results["dev"][1].spans == 4714
    assert results["test"][1].spans == 5119 and results["test"][1].spans_inside == 603


# ---------------------------------------------------------------- CoNLL-2003 and MSRA (bio)


def test_conll2003_testa(data):
    docs, stats = convert("bio", str(data / "conll2003/eng.testa"), lang="en", scheme="iob1")
    assert stats.docs == 3250 and stats.tokens == 51362  # -DOCSTART- lines are not sentences
    assert stats.labels == Counter(LOC=1837, MISC=922, ORG=1341, PER=1842)
    assert stats.spans == 5942 and stats.nested_pairs == 0
    assert docs[0].text == "CRICKET - LEICESTERSHIRE TAKE OVER AT TOP AFTER INNINGS VICTORY ."
    assert spans_of(docs[0]) == [(2, 3, "ORG", "LEICESTERSHIRE")]


def test_msra_test_split_from_zip(data):
    docs, stats = convert("bio", f"{data}/msra/peopledaily.zip:dev.txt", lang="zh")
    assert stats.docs == 4631 and stats.tokens == 172601
    assert stats.labels == Counter(LOC=2877, ORG=1331, PER=1984)
    assert stats.spans == 6192
    assert stats.bio.irregular == 11  # I- tags starting a span, decoded as starts (conlleval)
    assert docs[0].text.startswith("中共中央致中国致公党十一大的贺词")
    assert spans_of(docs[0])[:2] == [(0, 4, "ORG", "中共中央"), (5, 13, "ORG", "中国致公党十一大")]


def test_msra_train_dev_record_counts(data):
    text = read_text(f"{data}/msra/peopledaily.zip:train.txt")
    n = sum(1 for _ in iter_bio_sentences(text, "train.txt"))
    assert n == 50658
    assert sum(1 for i in range(n) if parse_select("i % 10 != 0")(i)) == 45592
    docs, stats = convert("bio", f"{data}/msra/peopledaily.zip:train.txt", lang="zh",
                          select="i % 10 == 0", limit=50, text=text)
    assert stats.docs == 50 and stats.records_read == 491  # records 0, 10, ..., 490


def test_iob1_and_bio_decoding(tmp_path):
    path = tmp_path / "tiny.txt"
    path.write_text(
        "-DOCSTART- -X- O O\n\n"
        "EU NNP I-NP I-ORG\nrejects VBZ I-VP O\nGerman JJ I-NP I-MISC\nBritish JJ I-NP B-MISC\n"
        "lamb NN I-NP O\n\n"
        "Peter NNP I-NP I-PER\nBlackburn NNP I-NP I-PER\n",
        encoding="utf-8",
    )
    docs, stats = convert("bio", str(path), lang="en", scheme="iob1")
    assert [spans_of(d) for d in docs] == [
        [(0, 1, "ORG", "EU"), (2, 3, "MISC", "German"), (3, 4, "MISC", "British")],
        [(0, 2, "PER", "Peter Blackburn")],
    ]
    assert stats.bio.irregular == 0
    _, stats = convert("bio", str(path), lang="en", scheme="bio")
    assert stats.bio.irregular == 3  # EU, German, Peter: I- tags that start spans
    # Chinese tokens are joined without spaces
    zh = tmp_path / "zh.txt"
    zh.write_text("中 B-ORG\n共 I-ORG\n致 O\n\n", encoding="utf-8")
    docs, _ = convert("bio", str(zh), lang="zh")
    assert docs[0].text == "中共致" and spans_of(docs[0]) == [(0, 2, "ORG", "中共")]


# ---------------------------------------------------------------- CLI, DocBin, errors


def test_cli_writes_docbin_with_nested_spans(tmp_path, capsys):
    src = tmp_path / "cmeee.json"
    src.write_text(json.dumps([
        {"text": "因而儿童肺部病变较轻，", "entities": [
            {"start_idx": 4, "end_idx": 5, "type": "bod", "entity": "肺部"},
            {"start_idx": 4, "end_idx": 7, "type": "sym", "entity": "肺部病变"}]},
        {"text": "无实体。", "entities": []},
    ], ensure_ascii=False, indent=2), encoding="utf-8")
    out = tmp_path / "sub" / "out.spacy"
    assert main(["cmeee", str(src), str(out), "--lang", "zh", "--spans-key", "gold"]) == 0
    report = capsys.readouterr().out
    assert "2 docs" in report and "nested pairs (a span inside another): 1" in report
    docs = list(DocBin().from_disk(out).get_docs(spacy.blank("zh").vocab))
    assert spans_of(docs[0], "gold") == [(4, 6, "bod", "肺部"), (4, 8, "sym", "肺部病变")]
    assert "gold" in docs[1].spans and len(docs[1].spans["gold"]) == 0


def test_cli_subprocess_zip_member_and_limit(data, tmp_path):
    out = tmp_path / "msra.spacy"
    proc = subprocess.run(
        [sys.executable, "-m", "spacy_egp.convert", "bio", f"{data}/msra/peopledaily.zip:dev.txt",
         str(out), "--lang", "zh", "--limit", "20"],
        capture_output=True, text=True, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "20 docs" in proc.stdout and "misaligned spans: 0" in proc.stdout
    assert len(DocBin().from_disk(out)) == 20
    bad = subprocess.run(
        [sys.executable, "-m", "spacy_egp.convert", "bio", f"{data}/msra/peopledaily.zip:nope.txt",
         str(out), "--lang", "zh"],
        capture_output=True, text=True, check=False,
    )
    assert bad.returncode == 1 and "no member 'nope.txt'" in bad.stderr and "Traceback" not in bad.stderr


def test_misaligned_spans_are_counted_and_shown(tmp_path, capsys):
    src = tmp_path / "en.json"
    src.write_text(json.dumps({"text": "Visit New York today", "label": {
        "loc": {"New York": [[6, 13]], "ew Yor": [[7, 12]]}}}) + "\n", encoding="utf-8")
    out = tmp_path / "en.spacy"
    assert main(["cluener", str(src), str(out), "--lang", "en"]) == 0
    report = capsys.readouterr().out
    assert "misaligned spans: 1" in report and "'ew Yor'" in report
    doc = next(DocBin().from_disk(out).get_docs(spacy.blank("en").vocab))
    assert spans_of(doc) == [(1, 3, "loc", "New York")]


@pytest.mark.parametrize(
    "fmt,content,expected",
    [
        ("cluener", '{"text": "ab", "label": {}}\n{"text": "ab", "label": {}}\n{"text": "ab" "label"}\n',
         ":3 (record 2): invalid JSON"),
        ("cluener", '{"text": "abc", "label": {"x": {"bc": [[1, 2]]}}}\n{"text": "abc", "label": {"x": {"ab": [[0, 2]]}}}\n',
         ":2 (record 1): 'x' span [0, 2] covers 'abc', not its surface 'ab' (are the ends inclusive?)"),
        ("cmeee", '[\n  {"text": "abc", "entities": []},\n  {"text": "abc", "entities": [{"start_idx": 0, "type": "x"}]}\n]',
         ":3 (record 1): entity 0: missing end_idx"),
        ("cmeee", '[\n  {"text": "abc", "entities": []}\n  {"text": "x"}\n]', "expected ',' or ']'"),
        ("cmeee", '{"text": "abc"}', "expected a JSON array"),
        ("spans-jsonl", '{"tokens": ["a", "b"], "entity_mentions": [{"start": 1, "end": 3, "entity_type": "X"}]}\n',
         ":1 (record 0): mention 0: token span [1, 3) (end exclusive) is empty or outside the 2 tokens"),
        ("bio", "a O\nb B-X\n\nc\n", ":4 (sentence 1): expected 'TOKEN ... TAG'"),
        ("bio", "a O\nb E-X\n", ":2 (sentence 0): tag 'E-X' is not O, B-TYPE or I-TYPE"),
    ],
)
def test_malformed_records_exit_1_with_location(tmp_path, capsys, fmt, content, expected):
    src = tmp_path / "bad.txt"
    src.write_text(content, encoding="utf-8")
    assert main([fmt, str(src), str(tmp_path / "out.spacy"), "--lang", "en"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and expected in err, err
    assert not (tmp_path / "out.spacy").exists()


def test_malformed_record_cli_prints_no_traceback(tmp_path):
    src = tmp_path / "bad.jsonl"
    src.write_text('{"text": "ab", "label": {}}\nnot json\n', encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "spacy_egp.convert", "cluener", str(src), str(tmp_path / "o.spacy"), "--lang", "zh"],
        capture_output=True, text=True, check=False,
    )
    assert proc.returncode == 1
    assert f"{src}:2 (record 1): invalid JSON" in proc.stderr and "Traceback" not in proc.stderr


def test_dataset_presets(data, tmp_path, capsys):
    assert set(DATASETS) == {"cluener", "cmeee5k", "genia_small", "msra", "conll2003"}
    with pytest.raises(ConversionError, match="--vars.lang en"):
        convert_dataset("genia-small", str(data), str(tmp_path), lang="zh")
    assert main(["dataset", "conll2003", str(data), str(tmp_path / "c"), "--limit", "30", "--lang", "en"]) == 0
    assert {p.name for p in (tmp_path / "c").iterdir()} == {"train.spacy", "dev.spacy", "test.spacy"}
    assert len(DocBin().from_disk(tmp_path / "c" / "dev.spacy")) == 30
    assert main(["dataset", "cluener", str(tmp_path / "nowhere"), str(tmp_path / "d")]) == 1
    assert "run the project's fetch command first" in capsys.readouterr().err


def test_one_dataset_table_for_fetch_and_convert():
    assert fetch.DATASETS is DATASETS
    for dataset in DATASETS.values():
        # fetch checks exactly the raw files the splits read
        assert {split.file.split(":")[0] for split in dataset.splits.values()} == set(dataset.files)
        assert set(dataset.splits) == {"train", "dev", "test"}


def test_dataset_digests_are_the_sha256_of_the_files(data):
    """Each recorded digest is hashlib's sha256 of the raw file on disk, and the one its SOURCE.md gives."""
    for dataset in [*DATASETS.values(), *RELATION_DATASETS.values()]:
        source = (data / dataset.folder / "SOURCE.md").read_text(encoding="utf8")
        for name, digest in dataset.files.items():
            assert digest == hashlib.sha256((data / dataset.folder / name).read_bytes()).hexdigest(), name
            assert digest in source, f"{dataset.name}/{name}: digest not in SOURCE.md"


def test_file_sha256_reads_in_blocks(tmp_path):
    data = os.urandom((1 << 20) + 123)  # more than one block
    (tmp_path / "f").write_bytes(data)
    assert file_sha256(tmp_path / "f") == file_sha256(str(tmp_path / "f")) == hashlib.sha256(data).hexdigest()


def test_zip_member_reading(tmp_path):
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("x.txt", "中 B-LOC\n\n")
    assert read_text(f"{archive}:x.txt") == "中 B-LOC\n\n"
    with pytest.raises(ConversionError, match="no member"):
        read_text(f"{archive}:y.txt")

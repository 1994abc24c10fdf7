"""End-to-end smoke test of project.yml: .ci/project_smoke.sh on a small CLUENER slice.

Runs the `all` workflow (fetch -> convert -> train -> evaluate -> package) and
`visualize` in a temporary copy of the project (nothing is written to the
repository), checks that a second run skips the finished steps, installs the
built wheel into a fresh virtual environment (torch, this repository's package,
the wheel) and loads it with spacy.load. Needs ../shared/data (or
SPACY_EGP_SHARED_DATA) and PyPI or a local wheel source for the fresh
environment; takes one to a few minutes.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import spacy
import srsly
from spacy.tokens import Doc, DocBin, Span
from spacy.training import Example

REPO = Path(__file__).resolve().parents[1]


OUTPUT_FOLDERS = ("assets", "corpus", "training", "metrics", "packages", "visualize")


def _listing():
    return {f: sorted(p.name for p in (REPO / f).iterdir()) if (REPO / f).is_dir() else None for f in OUTPUT_FOLDERS}


def test_project_workflow_smoke(tmp_path):
    before = _listing()
    env = dict(os.environ, PYTHON=sys.executable, TMPDIR=str(tmp_path))
    env.pop("KEEP_SMOKE_DIR", None)
    proc = subprocess.run(
        ["bash", str(REPO / ".ci" / "project_smoke.sh")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=1500, check=False,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"project smoke run failed (exit {proc.returncode}):\n{output[-6000:]}"
    assert "SMOKE OK" in proc.stdout
    assert "Skipping 'train': nothing changed" in proc.stdout
    assert "teacher unlabelled.spacy: 100 docs" in proc.stdout  # the distillation workflow ran
    assert "SPAN F1 =" in proc.stdout and "micro avg" in proc.stdout
    assert _listing() == before, "the smoke run wrote into the repository's project folders"


def test_fetch_copies_from_shared_data_and_checks_sha256(tmp_path):
    shared = Path(os.environ.get("SPACY_EGP_SHARED_DATA", REPO.parent / "shared" / "data"))
    assert (shared / "SPLITS.md").is_file(), f"the datasets are missing: {shared}"
    cmd = [sys.executable, "-m", "spacy_egp.fetch", "cmeee5k", "--shared-data", str(shared),
           "--assets", str(tmp_path / "assets")]
    first = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert first.returncode == 0, first.stderr
    assert "copied from" in first.stdout and "sha256 ok" in first.stdout
    assert (tmp_path / "assets" / "cmeee5k" / "CMeEE_dev.json").stat().st_size == 3448443
    again = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert again.returncode == 0 and "already there" in again.stdout
    # no shared data, files already in place: nothing to download
    offline = subprocess.run(cmd[:5] + [str(tmp_path / "nowhere")] + cmd[6:], capture_output=True, text=True,
                             check=False)
    assert offline.returncode == 0 and "nothing to download" in offline.stdout


def _tiny_project(folder: Path) -> Path:
    """A copy of project.yml with an initialized (untrained) pipeline and a corpus for the dataset 'tiny'."""
    nlp = spacy.blank("en")
    nlp.add_pipe("efficient_globalpointer")
    docs = []
    for words, spans in [("Anna met Bob in Paris".split(), [(0, 1, "PER"), (2, 3, "PER"), (4, 5, "LOC")]),
                         ("The Bank of China".split(), [(1, 4, "ORG"), (3, 4, "LOC")])]:
        doc = Doc(nlp.vocab, words=words)
        doc.spans["sc"] = [Span(doc, start, end, label) for start, end, label in spans]
        docs.append(doc)
    nlp.initialize(lambda: [Example(nlp.make_doc(doc.text), doc) for doc in docs])
    project = folder / "project"
    (project / "training" / "tiny").mkdir(parents=True)
    (project / "corpus" / "tiny").mkdir(parents=True)
    shutil.copy(REPO / "project.yml", project)
    nlp.to_disk(project / "training" / "tiny" / "model-best")
    nlp.to_disk(project / "training" / "tiny" / "model-tuned")
    for split in ("dev", "test"):  # test = dev, as for CLUENER
        DocBin(docs=docs).to_disk(project / "corpus" / "tiny" / f"{split}.spacy")
    return project


def test_evaluate_steps_use_spacy_evaluate_and_feed_tune_compare(tmp_path):
    """evaluate, evaluate-test and evaluate-tuned of project.yml: spaCy's metrics, the table, tune compare."""
    project = _tiny_project(tmp_path)
    outputs = {}
    for step in ("evaluate", "evaluate-test", "evaluate-tuned"):
        proc = subprocess.run(
            [sys.executable, "-m", "weasel", "run", step, str(project), "--vars.dataset", "tiny",
             "--vars.lang", "en"],
            capture_output=True, text=True, check=False, timeout=600,
        )
        assert proc.returncode == 0, f"{step} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        outputs[step] = proc.stdout
    assert "python -m spacy evaluate" in outputs["evaluate"]
    # spacy_egp.evaluate's table: one row per label with its gold spans (LOC 2, ORG 1, PER 2), the micro average
    rows = {line.split()[0]: line.split() for line in outputs["evaluate"].splitlines()
            if line.split() and line.split()[0] in ("LOC", "ORG", "PER", "micro")}
    assert {label: row[-1] for label, row in rows.items()} == {"LOC": "2", "ORG": "1", "PER": "2", "micro": "5"}
    assert "SPAN F1 =" in outputs["evaluate"]
    metrics = srsly.read_json(project / "metrics" / "tiny.json")
    assert {"spans_sc_p", "spans_sc_r", "spans_sc_f", "spans_sc_per_type", "speed"} <= set(metrics)
    f1 = f"{metrics['spans_sc_f'] * 100:.2f}"
    assert f"SPAN F1 = {f1}" in outputs["evaluate"]
    # the same model on the same data before and after "tuning": tune compare reads both metrics files
    assert f"TEST F1 before tuning {f1}" in outputs["evaluate-tuned"]
    assert f"TEST F1 after tuning  {f1}" in outputs["evaluate-tuned"]
    assert "WARNING: the tuning data" in outputs["evaluate-tuned"]

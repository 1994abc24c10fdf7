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
import subprocess
import sys
from pathlib import Path

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

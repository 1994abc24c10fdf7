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

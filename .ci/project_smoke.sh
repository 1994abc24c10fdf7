#!/usr/bin/env bash
# End-to-end smoke run of project.yml on a small slice, outside the repository:
#   fetch -> convert -> train -> evaluate -> package (workflow `all`) and visualize, in a temporary
#   copy of the project; distillation with the trained model as teacher (teach-unlabelled on 100
#   texts the training slice lacks, then workflow `distill`: teach -> train-student ->
#   evaluate-student); then the built wheel is installed into a fresh virtual environment
#   (torch, then this repository's package without test extras, then the wheel) and loaded.
#
#   bash .ci/project_smoke.sh
#
# Environment: PYTHON (the interpreter with spacy-egp installed, default: python),
# SPACY_EGP_SHARED_DATA (default: ../shared/data beside the repository), SMOKE_DATASET (cluener),
# SMOKE_LANG (zh), SMOKE_MAX_DOCS (200), SMOKE_MAX_STEPS (30), KEEP_SMOKE_DIR=1 keeps the temp folder.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python}"
SHARED_DATA="${SPACY_EGP_SHARED_DATA:-$REPO/../shared/data}"
DATASET="${SMOKE_DATASET:-cluener}"
LANG_CODE="${SMOKE_LANG:-zh}"
MAX_DOCS="${SMOKE_MAX_DOCS:-200}"
MAX_STEPS="${SMOKE_MAX_STEPS:-30}"
TORCH_VERSION="${SMOKE_TORCH_VERSION:-2.13.0}"

if [ ! -d "$SHARED_DATA" ]; then
  echo "error: no shared data at $SHARED_DATA (set SPACY_EGP_SHARED_DATA)" >&2
  exit 1
fi
SHARED_DATA="$(cd "$SHARED_DATA" && pwd)"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/egp-smoke.XXXXXX")"
cleanup() {
  if [ -n "${KEEP_SMOKE_DIR:-}" ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
step() { echo; echo "=== smoke: $* ($(date +%T))"; }
# pip, quietly (this machine's pip configuration warns about absent local index folders)
quiet_pip() { "$@" 2>&1 | { grep -v "^WARNING: Location '" || true; }; }

step "copy the project files to $WORK/project"
mkdir -p "$WORK/project/assets"
cp "$REPO/project.yml" "$WORK/project/"
cp -r "$REPO/configs" "$WORK/project/"
cp "$REPO/assets/README.md" "$WORK/project/assets/"

# `spacy package --build wheel` needs `build`: the `project` extra that .ci/setup installs, as for a
# user following README. Nothing is installed here into the calling environment.
"$PYTHON" -c 'import build' || { echo "error: the package 'build' is missing: run bash .ci/setup" >&2; exit 1; }

VARS=(--vars.dataset "$DATASET" --vars.lang "$LANG_CODE" --vars.max_docs "$MAX_DOCS"
      --vars.max_steps "$MAX_STEPS" --vars.eval_frequency 10 --vars.shared_data "$SHARED_DATA"
      --vars.visualize_docs 3)
step "workflow all: ${VARS[*]}"
"$PYTHON" -m weasel run all "$WORK/project" "${VARS[@]}"
step "visualize"
"$PYTHON" -m weasel run visualize "$WORK/project" "${VARS[@]}"
step "re-run of all skips the finished steps"
"$PYTHON" -m weasel run all "$WORK/project" "${VARS[@]}" | tee "$WORK/rerun.log"
grep -q "Skipping 'train': nothing changed" "$WORK/rerun.log"

P="$WORK/project"
test -s "$P/corpus/$DATASET/train.spacy"
test -s "$P/metrics/$DATASET.json"
test -s "$P/visualize/$DATASET.html"
"$PYTHON" -c "import json, sys; m = json.load(open(sys.argv[1])); print('dev spans_sc_f', m['spans_sc_f'])" \
  "$P/metrics/$DATASET.json"
WHEEL="$(ls "$P"/packages/"${LANG_CODE}_egp_${DATASET}"-*/dist/*.whl)"
echo "wheel: $WHEEL"

step "distillation: the smoke model teaches the train slice and 100 unlabelled texts; a student trains on both"
# Unlabelled text: the records after the slice (JSON lines with a "text" field, CLUENER's format); other
# datasets: the test split as a DocBin, its gold dropped by `teach --unlabelled`.
if [ "$DATASET" = cluener ]; then
  UNLABELLED="assets/unlabelled.jsonl"
  sed -n "$((MAX_DOCS + 1)),$((MAX_DOCS + 100))p" "$P/assets/cluener/train.json" > "$P/$UNLABELLED"
else
  UNLABELLED="corpus/$DATASET/test.spacy"
fi
"$PYTHON" -m weasel run teach-unlabelled "$P" "${VARS[@]}" --vars.unlabelled "$UNLABELLED"
"$PYTHON" -m weasel run distill "$P" "${VARS[@]}"
test -s "$P/metrics/$DATASET-student.json"
"$PYTHON" - "$P/corpus/$DATASET/teacher" <<'PY'
import sys
from pathlib import Path
import spacy
from spacy.tokens import DocBin
vocab = spacy.blank("xx").vocab
for name, labelled in (("train.spacy", True), ("unlabelled.spacy", False)):
    path = Path(sys.argv[1]) / name
    docs = list(DocBin().from_disk(path).get_docs(vocab))
    groups = [doc.spans["egp_teacher"] for doc in docs]
    assert all(len(g.attrs["scores"]) == len(g) and min(g.attrs["scores"], default=1) >= 0.05 for g in groups)
    assert all(("sc" in doc.spans) == labelled for doc in docs), name
    cells = sum(map(len, groups))
    print(f"teacher {name}: {len(docs)} docs, {cells / len(docs):.1f} cells and {path.stat().st_size / len(docs):.0f} bytes per doc")
PY

step "fresh virtual environment: torch==$TORCH_VERSION, the project's package, the wheel"
# A throwaway venv under $WORK (mktemp, removed by the EXIT trap) that tests the built wheel as a user installs it;
# .ci/setup and README's .venv are untouched. Created from the base interpreter (a venv of a venv is not nested), without system site-packages.
"$PYTHON" -m venv "$WORK/venv"
VPY="$WORK/venv/bin/python"
quiet_pip "$VPY" -m pip install --quiet "torch==$TORCH_VERSION"
# Install from a copy of the sources so that no build files land in the repository.
mkdir -p "$WORK/src"
cp -r "$REPO/spacy_egp" "$REPO/setup.cfg" "$REPO/pyproject.toml" "$WORK/src/"
for f in README.md LICENSE; do [ -f "$REPO/$f" ] && cp "$REPO/$f" "$WORK/src/"; done
find "$WORK/src" -name __pycache__ -prune -exec rm -rf {} +
quiet_pip "$VPY" -m pip install --quiet "$WORK/src"
quiet_pip "$VPY" -m pip install --quiet "$WHEEL"
step "load the installed package"
cd "$WORK"
"$VPY" - "${LANG_CODE}_egp_${DATASET}" <<'PY'
import sys
import spacy
name = sys.argv[1]
nlp = spacy.load(name)
text = "浙商银行企业信贷部叶老桂博士则从另一个角度对五道门槛进行了解读。" if nlp.lang == "zh" else "IL-2 gene expression requires NF-kappa B."
doc = nlp(text)
print(name, nlp.pipe_names, "->", doc.spans["sc"], [(s.label_, s.text) for s in doc.spans["sc"]][:10])
assert "sc" in doc.spans
assert spacy.util.get_package_path(name).is_dir()
print("SMOKE OK")
PY

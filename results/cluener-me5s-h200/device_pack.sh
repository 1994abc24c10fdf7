#!/usr/bin/env bash
# Packs what device_run.sh needs into .gpu/ (ignored by git; `carry` it), under the device tool's
# 64 MiB limit: the GPU machine has Python 3.12 with torch but no spaCy and no network, and the
# spaCy wheels alone are 73 MB. So: cp312 wheels of this venv's versions, unpacked, their shared
# libraries stripped (261 -> 133 MB), one tar.xz (15 MB); the package's dist-info (entry points);
# me5s-zh-char's weights xz-compressed (55 -> 24 MB: they were 4-bit quantised); the CLUENER corpus.
# Run from the repository root after `bash .ci/setup` and `spacy project run convert` (corpus/cluener).
set -euo pipefail
ROOT=$PWD; WORK=$(mktemp -d); trap 'rm -rf "$WORK"' EXIT
version() { .venv/bin/python -c "import importlib.metadata as m; print(m.version('$1'))"; }
SPECS=""
for name in spacy thinc blis cymem preshed murmurhash srsly wasabi catalogue confection weasel cloudpathlib \
    smart_open pydantic pydantic_core annotated-types typing-inspection spacy-legacy spacy-loggers \
    spacy-transformers spacy-alignments transformers tokenizers huggingface_hub typer; do
  SPECS="$SPECS $name==$(version $name)"
done
(cd "$WORK" && python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d wheels $SPECS)
(cd "$WORK" && python3 -m pip wheel -q --no-deps "$ROOT" -w own)
mkdir -p "$WORK/site" && for w in "$WORK"/wheels/*.whl; do unzip -q -o "$w" -d "$WORK/site"; done
find "$WORK/site" -name "*.so" -exec strip --strip-unneeded {} \;
rm -rf "$WORK/site/spacy/tests" "$WORK/site/thinc/tests"
mkdir -p .gpu/me5s .gpu/corpus
tar -C "$WORK/site" -cf - . | xz -9 -T2 > .gpu/site.tar.xz
rm -rf .gpu/spacy_egp-*.dist-info && unzip -q -o "$WORK"/own/*.whl '*.dist-info/*' -d .gpu
cp ../shared/models/me5s-zh-char/*.json .gpu/me5s/
xz -9 -T2 -c ../shared/models/me5s-zh-char/model.safetensors > .gpu/model.safetensors.xz
cp -r corpus/cluener .gpu/corpus/
cp results/cluener-me5s-h200/device_run.sh .gpu/run.sh
du -sh .gpu

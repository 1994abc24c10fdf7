#!/usr/bin/env bash
# One device call (issue 18 part 6): EGP, GP, spancat and ner on CLUENER with me5s-zh-char, 1,344 steps
# each, and EGP on a 4-epoch schedule in fp32 and in mixed precision, all six at once on one GPU.
# Packed by device_pack.sh; run there as `bash .gpu/run.sh 0 1344 $OUT 430`, carry [".gpu"].
# Usage: [RUNS="egp spancat"] bash .gpu/run.sh GPU STEPS OUTDIR LIMIT_S (GPU -1 runs it here, on CPU, for a dry run)
GPU=${1:-0}; STEPS=${2:-1344}; OUT_DIR=${3:-$OUT}; LIMIT=${4:-500}
LONG=$((STEPS * 2)); EVAL=$((STEPS / 4))
export PYTHONUNBUFFERED=1
ROOT=$PWD
if [ "$GPU" -ge 0 ]; then
  mkdir -p /tmp/site && tar -xJf .gpu/site.tar.xz -C /tmp/site && cp -r .gpu/spacy_egp-*.dist-info /tmp/site/ || exit 1
  export PYTHONPATH=/tmp/site:$ROOT
  mkdir -p ../shared/models/me5s-zh-char && cp .gpu/me5s/*.json ../shared/models/me5s-zh-char/ \
    && xz -dc .gpu/model.safetensors.xz > ../shared/models/me5s-zh-char/model.safetensors || exit 1
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  PY=python3
else
  PY=${PY:-.venv/bin/python}
fi
$PY -c "import spacy, thinc, torch, transformers; print(spacy.__version__, thinc.__version__, torch.__version__, transformers.__version__, torch.cuda.is_available())"
if [ "$GPU" -ge 0 ]; then $PY -c "import spacy; print('require_gpu', spacy.require_gpu($GPU))" || true; fi
$PY -c "import importlib.metadata as m, sys; f=[e.name for e in m.entry_points(group='spacy_factories')]; print(f); sys.exit('efficient_globalpointer' not in f)" || exit 1
W=/tmp/gpu-runs; rm -rf $W; mkdir -p $W
bench() {  # NAME STEPS PIPELINE [--set ...]
  local name=$1 steps=$2 pipe=$3; shift 3
  timeout -s INT $LIMIT $PY -m spacy_egp.benchmark compare cluener --tok2vec me5s \
    --template configs/cluener_trf_offline.cfg --corpus ${CORPUS:-.gpu/corpus/cluener} --max-steps $steps \
    --eval-frequency $EVAL --jobs 1 --pipelines $pipe --gpu-id $GPU --inference-gpu-id $GPU \
    --output $W/$name "$@" > $W/$name.console 2>&1
  echo "$name exit $?" >> $W/status.txt
}
# RUNS picks some of them (the 2026-11-30 call ran all six; spancat, the slowest, reached 672 steps in 430 s)
for run in ${RUNS:-egp gp spancat ner egp-long egp-long-mp}; do
  case $run in
    egp|gp|spancat|ner) bench $run $STEPS $run & ;;
    egp-long) bench egp-long $LONG egp & ;;
    egp-long-mp) bench egp-long-mp $LONG egp --set components.transformer.model.mixed_precision=true & ;;
    *) echo "unknown run $run" >&2; exit 2 ;;
  esac
done
wait
cat $W/status.txt
nvidia-smi --query-gpu=name,memory.used --format=csv 2>/dev/null
cd $W && tar -czf $OUT_DIR/runs.tar.gz --exclude='*/training' --exclude='*/corpus' . && ls -la $OUT_DIR
for f in $W/*.console; do echo "== $f"; tail -4 $f; done

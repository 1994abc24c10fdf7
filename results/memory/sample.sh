#!/bin/bash
# usage: run.sh NAME [env assignments...]
name=$1; shift
cd /work/main
env "$@" OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 .venv/bin/python -m spacy train ${CFG:-/work/run-c/results/cluener-me5s/configs/egp.cfg} --output /tmp/leak/out-$name --paths.train /tmp/leak/corpus/train.spacy --paths.dev /tmp/leak/corpus/dev.spacy --training.max_steps 300 --training.eval_frequency 100 --training.logger '{"@loggers":"spacy.ConsoleLogger.v1"}' > /tmp/leak/$name.log 2>&1 &
pid=$!
while kill -0 $pid 2>/dev/null; do echo "$(date +%s) $(ps -o rss= -p $pid)" >> /tmp/leak/$name.rss; sleep 5; done

"""RSS every 10 training steps of a config (`rss_per_step.py CONFIG STEPS [trace]`), run from a clone with corpus/cluener.

spaCy's update loop on the config's batches, no evaluation; `trace` adds tracemalloc's top growth between steps 20 and
STEPS (Python and numpy allocations only).
"""
import sys, os, gc, time, tracemalloc, resource
import resource
from spacy.util import load_config, resolve_dot_names
from spacy.training.initialize import init_nlp
from spacy.training.loop import create_train_batches, train_while_improving
from thinc.api import fix_random_seed
import spacy_egp  # registrations
cfg_path, steps = sys.argv[1], int(sys.argv[2])
trace = len(sys.argv) > 3
config = load_config(cfg_path, overrides={"paths.train": "corpus/cluener/train.spacy", "paths.dev": "corpus/cluener/dev.spacy", "training.max_steps": steps, "training.eval_frequency": 10**6, "training.logger": {"@loggers": "spacy.ConsoleLogger.v1", "progress_bar": False}}, interpolate=False)
nlp = init_nlp(config)
from spacy import registry
C = nlp.config.interpolate(); T = registry.resolve(C["training"], schema=None)
dot_names = [T["train_corpus"], T["dev_corpus"]]
train_corpus, dev_corpus = resolve_dot_names(C, dot_names)
optimizer = T["optimizer"]
batcher = T["batcher"]
def rss(): return int(open('/proc/self/statm').read().split()[1])*4096/2**20
if trace: tracemalloc.start(25)
snap0 = None
step = 0
t0 = time.time()
from spacy.training import Example
for epoch in range(10):
    for batch in batcher(train_corpus(nlp)):
        losses = {}
        nlp.update(batch, drop=0.1, sgd=optimizer, losses=losses)
        step += 1
        if step % 10 == 0:
            gc.collect()
            print(step, f"{time.time()-t0:.0f}s rss={rss():.0f}MB", {k: round(v,2) for k,v in losses.items()}, flush=True)
        if trace and step == 20:
            snap0 = tracemalloc.take_snapshot()
        if step >= steps: break
    if step >= steps: break
if trace:
    snap1 = tracemalloc.take_snapshot()
    for s in snap1.compare_to(snap0, "traceback")[:8]:
        print(s)
        for line in s.traceback.format()[-12:]: print("   ", line)

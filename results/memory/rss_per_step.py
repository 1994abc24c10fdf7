"""RSS every 10 training steps of a config: `python rss_per_step.py CONFIG STEPS [trace]`.

Run from a clone with corpus/cluener. spaCy's update loop on the config's own
batches and optimizer, without evaluations; `trace` adds tracemalloc's largest
growths between step 20 and STEPS (Python and numpy allocations only, not
torch's), to tell a leak of objects from a growing heap.
"""

import gc
import sys
import time
import tracemalloc

import spacy_egp  # noqa: F401  (registers the project's architectures and factories)
from spacy import registry
from spacy.training.initialize import init_nlp
from spacy.util import load_config, resolve_dot_names

OVERRIDES = {"paths.train": "corpus/cluener/train.spacy", "paths.dev": "corpus/cluener/dev.spacy",
             "training.logger": {"@loggers": "spacy.ConsoleLogger.v1", "progress_bar": False}}


def rss_mb() -> float:
    """This process's resident set size in MiB (Linux)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096 / 2**20


def main(config_path: str, steps: int, trace: bool) -> None:
    config = load_config(config_path, overrides=OVERRIDES, interpolate=False)
    nlp = init_nlp(config)
    resolved = nlp.config.interpolate()
    training = registry.resolve(resolved["training"], schema=None)
    train_corpus, = resolve_dot_names(resolved, [training["train_corpus"]])
    optimizer, batcher = training["optimizer"], training["batcher"]
    if trace:
        tracemalloc.start(25)
    baseline, step, started = None, 0, time.time()
    while step < steps:
        for batch in batcher(train_corpus(nlp)):
            losses: dict = {}
            nlp.update(batch, drop=training["dropout"], sgd=optimizer, losses=losses)
            step += 1
            if step % 10 == 0:
                gc.collect()
                rounded = {name: round(value, 2) for name, value in losses.items()}
                print(step, f"{time.time() - started:.0f}s rss={rss_mb():.0f}MB", rounded, flush=True)
            if trace and step == 20:
                baseline = tracemalloc.take_snapshot()
            if step >= steps:
                break
    if trace and baseline is not None:
        for growth in tracemalloc.take_snapshot().compare_to(baseline, "traceback")[:8]:
            print(growth)
            for line in growth.traceback.format()[-12:]:
                print("   ", line)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), len(sys.argv) > 3 and sys.argv[3] == "trace")

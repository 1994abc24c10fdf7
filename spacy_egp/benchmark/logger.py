"""A training logger that also records throughput, for the benchmark's table."""

import json
from pathlib import Path
from typing import IO, Any, Callable, Dict, List, Optional, Tuple

from spacy.language import Language
from spacy.util import registry

LogStep = Callable[[Optional[Dict[str, Any]]], None]


@registry.loggers("spacy_egp.ThroughputLogger.v1")
def make_throughput_logger(
    log_path: str,
) -> Callable[[Language, IO, IO], Tuple[LogStep, Callable[[], None]]]:
    """spaCy's console table, plus one JSON line per evaluation in `log_path`.

    Each line has the step, the words trained on so far, the seconds since
    training began (spaCy's own counters) and the dev scores, so that training
    words/s can be computed after the run.
    """
    console = registry.get("loggers", "spacy.ConsoleLogger.v3")(progress_bar=None)

    def setup(nlp: Language, stdout: IO, stderr: IO) -> Tuple[LogStep, Callable[[], None]]:
        log_step, finalize = console(nlp, stdout, stderr)
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        stream = open(log_path, "w", encoding="utf8")

        def step(info: Optional[Dict[str, Any]]) -> None:
            log_step(info)
            if info is not None:
                scores = {k: v for k, v in info["other_scores"].items() if isinstance(v, (int, float))}
                record = {"step": info["step"], "epoch": info["epoch"], "words": info["words"],
                          "seconds": info["seconds"], "score": info["score"], "scores": scores}
                stream.write(json.dumps(record) + "\n")
                stream.flush()

        def close() -> None:
            finalize()
            stream.close()

        return step, close

    return setup


def training_words_per_second(evaluations: List[Dict[str, Any]]) -> float:
    """Words per second from the first evaluation (step 0) to the last.

    The step-0 evaluation is left out: an untrained pipeline can predict a
    great many spans and its scoring says nothing about training speed. The
    later evaluations (every eval_frequency steps) are included.
    """
    first, last = evaluations[0], evaluations[-1]
    return (last["words"] - first["words"]) / max(last["seconds"] - first["seconds"], 1)

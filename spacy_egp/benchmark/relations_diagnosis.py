"""Where a relation pipeline's errors come from: python -m spacy_egp.benchmark relations-diagnosis OUTPUT

    python -m spacy_egp.benchmark relations-diagnosis results/conll04-minilm [--training DIR]

For every pipeline a `benchmark relations` run finished (OUTPUT/parts/NAME.json and
TRAINING/NAME/model-best, default OUTPUT/training), on the dataset's own tokens,
as that benchmark scores:

- the dev curve from OUTPUT/logs/NAME.jsonl: best and last evaluation (a best
  at the last one says the budget was short);
- test at the trained thresholds, recall split into the gold relations whose
  two arguments are predicted entities ("args found") and the share of those
  linked;
- the gold relations of dev and test beyond the pipeline's max_pair_distance,
  which no threshold can recover;
- each relation type's threshold tuned on dev with the exact search of
  `spacy egp tune` (for gplinker after its entity thresholds, as the command
  does), then applied to test.

The baseline's classifier has one threshold in its config; here it gets one
per type as gplinker does, applied to its candidate pairs' probabilities.
Writes OUTPUT/diagnosis.json, which `benchmark report` renders.
"""

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy
import spacy
from spacy.language import Language
from spacy.tokens import DocBin
from spacy.training import Example

from ..ml.util import probability_to_logit
from ..pipeline.gplinker import GPLinker, relation_key, relation_keys, relations_score
from ..pipeline.relations import RelationOffsets, relation_offsets
from ..pipeline.thresholds import (DEFAULT_FLOOR, Candidates, counts_at, relation_candidates, run_upstream,
                                   search_floor, tune_label, tune_thresholds)
from .evaluation import given_tokens
from .relations import PIPELINES, SPANS_KEY
from .relations_baseline import RelationClassifier, candidate_pairs

Counts = Dict[str, Tuple[int, int, int]]  # relation type -> (true positives, predicted, gold)


def given_token_examples(nlp: Language, path: Path) -> List[Example]:
    """The corpus's docs as examples whose predicted docs keep the dataset's tokens."""
    gold = list(DocBin().from_disk(path).get_docs(nlp.vocab))
    return [Example(given_tokens(doc, nlp.vocab), doc) for doc in gold]


def dev_curve(log: Path) -> Dict[str, Any]:
    """Best and last evaluation of a training log (spacy_egp's JSONL logger)."""
    evaluations = [json.loads(line) for line in log.read_text().splitlines()]
    best = max(evaluations, key=lambda e: e["score"])
    return {"dev_scores": [[e["step"], e["score"]] for e in evaluations], "dev_best_step": best["step"],
            "dev_best_score": best["score"], "dev_last_step": evaluations[-1]["step"],
            "dev_last_score": evaluations[-1]["score"]}


def relation_component(nlp: Language) -> Tuple[str, Any]:
    """The pipeline's gplinker or baseline relation classifier."""
    for name, pipe in nlp.pipeline:
        if isinstance(pipe, (GPLinker, RelationClassifier)):
            return name, pipe
    raise ValueError(f"no gplinker or relation classifier in the pipeline {nlp.pipe_names}: give a pipeline "
                     "that `python -m spacy_egp.benchmark relations` trained")


def beyond_distance(examples: Sequence[Example], max_distance: int, ends_too: bool) -> Tuple[int, int]:
    """(gold relations whose arguments lie more than max_distance tokens apart, all gold relations).

    Apart: the starts (the baseline's candidate rule), or starts and ends (gplinker's pair band).
    """
    beyond = total = 0
    for eg in examples:
        for record in relation_offsets(eg.reference):
            distance = abs(record.head_start - record.tail_start)
            if ends_too:
                distance = max(distance, abs(record.head_end - record.tail_end))
            beyond, total = beyond + (distance > max_distance), total + 1
    return beyond, total


def baseline_candidates(nlp: Language, name: str, examples: Sequence[Example], floor: float,
                        batch_size: int = 64) -> Dict[str, Candidates]:
    """Every relation type's candidate pairs of the baseline (logit, is gold), as relation_candidates does gplinker's."""
    pipe = nlp.get_pipe(name)
    scores: Dict[str, List[float]] = {label: [] for label in pipe.labels}
    is_gold: Dict[str, List[bool]] = {label: [] for label in pipe.labels}
    n_gold: Dict[str, int] = {label: 0 for label in pipe.labels}
    for i in range(0, len(examples), batch_size):
        batch = examples[i : i + batch_size]
        docs = run_upstream(nlp, name, [eg.predicted for eg in batch])
        probabilities = pipe.model.ops.to_numpy(pipe.predict(docs))
        logits = numpy.log(probabilities) - numpy.log1p(-probabilities)
        row = 0
        for eg, doc in zip(batch, docs):
            gold = set(relation_keys(eg.reference, True))
            for key in gold:
                n_gold[key[1]] = n_gold.get(key[1], 0) + 1
            for head, tail in candidate_pairs(list(doc.ents), pipe.cfg["max_pair_distance"]):
                for column in numpy.flatnonzero(logits[row] >= floor):
                    label = pipe.labels[column]
                    record = RelationOffsets(head.start, head.end, head.label_, label, tail.start, tail.end,
                                             tail.label_, 0.0)
                    scores[label].append(float(logits[row, column]))
                    is_gold[label].append(relation_key(doc, record) in gold)
                row += 1
    return {label: Candidates(numpy.asarray(scores.get(label, []), "float32"), numpy.asarray(is_gold.get(label, []), bool),
                              n_gold[label]) for label in n_gold}


def _candidates(nlp: Language, name: str, examples: Sequence[Example], floor: float) -> Dict[str, Candidates]:
    if isinstance(nlp.get_pipe(name), GPLinker):
        return relation_candidates(nlp, name, examples, floor)
    return baseline_candidates(nlp, name, examples, floor)


def current_logits(pipe: Any) -> Dict[str, float]:
    """Each relation type's logit threshold as the pipeline is."""
    if isinstance(pipe, GPLinker):
        return dict(zip(pipe.relation_labels, pipe.relation_logit_thresholds().tolist()))
    return {label: probability_to_logit(pipe.cfg["threshold"]) for label in pipe.labels}


def counts_for(candidates: Dict[str, Candidates], thresholds: Dict[str, float]) -> Counts:
    """(TP, predicted, gold) per type at the given logit thresholds (a type without one predicts nothing)."""
    return {label: (*counts_at(c.scores, c.is_gold, thresholds.get(label, numpy.inf)), c.n_gold)
            for label, c in candidates.items()}


def micro_prf(counts: Counts) -> Dict[str, float]:
    tp, pred, gold = (sum(c[i] for c in counts.values()) for i in range(3))
    p, r = (tp / pred if pred else 0.0), (tp / gold if gold else 0.0)
    return {"p": p, "r": r, "f": 2 * p * r / (p + r) if p + r else 0.0}


def diagnose_pipeline(model: Path, dev: Path, test: Path) -> Dict[str, Any]:
    """The figures of one trained pipeline (see the module docstring)."""
    nlp = spacy.load(model)
    name, pipe = relation_component(nlp)
    dev_examples, test_examples = given_token_examples(nlp, dev), given_token_examples(nlp, test)
    is_gplinker = isinstance(pipe, GPLinker)
    max_distance = pipe.max_pair_distance if is_gplinker else pipe.cfg["max_pair_distance"]
    predicted = list(nlp.pipe([eg.predicted.copy() for eg in test_examples]))
    scores = relations_score([Example(p, eg.reference) for p, eg in zip(predicted, test_examples)],
                             spans_key=SPANS_KEY)
    row: Dict[str, Any] = {"max_pair_distance": max_distance}
    row.update({f"test_{key}": scores[key] for key in (
        "relations_p", "relations_r", "relations_f", "relations_args_found", "relations_linked_given_args",
        f"spans_{SPANS_KEY}_f")})
    for split, examples in (("dev", dev_examples), ("test", test_examples)):
        row[f"{split}_gold_beyond_distance"], row[f"{split}_gold_relations"] = beyond_distance(
            examples, max_distance, ends_too=is_gplinker)
    if is_gplinker:  # entity thresholds first, as `spacy egp tune` does
        tune_thresholds(nlp, [Example(eg.predicted.copy(), eg.reference) for eg in dev_examples], component=name)
    current = current_logits(pipe)
    floor = search_floor(pipe, None, None, numpy.asarray(list(current.values()))) if is_gplinker else float(
        numpy.nextafter(min([probability_to_logit(DEFAULT_FLOOR)] + list(current.values())), -numpy.inf))
    dev_candidates = _candidates(nlp, name, [Example(eg.predicted.copy(), eg.reference) for eg in dev_examples], floor)
    tuned = {label: tune_label(label, cands, current.get(label, numpy.inf), floor).new
             for label, cands in dev_candidates.items() if label in current}
    test_candidates = _candidates(nlp, name, [Example(eg.predicted.copy(), eg.reference) for eg in test_examples], floor)
    row["dev_tuned"] = micro_prf(counts_for(dev_candidates, tuned))
    row["dev_untuned"] = micro_prf(counts_for(dev_candidates, current))
    row["test_tuned"] = micro_prf(counts_for(test_candidates, tuned))
    row["tuned_probability_thresholds"] = {label: float(1 / (1 + numpy.exp(-t))) for label, t in tuned.items()}
    return row


def diagnose(output: Path, training: Optional[Path] = None, corpus: Optional[Path] = None) -> Dict[str, Any]:
    """OUTPUT/diagnosis.json for every trained pipeline of a `benchmark relations` run."""
    training, corpus = training or output / "training", corpus or output / "corpus"
    rows = []
    for name in PIPELINES:
        model = training / name / "model-best"
        if not (output / "parts" / f"{name}.json").exists() or not model.exists():
            continue  # a pipeline not trained, or cut short (no part written)
        print(f"{name}: {model}", flush=True)
        row = {"pipeline": name, **dev_curve(output / "logs" / f"{name}.jsonl")}
        row.update(diagnose_pipeline(model, corpus / "dev.spacy", corpus / "test.spacy"))
        rows.append(row)
    if not rows:
        raise FileNotFoundError(f"no finished pipeline: none of {PIPELINES} has both {output}/parts/NAME.json "
                                f"and {training}/NAME/model-best. Run `python -m spacy_egp.benchmark relations` "
                                "first, or point --training at the clone that ran it.")
    results = {"output": str(output), "rows": rows}
    (output / "diagnosis.json").write_text(json.dumps(results, indent=2))
    return results


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m spacy_egp.benchmark relations-diagnosis", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output", type=Path, help="a `benchmark relations` output folder, e.g. results/conll04-minilm")
    parser.add_argument("--training", type=Path, default=None,
                        help="the folder of NAME/model-best (default OUTPUT/training), e.g. a separate clone's")
    parser.add_argument("--corpus", type=Path, default=None,
                        help="the folder of dev.spacy and test.spacy (default OUTPUT/corpus), e.g. corpus/conll04")
    args = parser.parse_args(argv)
    from .relations_report import format_diagnosis_table

    print(format_diagnosis_table(diagnose(args.output, args.training, args.corpus)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

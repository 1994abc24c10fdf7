"""Tune the per-label probability thresholds of an efficient_globalpointer or gplinker component on dev data.

Command line::

    python -m spacy_egp.tune MODEL DEV_DATA --output OUT_MODEL [--spans-key KEY]
        [--component NAME] [--gpu-id -1] [--grid=0.1:0.9:0.05 | --grid=0.2,0.35,0.5] [--batch-size 64]

MODEL is a pipeline folder (or installed package); DEV_DATA a ``.spacy`` file with
gold spans in ``doc.spans[KEY]`` (KEY: the component's ``spans_key`` unless given).
The pipeline's components up to the tuned one run once over the dev texts
(``nlp.make_doc(gold.text)``); every cell of the logit band above a low floor is
kept with its label and whether it is a gold span. For each label the threshold
with the best dev F1 is then chosen, from the exact candidate scores (midway
between two neighbouring scores) or from ``--grid``; among equally good
thresholds the one closest to the current threshold wins, so an already optimal
threshold stays. A label with no gold span in the dev data keeps its threshold.
Thresholds are probabilities, as the component's; the search itself runs on
the logits, with the component's rule (a cell is kept when its logit is >= the
threshold's logit), so the dev counts are exactly those of the pipeline.
The thresholds go into the component's ``cfg["thresholds"]`` and into the
pipeline config, and the pipeline is saved to OUT_MODEL, so that
``spacy.load(OUT_MODEL)`` predicts with them. A per-label table of old and new
thresholds with dev F1 before and after is printed.

A gplinker component gets its entity thresholds tuned as above, then one
relation threshold per relation type (``relation_thresholds``), for the best
strict relation F1 (arguments' boundaries and types and the relation type, as
spacy_egp.relations_scorer.v1 counts): the entities are decoded with the tuned
thresholds, every relation whose head and tail pairs are both above the floor
is collected with its score (the lower of its two pairs' logits: a relation is
kept when both reach the threshold), and the same search picks each type's
threshold. Dev docs without stored relations are left out of this step, as the
scorer leaves them out. The pair cap (max_pairs_per_token) is not applied while
collecting: with a sensible threshold it does not bite.

Tune on dev, never on test: the tuned dev F1 is an in-sample score. A second
form prints test scores before and after tuning and warns when the tuning data
and the test data are the same (CLUENER's test split *is* its dev set)::

    python -m spacy_egp.tune compare BEFORE.json AFTER.json --tuning-data DEV.spacy
        --test-data TEST.spacy [--spans-key sc]

BEFORE.json and AFTER.json are metrics files of ``spacy evaluate MODEL DATA --output``.
"""

import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Set, Tuple

import numpy
from spacy.language import Language
from spacy.tokens import Doc
from spacy.training import Example

from ..ml.util import probability_to_logit, sigmoid
from .efficient_globalpointer import GlobalPointerPipe
from .gold import GoldProblems, gold_cells as gold_band_cells, role_gold_spans
from .gplinker import ROLE_LABELS, GPLinker, relation_key, relation_keys
from .relations import RELATIONS_KEY

# The factories whose components are tuned: both are GlobalPointerPipes (span thresholds); gplinker
# also has relation thresholds.
FACTORIES = ("efficient_globalpointer", "gplinker")
# The lowest probability searched unless a threshold or the grid is lower (logit
# -5): far below any useful threshold, yet it keeps few cells of the band.
DEFAULT_FLOOR = 0.0067
# How far above the highest candidate score "predict nothing" puts a threshold.
ABOVE_ALL_MARGIN = 1.0

class TuneError(ValueError):
    """A problem with the user's input; the message says what to fix."""


@dataclass
class Candidates:
    """The logits of one label's candidate cells and whether each is a gold span."""

    scores: numpy.ndarray  # float32, every cell above the floor
    is_gold: numpy.ndarray  # bool, same length
    n_gold: int  # all gold spans of the label, including those never scored above the floor


@dataclass
class LabelTuning:
    """The outcome for one label: thresholds and dev counts before and after."""

    label: str
    old: Optional[float]
    new: Optional[float]
    n_gold: int
    tp_before: int = 0
    pred_before: int = 0
    tp_after: int = 0
    pred_after: int = 0
    note: str = ""

    @property
    def f1_before(self) -> float:
        return f1_score(self.tp_before, self.pred_before, self.n_gold)

    @property
    def f1_after(self) -> float:
        return f1_score(self.tp_after, self.pred_after, self.n_gold)


def f1_score(tp: int, n_pred: int, n_gold: int) -> float:
    """F1 from counts: 2 TP / (predicted + gold); 0.0 when both are empty."""
    return 2.0 * tp / (n_pred + n_gold) if n_pred + n_gold else 0.0


def micro_f1(results: Iterable[LabelTuning], after: bool) -> float:
    """Micro F1 over labels, before or after tuning."""
    results = list(results)
    tp = sum(r.tp_after if after else r.tp_before for r in results)
    pred = sum(r.pred_after if after else r.pred_before for r in results)
    return f1_score(tp, pred, sum(r.n_gold for r in results))


# --------------------------------------------------------------------------
# Searching one label's threshold
# --------------------------------------------------------------------------


def counts_at(scores: numpy.ndarray, is_gold: numpy.ndarray, threshold: float) -> Tuple[int, int]:
    """(true positives, predicted) when the cells at or above a logit threshold are predicted."""
    above = scores >= numpy.float64(threshold)
    return int(numpy.count_nonzero(is_gold & above)), int(numpy.count_nonzero(above))


def score_levels(cands: Candidates, floor: float) -> Tuple[numpy.ndarray, ...]:
    """Every distinct prediction set as an interval (lo, hi] of logit thresholds, with its counts.

    Interval k keeps the k highest distinct scores: k = 0 predicts nothing
    ((highest score, inf]), the last one everything above the floor.
    RETURNS (Tuple[numpy.ndarray, ...]): lo, hi, true positives, predicted.
    """
    order = numpy.argsort(-cands.scores, kind="stable")
    scores, gold = cands.scores[order], cands.is_gold[order]
    values, first = numpy.unique(-scores, return_index=True)
    values = -values  # distinct scores, highest first
    # no candidate above the floor (an untrained model, say): only interval 0, predicting nothing
    ends = numpy.append(first[1:], len(scores)) if len(scores) else numpy.zeros(0, dtype="int64")
    tp = numpy.concatenate([[0], numpy.cumsum(gold)[ends - 1]])
    pred = numpy.concatenate([[0], ends])
    lo = numpy.concatenate([values, [floor]]).astype("float64")
    hi = numpy.concatenate([[numpy.inf], values]).astype("float64")
    return lo, hi, tp.astype(int), pred.astype(int)


def representative(lo: float, hi: float, current: float) -> float:
    """A logit threshold inside (lo, hi]: the current one if it is there, else the middle.

    The middle is taken in float64, which lies strictly between any two
    distinct float32 scores, so no score sits on a chosen threshold.
    """
    if lo < current <= hi:
        return current
    if not numpy.isfinite(hi):
        return lo + ABOVE_ALL_MARGIN
    return (lo + hi) / 2


def closest_best(f1s: numpy.ndarray, threshold_of: Callable[[int], float], current: float) -> Tuple[int, float]:
    """The index and threshold of the best F1; ties go to the threshold closest to the current one."""
    best = numpy.flatnonzero(f1s >= f1s.max() - 1e-12).tolist()
    # Only the best few get a threshold computed: an exact search has one option per distinct score.
    options = [(abs(threshold_of(k) - current), k) for k in best]
    k = min(options)[1]
    return k, threshold_of(k)


def search_exact(cands: Candidates, current: float, floor: float) -> Tuple[float, int, int]:
    """The best threshold over all distinct prediction sets. RETURNS threshold, TP, predicted."""
    lo, hi, tp, pred = score_levels(cands, floor)
    f1s = 2.0 * tp / numpy.maximum(pred + cands.n_gold, 1)
    k, threshold = closest_best(f1s, lambda i: representative(lo[i], hi[i], current), current)
    return threshold, int(tp[k]), int(pred[k])


def search_grid(cands: Candidates, current: float, grid: Sequence[float]) -> Tuple[float, int, int]:
    """The best threshold of the grid. RETURNS threshold, TP, predicted."""
    thresholds = [float(value) for value in grid]
    counts = [counts_at(cands.scores, cands.is_gold, t) for t in thresholds]
    f1s = numpy.asarray([f1_score(tp, pred, cands.n_gold) for tp, pred in counts])
    k, threshold = closest_best(f1s, lambda i: thresholds[i], current)
    return threshold, counts[k][0], counts[k][1]


def tune_label(label: str, cands: Candidates, current: float, floor: float,
               grid: Optional[Sequence[float]] = None) -> LabelTuning:
    """The best dev-F1 threshold of one label; no gold span -> the current one is kept."""
    tp, pred = counts_at(cands.scores, cands.is_gold, current)
    result = LabelTuning(label, current, current, cands.n_gold, tp, pred, tp, pred)
    if cands.n_gold == 0:
        result.note = "no gold span in the dev data: kept"
        return result
    search = search_grid(cands, current, grid) if grid else search_exact(cands, current, floor)
    result.new, result.tp_after, result.pred_after = search
    return result


# --------------------------------------------------------------------------
# Collecting the candidate cells of the dev docs
# --------------------------------------------------------------------------


def find_component(nlp: Language, component: Optional[str] = None) -> Tuple[str, GlobalPointerPipe]:
    """The named (or first) enabled efficient_globalpointer or gplinker component."""
    names = [name for name, _ in nlp.pipeline if nlp.get_pipe_meta(name).factory in FACTORIES]
    if component is None and names:
        component = names[0]
    if component is None or component not in names:
        what = f"no enabled component {component!r} of" if component else "no component made by"
        factories = " or ".join(repr(factory) for factory in FACTORIES)
        raise TuneError(
            f"the pipeline has {what} the factory {factories} (its components: {nlp.pipe_names}, "
            f"theirs: {names}). Pass --component with one of those, or tune a pipeline "
            f"trained with spacy_egp."
        )
    return component, nlp.get_pipe(component)


def run_upstream(nlp: Language, name: str, docs: List[Doc]) -> List[Doc]:
    """Run the components before `name`: listeners read what they write (tensors, trf_data)."""
    for upstream, proc in nlp.pipeline:
        if upstream == name:
            break
        docs = list(proc.pipe(docs)) if hasattr(proc, "pipe") else [proc(doc) for doc in docs]
    return docs


def unique_gold(examples: Sequence[Example], spans_key: str,
                pipe: Optional[GlobalPointerPipe] = None) -> List[Set[Tuple[int, int, str]]]:
    """Each example's gold spans as (start char, end char, label), each once (as spaCy's scorer counts them).

    A gplinker with entity_roles learns the relation arguments as its spans: those are its gold.
    """
    if _uses_roles(pipe):
        problems = GoldProblems("tune", warn=False)
        return [{(eg.predicted[s:e].start_char, eg.predicted[s:e].end_char, label)
                 for s, e, label in role_gold_spans(eg, ROLE_LABELS, problems)} for eg in examples]
    return [{(s.start_char, s.end_char, s.label_) for s in eg.reference.spans[spans_key]} for eg in examples]


def _uses_roles(pipe: Optional[GlobalPointerPipe]) -> bool:
    return isinstance(pipe, GPLinker) and pipe.entity_roles


def batch_candidates(nlp: Language, name: str, examples: Sequence[Example], spans_key: str,
                     floor: float) -> Tuple[numpy.ndarray, ...]:
    """One batch's cells above the floor (a logit): label index, logit, is gold."""
    pipe = nlp.get_pipe(name)
    docs = run_upstream(nlp, name, [eg.predicted for eg in examples])
    band = pipe.model.ops.to_numpy(pipe.span_band(pipe.predict(docs)).dataXd)
    n_tokens, n_widths, n_labels = band.shape
    # Cell (t, w, k) is the span of tokens t .. t + w with label k (as set_annotations reads it).
    token, width, label = numpy.nonzero(band > floor)
    flat = (token.astype("int64") * n_widths + width) * n_labels + label
    # The component's own mapping; gold spans without a cell (misaligned, too long, unknown label) stay misses.
    problems = GoldProblems(name, warn=False)
    spans_of = (lambda eg: role_gold_spans(eg, ROLE_LABELS, problems)) if _uses_roles(pipe) else None
    cells = gold_band_cells(examples, spans_key, pipe.labels, pipe.max_span_length,
                            problems, skip_unknown_labels=True, spans_of=spans_of)
    is_gold = numpy.isin(flat, (cells[:, 0] * n_widths + cells[:, 1]) * n_labels + cells[:, 2])
    return label, band[token, width, label].astype("float32"), is_gold


def collect_candidates(nlp: Language, name: str, examples: Sequence[Example], spans_key: str,
                       floor: float, batch_size: int = 64) -> Dict[str, Candidates]:
    """Every label's candidate cells over the examples (the model runs once per doc).

    Labels found only in the gold data are included (their spans count as misses).
    """
    labels = nlp.get_pipe(name).labels
    gold = unique_gold(examples, spans_key, nlp.get_pipe(name))
    parts = [
        batch_candidates(nlp, name, examples[i : i + batch_size], spans_key, floor)
        for i in range(0, len(examples), batch_size)
    ]
    label = numpy.concatenate([p[0] for p in parts] or [numpy.zeros(0, int)])
    logit = numpy.concatenate([p[1] for p in parts] or [numpy.zeros(0, "float32")])
    is_gold = numpy.concatenate([p[2] for p in parts] or [numpy.zeros(0, bool)])
    n_gold = Counter(span[2] for spans in gold for span in spans)
    result = {lab: Candidates(logit[label == k], is_gold[label == k], n_gold[lab])
              for k, lab in enumerate(labels)}
    for extra in sorted(set(n_gold) - set(labels)):
        result[extra] = Candidates(numpy.zeros(0, "float32"), numpy.zeros(0, bool), n_gold[extra])
    return result


# --------------------------------------------------------------------------
# Tuning a pipeline
# --------------------------------------------------------------------------


def as_probabilities(result: LabelTuning, known: Dict[float, float]) -> LabelTuning:
    """A label's outcome with its logit thresholds as probabilities.

    known: logit -> probability of the thresholds given as probabilities (the
    current ones, the grid), which come back exactly as they were given.
    """
    result.old = known.get(result.old, result.old)
    result.new = known[result.new] if result.new in known else logit_to_probability(result.new)
    return result


def logit_to_probability(logit: float) -> float:
    """The sigmoid in float64, so that the component maps it back to (almost exactly) this logit."""
    return float(sigmoid(logit, dtype="float64"))


def search_floor(pipe: GlobalPointerPipe, grid: Optional[Sequence[float]], floor: Optional[float],
                 current: Optional[numpy.ndarray] = None) -> float:
    """The logit below which no cell is collected: under the floor, every grid point and current threshold.

    The current thresholds (logits; default the span labels') must be above it,
    or the "before" counts would miss cells; so must every threshold that can be chosen.
    """
    current = pipe.logit_thresholds() if current is None else current
    lowest = [float(current.min())] if len(current) else []
    base = floor if floor is not None else (min(grid) if grid else DEFAULT_FLOOR)
    return float(numpy.nextafter(min([probability_to_logit(base)] + lowest), -numpy.inf))


def apply_thresholds(nlp: Language, name: str, thresholds: Dict[str, float], key: str = "thresholds") -> None:
    """Set per-label thresholds in the component's cfg and in the pipeline config.

    key: "thresholds" (span labels) or "relation_thresholds" (gplinker's relation labels).
    spacy.load builds the component from config.cfg and then updates cfg from the
    saved `cfg` file, so cfg decides; the config is updated too so that the saved
    config.cfg (read by people, `spacy package` and `spacy assemble`) tells the truth.
    """
    pipe = nlp.get_pipe(name)
    merged = {**pipe.cfg.get(key, {}), **{label: float(value) for label, value in thresholds.items()}}
    pipe.cfg[key] = merged
    nlp.get_pipe_config(name)[key] = dict(merged)


def tune_thresholds(
    nlp: Language,
    examples: Sequence[Example],
    *,
    component: Optional[str] = None,
    spans_key: Optional[str] = None,
    grid: Optional[Sequence[float]] = None,
    floor: Optional[float] = None,
    batch_size: int = 64,
    apply: bool = True,
    report: Optional[Dict[str, LabelTuning]] = None,
) -> Dict[str, float]:
    """Choose each span label's probability threshold for the best F1 on the examples (dev data).

    For a gplinker these are its entity thresholds; tune_relation_thresholds
    then tunes its relation thresholds (the command line does both).

    nlp (Language): The pipeline; only the components up to the tuned one run.
    examples (Sequence[Example]): Dev examples; predicted docs fresh from
        nlp.make_doc, reference docs with gold spans in doc.spans[spans_key]
        (examples without that key are skipped, as spaCy's scorer does).
    component (Optional[str]): The efficient_globalpointer or gplinker to tune; default the first.
    spans_key (Optional[str]): The gold key; default the component's spans_key.
    grid (Optional[Sequence[float]]): Probability thresholds to choose from;
        default: the exact search over all candidate scores.
    floor (Optional[float]): A probability: cells below it are not collected
        and no lower threshold is chosen (always lowered to the current thresholds).
    batch_size (int): Docs per predict call.
    apply (bool): Write the thresholds into the component and the pipeline config.
    report (Optional[Dict[str, LabelTuning]]): If given, receives each label's
        outcome (old/new threshold, dev counts before and after).
    RETURNS (Dict[str, float]): The threshold of each of the component's labels.
    """
    name, pipe = find_component(nlp, component)
    spans_key = spans_key or pipe.key
    if _uses_roles(pipe):  # the roles' gold spans are the relation arguments
        examples = [eg for eg in examples if RELATIONS_KEY in eg.reference.user_data]
    else:
        examples = [eg for eg in examples if spans_key in eg.reference.spans]
    if not examples:
        raise TuneError(f"no example has gold spans in doc.spans[{spans_key!r}]: nothing to tune on. "
                        "Pass spans_key with the key of the gold spans.")
    floor = search_floor(pipe, grid, floor)
    candidates = collect_candidates(nlp, name, examples, spans_key, floor, batch_size)
    current = dict(zip(pipe.labels, pipe.logit_thresholds().tolist()))
    results = tune_labels(candidates, current, pipe.label_thresholds(), floor, grid,
                          unknown="not a label of the component: every span missed")
    if report is not None:
        report.update(results)
    tuned = {label: r.new for label, r in results.items() if label in current and r.n_gold}
    if apply:
        apply_thresholds(nlp, name, tuned)
    return {label: results[label].new for label in pipe.labels}


# --------------------------------------------------------------------------
# gplinker: one relation threshold per relation type
# --------------------------------------------------------------------------


def relation_candidates(nlp: Language, name: str, examples: Sequence[Example], floor: float,
                        batch_size: int = 64) -> Dict[str, Candidates]:
    """Every relation type's candidate relations over the examples: score (a logit) and whether it is gold.

    The entities are decoded with the component's current thresholds; a
    candidate is a relation whose head and tail pairs are both above the floor,
    scored by the lower of the two logits, each argument boundary once (as
    set_annotations decodes). Gold: the strict key (arguments' character
    offsets and types, relation label) of a reference relation, each once.
    """
    pipe = nlp.get_pipe(name)
    floors = numpy.full(len(pipe.relation_labels), floor)
    scores: Dict[str, List[float]] = {label: [] for label in pipe.relation_labels}
    is_gold: Dict[str, List[bool]] = {label: [] for label in pipe.relation_labels}
    n_gold: Counter = Counter()
    for i in range(0, len(examples), batch_size):
        batch = examples[i : i + batch_size]
        docs = run_upstream(nlp, name, [eg.predicted for eg in batch])
        predicted = pipe.predict(docs)
        pipe.set_annotations(docs, predicted)  # the entities, as the pipeline writes them
        pairs = pipe.pairs_above(predicted.pairs, floors, capped=False, logits=True)
        for eg, doc, (head_pairs, tail_pairs) in zip(batch, docs, pairs):
            gold = set(relation_keys(eg.reference, True))
            n_gold.update(key[1] for key in gold)
            for record in pipe.decode(doc, head_pairs, tail_pairs):
                scores[record.label].append(record.score)
                is_gold[record.label].append(relation_key(doc, record) in gold)
    result = {label: Candidates(numpy.asarray(scores[label], dtype="float32"), numpy.asarray(is_gold[label], bool),
                                n_gold[label]) for label in pipe.relation_labels}
    for extra in sorted(set(n_gold) - set(result)):
        result[extra] = Candidates(numpy.zeros(0, "float32"), numpy.zeros(0, bool), n_gold[extra])
    return result


def tune_relation_thresholds(
    nlp: Language,
    examples: Sequence[Example],
    *,
    component: Optional[str] = None,
    grid: Optional[Sequence[float]] = None,
    floor: Optional[float] = None,
    batch_size: int = 64,
    apply: bool = True,
    report: Optional[Dict[str, LabelTuning]] = None,
) -> Dict[str, float]:
    """Choose a gplinker's probability threshold of each relation type for the best strict relation F1.

    Arguments as tune_thresholds; examples whose reference doc has no stored
    relations are left out (as the relation scorer leaves them out). The
    entities are decoded with the component's thresholds as they are: tune
    those first (tune_thresholds does both).
    RETURNS (Dict[str, float]): The threshold of each of the component's relation labels.
    """
    name, pipe = find_component(nlp, component)
    if not isinstance(pipe, GPLinker):
        raise TuneError(f"[{name}] has no relation thresholds: it is not a gplinker component.")
    examples = [eg for eg in examples if RELATIONS_KEY in eg.reference.user_data]
    if not examples:
        raise TuneError("no example has relations stored (doc._.relations): no relation threshold to tune. "
                        "Convert the dev data with `python -m spacy_egp.convert` (it keeps the relations).")
    current_logits = pipe.relation_logit_thresholds()
    floor = search_floor(pipe, grid, floor, current_logits)
    candidates = relation_candidates(nlp, name, examples, floor, batch_size)
    current = dict(zip(pipe.relation_labels, current_logits.tolist()))
    results = tune_labels(candidates, current, pipe.relation_label_thresholds(), floor, grid,
                          unknown="not a relation label of the component: every relation missed")
    if report is not None:
        report.update(results)
    if apply:
        tuned = {label: r.new for label, r in results.items() if label in current and r.n_gold}
        apply_thresholds(nlp, name, tuned, key="relation_thresholds")
    return {label: results[label].new for label in pipe.relation_labels}


def tune_labels(candidates: Dict[str, Any], current: Dict[str, float], current_probabilities: Dict[str, float],
                floor: float, grid: Optional[Sequence[float]], *, unknown: str) -> Dict[str, LabelTuning]:
    """Each label's best threshold from its candidates (an exact search, or the grid), as probabilities.

    current: the component's logit threshold per label; current_probabilities:
    the same as the probabilities the user wrote, so that a kept threshold is
    reported as written. A label of the gold data that the component lacks gets
    `unknown` as its note.
    """
    grid_logits = [probability_to_logit(p) for p in grid] if grid else None
    known = dict(zip(grid_logits or [], grid or []))
    results = {}
    for label, cands in candidates.items():
        if label in current:
            known_here = {**known, current[label]: current_probabilities[label]}
            results[label] = as_probabilities(tune_label(label, cands, current[label], floor, grid_logits),
                                              known_here)
        else:
            results[label] = LabelTuning(label, None, None, cands.n_gold, note=unknown)
    return results


# --------------------------------------------------------------------------
# Data, report, command line
# --------------------------------------------------------------------------


def load_examples(nlp: Language, data_path: str, spans_key: str, needs_spans: bool = True) -> List[Example]:
    """Dev examples from a .spacy file: fresh predicted docs from the gold texts.

    needs_spans: some doc must have gold spans in doc.spans[spans_key] (not for entity roles).
    """
    from spacy.tokens import DocBin

    path = Path(data_path)
    if not path.is_file():
        raise TuneError(f"dev data not found: {data_path}. Give a .spacy file (e.g. corpus/DATASET/dev.spacy "
                        "from `spacy project run convert`).")
    try:
        gold_docs = list(DocBin().from_disk(path).get_docs(nlp.vocab))
    except Exception as error:
        raise TuneError(f"could not read {data_path} as a .spacy file (DocBin): {type(error).__name__}: "
                        f"{error}. Convert the data with `python -m spacy_egp.convert`.") from None
    if needs_spans and not any(spans_key in doc.spans for doc in gold_docs):
        found = sorted({key for doc in gold_docs for key in doc.spans})
        raise TuneError(f"no doc of {data_path} ({len(gold_docs)} docs) has gold spans in "
                        f"doc.spans[{spans_key!r}] (keys found: {found}). Pass --spans-key with the key "
                        "of the gold spans, or convert the data with that key.")
    return [Example(nlp.make_doc(doc.text), doc) for doc in gold_docs]


def load_pipeline(model: str, gpu_id: int) -> Language:
    import spacy

    if not Path(model).exists() and not spacy.util.is_package(model):
        raise TuneError(f"model not found: {model} is neither a folder nor an installed package. Give the "
                        "folder of a trained pipeline, e.g. training/DATASET/model-best.")
    if gpu_id >= 0:
        spacy.require_gpu(gpu_id)
    try:
        return spacy.load(model)
    except (OSError, ValueError) as error:
        raise TuneError(f"could not load the pipeline {model}: {error}") from None


def format_table(results: Dict[str, LabelTuning], spans_key: str, title: Optional[str] = None) -> str:
    """Label, old and new threshold, dev F1 before and after, gold count; micro F1 last.

    title: the first line; default the span thresholds' of doc.spans[spans_key].
    """
    width = max([len(label) for label in results] + [len("micro avg")])
    head = f"{'label':<{width}}  {'old thr':>8}  {'new thr':>8}  {'F before':>8}  {'F after':>8}  {'gold':>6}"
    rule = "-" * len(head)
    title = title or f"dev thresholds (probabilities) and span F1 (%), doc.spans[{spans_key!r}]:"
    lines = [title, head, rule]

    def thr(value: Optional[float]) -> str:
        return f"{'-':>8}" if value is None else f"{value:8.3f}"

    for label in sorted(results):
        r = results[label]
        note = f"  {r.note}" if r.note else ""
        lines.append(f"{label:<{width}}  {thr(r.old)}  {thr(r.new)}  {r.f1_before * 100:8.2f}  "
                     f"{r.f1_after * 100:8.2f}  {r.n_gold:>6}{note}")
    lines.append(rule)
    total = sum(r.n_gold for r in results.values())
    lines.append(f"{'micro avg':<{width}}  {'':>8}  {'':>8}  {micro_f1(results.values(), False) * 100:8.2f}  "
                 f"{micro_f1(results.values(), True) * 100:8.2f}  {total:>6}")
    return "\n".join(lines)


def tune_model(model: str, data: str, output: str, *, spans_key: Optional[str] = None,
               component: Optional[str] = None, gpu_id: int = -1, grid: Optional[Sequence[float]] = None,
               batch_size: int = 64) -> None:
    """The tune command's work: load MODEL, tune on DATA (dev), print the tables, save to OUTPUT.

    grid: probability thresholds to choose from; None for the exact search.
    """
    if "test" in Path(data).name:
        print(f"warning: {data} looks like a test split. Tune on dev data: thresholds tuned on test "
              "make its scores optimistic.", file=sys.stderr)
    nlp = load_pipeline(model, gpu_id)
    name, pipe = find_component(nlp, component)
    spans_key = spans_key or pipe.key
    examples = load_examples(nlp, data, spans_key, needs_spans=not _uses_roles(pipe))
    report: Dict[str, LabelTuning] = {}
    tune_thresholds(nlp, examples, component=name, spans_key=spans_key, grid=grid,
                    batch_size=batch_size, report=report)
    print(f"{model} [{name}] tuned on {data} ({len(examples)} docs, "
          f"{'grid of ' + str(len(grid)) + ' thresholds' if grid else 'exact search'}):")
    print(format_table(report, spans_key))
    print(f"DEV F1 before {micro_f1(report.values(), False) * 100:.2f} -> after "
          f"{micro_f1(report.values(), True) * 100:.2f} (in-sample: the thresholds were chosen on this data)")
    saved = f"thresholds = {pipe.cfg['thresholds']}"
    if isinstance(pipe, GPLinker):
        relation_report: Dict[str, LabelTuning] = {}
        tune_relation_thresholds(nlp, examples, component=name, grid=grid, batch_size=batch_size,
                                 report=relation_report)
        print(format_table(relation_report, spans_key, "dev relation thresholds (probabilities) and strict "
                                                       "relation F1 (%), with the tuned entity thresholds:"))
        print(f"DEV relation F1 before {micro_f1(relation_report.values(), False) * 100:.2f} -> after "
              f"{micro_f1(relation_report.values(), True) * 100:.2f} (in-sample)")
        saved += f", relation_thresholds = {pipe.cfg['relation_thresholds']}"
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    nlp.to_disk(output)
    print(f"saved to {output}: [components.{name}] {saved}")

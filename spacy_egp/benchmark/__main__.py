"""Command line of the benchmarks: python -m spacy_egp.benchmark COMMAND ..."""

import argparse
import importlib
import json
import sys
from pathlib import Path
from typing import Dict, List, Optional

from . import __doc__ as package_doc

RESULTS = Path("results")


def _models(specs: List[str]) -> Dict[str, Optional[str]]:
    """NAME=PATH (or PATH, named after its position) pairs; none = the untrained EGP."""
    if not specs:
        return {"untrained": None}
    return dict(spec.split("=", 1) if "=" in spec else (f"model{i}", spec) for i, spec in enumerate(specs))


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m spacy_egp.benchmark", description=package_doc,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("annotate", help="annotation throughput, local vs Ray (own options: annotate --help)")
    sub.add_parser("recall", help="recall of gold spans by span length, doc length, label (own options: recall --help)")
    sub.add_parser("relations", help="gplinker (EGP and GP pair pointers) vs spaCy ner + pair classifier "
                                     "(own options: relations --help)")
    sub.add_parser("distill", help="a teacher, its CNN student and the CNN on gold alone, on test "
                                   "(own options: distill --help)")
    sub.add_parser("relations-diagnosis", help="where a relations run's errors come from: dev curve, entity vs "
                                               "linking recall, distance, dev-tuned thresholds (own options)")
    sub.add_parser("probe", help="a linear probe per layer of frozen encoders: dev span F1 and tokenisation "
                                 "(own options: probe --help)")

    compare = sub.add_parser("compare", help="train and evaluate EGP, GP, spancat and ner on one dataset")
    compare.add_argument("dataset", help="a name for the results, e.g. cluener")
    compare.add_argument("--template", type=Path, required=True, help="the dataset's EGP config, e.g. configs/cluener_cnn.cfg")
    compare.add_argument("--corpus", type=Path, required=True, help="folder with train.spacy, dev.spacy, test.spacy")
    compare.add_argument("--output", type=Path, default=None, help="default: results/DATASET[-TOK2VEC]")
    compare.add_argument("--pipelines", nargs="+", default=["egp", "gp", "spancat", "ner"],
                         help="of egp gp spancat ner (default: all four), and spancat-no-context ner-no-context: "
                              "spaCy's heads on the template's tok2vec without its context layer")
    compare.add_argument("--max-steps", type=int, required=True)
    compare.add_argument("--eval-frequency", type=int, default=500)
    compare.add_argument("--jobs", type=int, default=1, help="trainings run at the same time")
    compare.add_argument("--batch-size", type=int, default=256, help="nlp.pipe batch size at inference")
    compare.add_argument("--gpu-id", type=int, default=-1, help="for training; inference is timed on CPU")
    compare.add_argument("--inference-gpu-id", type=int, default=-1,
                         help="for the test figures and dev threshold tuning (default -1: timed on CPU, one thread)")
    compare.add_argument("--tok2vec", default="CNN", help="a label for the tok2vec of the template")
    compare.add_argument("--baseline-head-lr-scale", type=_positive_float, default=1.0, metavar="SCALE",
                         help="spancat's and ner's own layers learn at SCALE times the rate (default 1): "
                              "on a pretrained encoder the recipe's 5e-5 leaves a fresh spaCy head nearly still")
    compare.add_argument("--set", nargs="*", default=[], metavar="SECTION.KEY=VALUE",
                         help="config overrides for spacy train, e.g. paths.transformer=/path/to/model")

    ablation = sub.add_parser("ablation", help="dev F1 of one accuracy lever at a time against the default EGP")
    ablation.add_argument("dataset", help="a name for the results, e.g. cluener")
    ablation.add_argument("--template", type=Path, required=True, help="the dataset's EGP config, e.g. configs/cluener_cnn.cfg")
    ablation.add_argument("--corpus", type=Path, required=True, help="folder with train.spacy and dev.spacy")
    ablation.add_argument("--levers", nargs="+", default=["schedule", "prior", "window2"],
                          help="lever names (see ablation.LEVERS) or combined:a+b; the reference always runs")
    ablation.add_argument("--reference", choices=["baseline", "shipped"], default="baseline",
                          help="the row every lever is measured against: the default before the accuracy levers "
                               "(baseline) or the template as it is (shipped)")
    ablation.add_argument("--pipeline", choices=["egp", "gp", "spancat", "ner"], default="egp",
                          help="the component the levers are measured on; the others are built from each EGP "
                               "variant as `compare` builds them (default: egp)")
    ablation.add_argument("--max-steps", type=int, required=True)
    ablation.add_argument("--eval-frequency", type=int, default=250)
    ablation.add_argument("--jobs", type=int, default=1, help="trainings run at the same time")
    ablation.add_argument("--output", type=Path, default=None, help="default: results/ablation/DATASET.json")
    ablation.add_argument("--models", type=Path, default=Path("/tmp/ablation"), help="where trained pipelines go")
    ablation.add_argument("--set", nargs="*", default=[], metavar="SECTION.KEY=VALUE",
                          help="written into every variant's config, e.g. paths.transformer=/path/to/model")

    long = sub.add_parser("long-docs", help="time and peak memory against document length")
    long.add_argument("--model", nargs="*", default=[], help="NAME=PATH of trained pipelines (default: untrained EGP)")
    long.add_argument("--lengths", type=int, nargs="+", default=[10000, 100000])
    long.add_argument("--output", type=Path, default=None, help="JSON file for the rows")

    loss = sub.add_parser("loss-memory", help="peak memory of one training update: dense vs sparse ZLPR")
    loss.add_argument("--lengths", type=int, nargs="+", default=[5000, 20000])
    loss.add_argument("--output", type=Path, default=None, help="JSON file for the rows")

    params = sub.add_parser("params", help="EGP vs GP head parameters (D = 768, d = 64)")
    params.add_argument("--output", type=Path, default=RESULTS / "params.json")

    report = sub.add_parser("report", help="results/README.md, the plots and README.md's Results table")
    report.add_argument("--results", type=Path, default=RESULTS)
    report.add_argument("--readme", type=Path, default=Path("README.md"))

    one = sub.add_parser("_one")
    one.add_argument("length", type=int)
    one.add_argument("--model", default=None)
    update = sub.add_parser("_update")
    update.add_argument("length", type=int)
    update.add_argument("loss", choices=["dense", "sparse"])
    evaluate = sub.add_parser("_evaluate")
    evaluate.add_argument("model")
    evaluate.add_argument("test")
    evaluate.add_argument("--batch-size", type=int, default=256)
    evaluate.add_argument("--gpu-id", type=int, default=-1)
    return parser


# Subcommands with a parser of their own: `python -m spacy_egp.benchmark annotate --help`.
OWN_PARSERS = {"annotate": "annotation", "recall": "recall", "relations": "relations", "distill": "distillation",
               "probe": "probe", "relations-diagnosis": "relations_diagnosis"}


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in OWN_PARSERS:
        module = importlib.import_module(f".{OWN_PARSERS[argv[0]]}", __package__)
        return module.main(argv[1:]) or 0
    args = _parser().parse_args(argv)
    if args.command == "compare":
        from .compare import run_dataset

        suffix = "" if args.tok2vec == "CNN" else f"-{args.tok2vec.lower()}"
        output = args.output or RESULTS / f"{args.dataset}{suffix}"
        results = run_dataset(args.dataset, template=args.template, corpus=args.corpus, output=output,
                              pipelines=args.pipelines, max_steps=args.max_steps,
                              eval_frequency=args.eval_frequency, jobs=args.jobs, batch_size=args.batch_size,
                              gpu_id=args.gpu_id, inference_gpu_id=args.inference_gpu_id,
                              tok2vec_name=args.tok2vec, overrides=dict(item.split("=", 1) for item in args.set),
                              baseline_head_lr_scale=args.baseline_head_lr_scale)
        from .report import format_dataset_table

        print(format_dataset_table(results))
    elif args.command == "ablation":
        from .ablation import run_ablation
        from .report import format_ablation_table

        summary = run_ablation(args.dataset, template=args.template, corpus=args.corpus, levers=args.levers,
                               max_steps=args.max_steps, eval_frequency=args.eval_frequency, jobs=args.jobs,
                               output=args.output, models=args.models, reference=args.reference,
                               overrides=dict(item.split("=", 1) for item in args.set), pipeline=args.pipeline)
        print(format_ablation_table([summary]))
    elif args.command == "long-docs":
        from .long_docs import long_docs

        rows = long_docs(_models(args.model), args.lengths)
        if args.output:
            args.output.parent.mkdir(parents=True, exist_ok=True)
            args.output.write_text(json.dumps(rows, indent=2))
    elif args.command == "loss-memory":
        from .long_docs import loss_memory

        rows = loss_memory(args.lengths)
        if args.output:
            args.output.parent.mkdir(parents=True, exist_ok=True)
            args.output.write_text(json.dumps(rows, indent=2))
    elif args.command == "_update":
        from .long_docs import measure_update

        print(json.dumps(measure_update(args.length, args.loss == "sparse")))
    elif args.command == "params":
        from .params import head_parameters
        from .report import format_params_table

        rows = head_parameters()
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(rows, indent=2))
        print(format_params_table(rows))
    elif args.command == "report":
        from .report import write_report

        write_report(args.results, args.readme)
    elif args.command == "_one":
        from .long_docs import measure_one

        print(json.dumps(measure_one(args.model, args.length)))
    else:
        from .evaluation import evaluate_pipeline

        print(json.dumps(evaluate_pipeline(args.model, args.test, args.batch_size, gpu_id=args.gpu_id)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

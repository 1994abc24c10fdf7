"""What a frozen encoder already knows about a span task: a linear probe per hidden layer.

    python -m spacy_egp.benchmark probe DATASET --corpus DIR --encoder NAME=FOLDER [NAME=FOLDER ...]
        [--layers 0 6 12] [--train-docs 3000] [--output results/probe/DATASET.json]

For each encoder (a Hugging Face model folder, as `TransformerModel.v3` takes)
and each hidden layer, every spaCy token of the corpus gets the frozen layer's
vector, the mean of the wordpieces that overlap it (as the TransformerListener
pools them). One linear softmax over BIO tags is trained on the tokens of the
first N train docs and scored on dev: exact labelled span F1 of the decoded
spans against the gold spans, nested gold reduced to its longest
non-overlapping spans as a flat tagger must see it. Nothing is fine-tuned, so
the figure separates the encoder from the recipe: where its features start.

The encoder's tokenisation is reported beside it: wordpieces per token, the
share of unknown pieces, and the share of tokens that share a piece with
another token (a boundary inside a piece cannot be seen by the probe).
"""

import argparse
import json
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy
import torch
from spacy.tokens import Doc, DocBin
from spacy.training.iob_utils import iob_to_biluo, tags_to_entities
from spacy.util import filter_spans
from spacy.vocab import Vocab

from .compare import machine_description

DEFAULT_LAYERS = (0, 6, 12)
PROBE_STEPS = 500
PROBE_LEARN_RATE = 0.01
OUTSIDE = "O"


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m spacy_egp.benchmark probe",
                                     description=__doc__.split("\n\n", 2)[2],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", help="a name for the results, e.g. cluener")
    parser.add_argument("--corpus", type=Path, required=True, help="folder with train.spacy and dev.spacy")
    parser.add_argument("--encoder", nargs="+", required=True, metavar="NAME=FOLDER",
                        help="Hugging Face model folders, e.g. me5s=../shared/models/me5s-zh-char")
    parser.add_argument("--layers", type=int, nargs="+", default=list(DEFAULT_LAYERS),
                        help="hidden states to probe: 0 = the embeddings, L = the last layer")
    parser.add_argument("--train-docs", type=int, default=3000, help="the probe trains on the first N train docs")
    parser.add_argument("--spans-key", default="sc", help="doc.spans key of the gold spans")
    parser.add_argument("--output", type=Path, default=None, help="default: results/probe/DATASET.json")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = parser().parse_args(argv)
    encoders = dict(spec.split("=", 1) for spec in args.encoder)
    if any(not Path(folder).is_dir() for folder in encoders.values()):
        raise SystemExit(f"--encoder: each FOLDER must be a model folder; got {encoders}")
    train = _read_docs(args.corpus / "train.spacy", args.train_docs)
    dev = _read_docs(args.corpus / "dev.spacy", 0)
    rows = []
    for name, folder in encoders.items():
        rows += probe_encoder(name, folder, train, dev, args.layers, args.spans_key)
        print(format_probe_table({"rows": rows}), flush=True)
    results = {"dataset": args.dataset, "corpus": str(args.corpus), "train_docs": len(train), "dev_docs": len(dev),
               "spans_key": args.spans_key, "probe_steps": PROBE_STEPS, "machine": machine_description(),
               "rows": rows}
    output = args.output or Path("results") / "probe" / f"{args.dataset}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2))
    return 0


def _read_docs(path: Path, limit: int) -> List[Doc]:
    docs = list(DocBin().from_disk(path).get_docs(Vocab()))
    return docs[:limit] if limit > 0 else docs


def probe_encoder(name: str, folder: str, train: List[Doc], dev: List[Doc], layers: List[int],
                  spans_key: str) -> List[Dict[str, Any]]:
    """One row per layer: the probe's dev P/R/F and the encoder's tokenisation of the dev docs."""
    start = time.perf_counter()
    train_features, _ = token_features(train, folder, layers)
    dev_features, tokenisation = token_features(dev, folder, layers)
    encode_seconds = time.perf_counter() - start
    train_tags, dev_gold = [bio_tags(doc, spans_key) for doc in train], [gold_spans(doc, spans_key) for doc in dev]
    tag_names = sorted({tag for tags in train_tags for tag in tags})
    targets = numpy.asarray([tag_names.index(tag) for tags in train_tags for tag in tags])
    rows = []
    for layer in layers:
        predicted = train_probe(train_features[layer], targets, len(tag_names))(dev_features[layer])
        scores = span_scores(decode(predicted, tag_names, [len(doc) for doc in dev]), dev_gold)
        rows.append({"encoder": name, "folder": str(folder), "layer": layer, **scores, **tokenisation,
                     "train_tokens": int(targets.size), "encode_seconds": encode_seconds})
    return rows


def token_features(docs: List[Doc], folder: str, layers: List[int],
                   batch_size: int = 32) -> Tuple[Dict[int, numpy.ndarray], Dict[str, float]]:
    """Each layer's vector of every token of `docs` (rows in doc order) and the tokenisation counts."""
    from transformers import AutoModel, AutoTokenizer

    tokenizer, model = AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder).eval()
    limit = model.config.max_position_embeddings - 2
    features: Dict[int, List[numpy.ndarray]] = {layer: [] for layer in layers}
    counts = numpy.zeros(4)  # tokens, pieces, unknown pieces, tokens sharing a piece
    for begin in range(0, len(docs), batch_size):
        batch = docs[begin:begin + batch_size]
        encoded = tokenizer([doc.text for doc in batch], return_offsets_mapping=True, padding=True,
                            return_special_tokens_mask=True, return_tensors="pt")
        if encoded["input_ids"].shape[1] > limit:
            raise ValueError(f"A doc has more than {limit} wordpieces; the probe reads whole docs (split them first).")
        offsets, special = encoded.pop("offset_mapping"), encoded.pop("special_tokens_mask")
        with torch.no_grad():
            hidden = model(**encoded, output_hidden_states=True).hidden_states
        for row, doc in enumerate(batch):
            real = (special[row] == 0) & (encoded["attention_mask"][row] == 1)
            pooling = _pooling_matrix(doc, offsets[row][real].tolist())
            for layer in layers:
                features[layer].append(pooling @ hidden[layer][row][real].numpy())
            unknown = int((encoded["input_ids"][row][real] == tokenizer.unk_token_id).sum())
            overlaps = (pooling > 0).astype("float32")
            sharing = int(((overlaps @ overlaps.T > 0).sum(1) > 1).sum())  # tokens joined to another by a piece
            counts += (len(doc), int(real.sum()), unknown, sharing)
    tokenisation = {"pieces_per_token": counts[1] / counts[0], "unknown_piece_share": counts[2] / counts[1],
                    "tokens_sharing_a_piece": counts[3] / counts[0]}
    return {layer: numpy.concatenate(rows) for layer, rows in features.items()}, tokenisation


def _pooling_matrix(doc: Doc, offsets: List[List[int]]) -> numpy.ndarray:
    """(tokens × pieces) weights: a token is the mean of the pieces whose characters overlap it."""
    pooling = numpy.zeros((len(doc), len(offsets)), dtype="float32")
    for i, token in enumerate(doc):
        end = token.idx + len(token.text)
        for j, (piece_start, piece_end) in enumerate(offsets):
            if piece_start < end and piece_end > token.idx:
                pooling[i, j] = 1.0
    return pooling / numpy.maximum(pooling.sum(1, keepdims=True), 1.0)


def gold_spans(doc: Doc, spans_key: str) -> set:
    """The gold spans a flat tagger can reach: the longest non-overlapping ones, as (start, end, label)."""
    return {(span.start, span.end, span.label_) for span in filter_spans(doc.spans[spans_key])}


def bio_tags(doc: Doc, spans_key: str) -> List[str]:
    tags = [OUTSIDE] * len(doc)
    for start, end, label in gold_spans(doc, spans_key):
        tags[start:end] = [f"B-{label}"] + [f"I-{label}"] * (end - start - 1)
    return tags


def train_probe(features: numpy.ndarray, targets: numpy.ndarray, n_tags: int, seed: int = 0):
    """A linear softmax on standardised features, full-batch Adam; returns the tag-index predictor."""
    torch.manual_seed(seed)
    inputs = torch.from_numpy(features)
    mean, std = inputs.mean(0), inputs.std(0) + 1e-6
    linear = torch.nn.Linear(features.shape[1], n_tags)
    optimizer = torch.optim.Adam(linear.parameters(), lr=PROBE_LEARN_RATE)
    gold = torch.from_numpy(targets)
    standardised = (inputs - mean) / std
    for _ in range(PROBE_STEPS):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(linear(standardised), gold).backward()
        optimizer.step()

    def predict(new_features: numpy.ndarray) -> numpy.ndarray:
        with torch.no_grad():
            return linear((torch.from_numpy(new_features) - mean) / std).argmax(1).numpy()

    return predict


def decode(predicted: numpy.ndarray, tag_names: List[str], lengths: List[int]) -> List[set]:
    """Per doc, the (start, end, label) spans of the predicted BIO tags (an I- after O starts a span)."""
    spans, begin = [], 0
    for length in lengths:
        tags = [tag_names[i] for i in predicted[begin:begin + length]]
        spans.append({(start, end + 1, label) for label, start, end in tags_to_entities(iob_to_biluo(tags))})
        begin += length
    return spans


def span_scores(predicted: List[set], gold: List[set]) -> Dict[str, float]:
    hits = sum(len(p & g) for p, g in zip(predicted, gold))
    n_predicted, n_gold = sum(map(len, predicted)), sum(map(len, gold))
    precision, recall = hits / max(n_predicted, 1), hits / max(n_gold, 1)
    return {"dev_p": precision, "dev_r": recall,
            "dev_f": 2 * precision * recall / (precision + recall) if hits else 0.0}


def format_probe_table(results: Dict[str, Any]) -> str:
    lines = ["| encoder | layer | dev P | dev R | dev F | pieces / token | unknown pieces | tokens sharing a piece |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for row in results["rows"]:
        lines.append(f"| {row['encoder']} | {row['layer']} | {row['dev_p'] * 100:.2f} | {row['dev_r'] * 100:.2f} | "
                     f"{row['dev_f'] * 100:.2f} | {row['pieces_per_token']:.3f} | "
                     f"{row['unknown_piece_share'] * 100:.2f} % | {row['tokens_sharing_a_piece'] * 100:.1f} % |")
    return "\n".join(lines)


def probe_sections(results_dir: Path) -> List[str]:
    """Heading, caption and table of each results/probe/*.json (written by `benchmark probe`)."""
    parts: List[str] = []
    for path in sorted((results_dir / "probe").glob("*.json")):
        results = json.loads(path.read_text())
        caption = (f"A linear softmax over BIO tags on each frozen layer's token vectors (mean of the overlapping "
                   f"wordpieces), trained on the first {results['train_docs']} train docs for {results['probe_steps']}"
                   f" full-batch Adam steps and scored on the {results['dev_docs']} dev docs (exact labelled span F1 "
                   f"against the longest non-overlapping gold spans). Layer 0 = the embeddings. "
                   f"Generated by `python -m spacy_egp.benchmark probe`.")
        parts += [f"### {results['dataset']}: what the frozen encoder knows (linear probe)", caption,
                  format_probe_table(results)]
    return parts

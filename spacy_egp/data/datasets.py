"""The datasets of ../shared/data/SPLITS.md: one table for fetch and convert.

Each entry says where the raw files live (the folder under ../shared/data),
their sha256 (those of the SOURCE.md files: the copies there are
byte-identical to upstream), the language, the input format and scheme of
``spacy_egp.convert``, and the train/dev/test splits of SPLITS.md.
"""

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Tuple, Union


@dataclass(frozen=True)
class Split:
    """One split: a raw file ("ARCHIVE.zip:MEMBER" for a zip member) and the records kept."""

    file: str
    select: Optional[str] = None  # written as in SPLITS.md, e.g. "i % 5 in 2,3,4"; None: all


@dataclass(frozen=True)
class Dataset:
    """A dataset of SPLITS.md: raw files with their sha256, format and splits."""

    name: str
    lang: str
    fmt: str  # a format of spacy_egp.convert
    folder: str  # folder name under ../shared/data
    files: Dict[str, str]  # raw file name -> sha256
    splits: Dict[str, Split]
    scheme: str = "bio"

    def raw_files(self) -> Tuple[str, ...]:
        """The names of the raw files, sorted."""
        return tuple(sorted(self.files))


# CLUENER's official release is a zip; `fetch` unpacks train.json and dev.json from it.
CLUENER_ZIP = "cluener_public.zip"

DATASETS: Dict[str, Dataset] = {
    "cluener": Dataset(
        "cluener", "zh", "cluener", "cluener",
        {
            "train.json": "b7e9f0802e86943c8af76f8375ae5ed00f15703484092e81579f241db4d0664a",
            "dev.json": "90036b59832e007c45d11eafe5ed80549f58a18a29aaa7fe8b1229622c69ec38",
        },
        # The official test set has no labels: dev is both dev and test (SPLITS.md).
        {"train": Split("train.json"), "dev": Split("dev.json"), "test": Split("dev.json")},
    ),
    "cmeee5k": Dataset(
        "cmeee5k", "zh", "cmeee", "cmeee",
        {"CMeEE_dev.json": "bbe6be016bdb1a418362507024902b70587b951a884cf4a96a6d1246822cd07c"},
        {
            "train": Split("CMeEE_dev.json", "i % 5 in 2,3,4"),
            "dev": Split("CMeEE_dev.json", "i % 5 == 1"),
            "test": Split("CMeEE_dev.json", "i % 5 == 0"),
        },
    ),
    "genia_small": Dataset(
        "genia_small", "en", "spans-jsonl", "genia",
        {
            "dev.jsonlines": "18deb63b0f86623c2881b1c91297b3cb86d60414b2b1acc60e0a97cc573cc8b1",
            "test.jsonlines": "d20ea84b8dfc707e9350196156af95581d0b53530d3bfbb842ac87eaf9005b6b",
        },
        {
            "train": Split("dev.jsonlines", "i % 10 != 0"),
            "dev": Split("dev.jsonlines", "i % 10 == 0"),
            "test": Split("test.jsonlines"),
        },
    ),
    "msra": Dataset(
        "msra", "zh", "bio", "msra",
        {"peopledaily.zip": "f969d47f52a3c9ab8c6ab7a4392f62529cb6059d65e7e964fe6d2666cc33dea1"},
        {
            "train": Split("peopledaily.zip:train.txt", "i % 10 != 0"),
            "dev": Split("peopledaily.zip:train.txt", "i % 10 == 0"),
            "test": Split("peopledaily.zip:dev.txt"),
        },
    ),
    "conll2003": Dataset(
        "conll2003", "en", "bio", "conll2003",
        {
            "eng.train": "eac0822f501353f265383ddf1edb0dcd42a1b6eefd3e383d7074db98c38eb41c",
            "eng.testa": "aedc4ccbd1ae9795feaa0e86fe72d195b0258abed9d705b630d1c889276fac1e",
            "eng.testb": "0632f32c090ef31c223135b7fee3187a7cf8e65c4015c7866bb7783428cdd9a6",
        },
        {"train": Split("eng.train"), "dev": Split("eng.testa"), "test": Split("eng.testb")},
        scheme="iob1",
    ),
}


# Datasets with relations, for the gplinker component: converted by the same
# code, kept apart from DATASETS (the NER benchmarks that fetch and the
# project's `dataset` variable cover).
RELATION_DATASETS: Dict[str, Dataset] = {
    "conll04": Dataset(
        "conll04", "en", "conll04", "conll04",
        {
            "train.json": "5f9e9d97c954a21da8929618cf9f1e2b408ff5f1a9936425e5785cbd3c54a380",
            "dev.json": "f35e81e68da81914286f37f9d66230e6be79f5ff82466438135a2c1873b4f660",
            "test.json": "6e5788026281f1678ab0d0dda64a304241574b5e7b806b57fe3e796a1acf95b9",
        },
        {"train": Split("train.json"), "dev": Split("dev.json"), "test": Split("test.json")},
    ),
}


def file_sha256(path: Union[str, Path]) -> str:
    """The sha256 of a file, as a hex string.

    path (Union[str, Path]): The file; read in blocks, so large files are fine.
    RETURNS (str): The hex digest.
    """
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()

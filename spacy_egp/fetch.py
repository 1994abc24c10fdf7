"""Put the raw files of one dataset into assets/DATASET/ (the project's `fetch` command).

    python -m spacy_egp.fetch DATASET --shared-data ../shared/data [--assets assets]

1. Offline machines: when SHARED_DATA/FOLDER holds the dataset's files (the
   layout of ../shared/data, see its SPLITS.md), they are copied into
   assets/DATASET/ (skipped when an identical copy is there) and checked
   against their sha256.
2. Otherwise the project's `assets` section is downloaded with
   `python -m weasel assets .` (every dataset; weasel checks the MD5
   checksums it lists); CLUENER's official zip is then unpacked into
   assets/cluener/train.json and dev.json.

Exit status 1 (with the reason) when the files are still missing afterwards.
"""

import argparse
import hashlib
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

# dataset -> (folder under ../shared/data, {file: sha256}); the sha256 are those
# of the SOURCE.md files (the copies there are byte-identical to upstream).
DATASETS = {
    "cluener": ("cluener", {
        "train.json": "b7e9f0802e86943c8af76f8375ae5ed00f15703484092e81579f241db4d0664a",
        "dev.json": "90036b59832e007c45d11eafe5ed80549f58a18a29aaa7fe8b1229622c69ec38",
    }),
    "cmeee5k": ("cmeee", {
        "CMeEE_dev.json": "bbe6be016bdb1a418362507024902b70587b951a884cf4a96a6d1246822cd07c",
    }),
    "genia_small": ("genia", {
        "dev.jsonlines": "18deb63b0f86623c2881b1c91297b3cb86d60414b2b1acc60e0a97cc573cc8b1",
        "test.jsonlines": "d20ea84b8dfc707e9350196156af95581d0b53530d3bfbb842ac87eaf9005b6b",
    }),
    "msra": ("msra", {
        "peopledaily.zip": "f969d47f52a3c9ab8c6ab7a4392f62529cb6059d65e7e964fe6d2666cc33dea1",
    }),
    "conll2003": ("conll2003", {
        "eng.train": "eac0822f501353f265383ddf1edb0dcd42a1b6eefd3e383d7074db98c38eb41c",
        "eng.testa": "aedc4ccbd1ae9795feaa0e86fe72d195b0258abed9d705b630d1c889276fac1e",
        "eng.testb": "0632f32c090ef31c223135b7fee3187a7cf8e65c4015c7866bb7783428cdd9a6",
    }),
}
CLUENER_ZIP = "cluener_public.zip"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def copy_from_shared(source: Path, dest: Path, files: dict) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for name, expected in files.items():
        target = dest / name
        if target.exists() and sha256(target) == expected:
            print(f"  {target}: already there")
            continue
        shutil.copyfile(source / name, target)
        if sha256(target) != expected:
            sys.exit(f"error: {source / name} does not have the sha256 of its SOURCE.md ({expected})")
        print(f"  {target}: copied from {source / name} (sha256 ok)")


def download(project_dir: Path, dataset: str, dest: Path) -> None:
    print(f"  no shared data: downloading the project's assets (python -m weasel assets {project_dir})")
    proc = subprocess.run([sys.executable, "-m", "weasel", "assets", str(project_dir)], check=False)
    if proc.returncode != 0:
        sys.exit(
            f"error: 'python -m weasel assets' failed with status {proc.returncode} (no internet? copy the "
            f"dataset's files into {dest}/, or point --vars.shared_data at a folder laid out like "
            f"../shared/data)"
        )
    if dataset == "cluener" and (dest / CLUENER_ZIP).exists():
        with zipfile.ZipFile(dest / CLUENER_ZIP) as archive:
            for name in ("train.json", "dev.json"):
                member = next((m for m in archive.namelist() if m.rsplit("/", 1)[-1] == name), None)
                if member is None:
                    sys.exit(f"error: {dest / CLUENER_ZIP} has no {name}")
                (dest / name).write_bytes(archive.read(member))
                print(f"  {dest / name}: unpacked from {CLUENER_ZIP}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", choices=sorted(DATASETS))
    parser.add_argument("--shared-data", default="../shared/data",
                        help="folder laid out like ../shared/data (used when it exists)")
    parser.add_argument("--assets", default="assets", help="the project's assets folder")
    parser.add_argument("--project-dir", default=".", help="the project folder (for weasel assets)")
    args = parser.parse_args()
    folder, files = DATASETS[args.dataset]
    dest = Path(args.assets) / args.dataset
    source = Path(args.shared_data) / folder
    print(f"fetch {args.dataset} -> {dest}")
    if all((source / name).is_file() for name in files):
        copy_from_shared(source, dest, files)
    elif all((dest / name).is_file() for name in files):
        print(f"  no {source}; the files are already in {dest}: nothing to download")
    else:
        download(Path(args.project_dir), args.dataset, dest)
    missing = [name for name in files if not (dest / name).is_file()]
    if missing:
        print(f"error: missing in {dest}: {', '.join(missing)} (no {source} and the download did not "
              f"provide them)", file=sys.stderr)
        return 1
    for name, expected in files.items():
        if sha256(dest / name) != expected:
            # e.g. CLUENER unpacked from the official zip: the SOURCE.md sha256 is that of the
            # copies in ../shared/data; report a difference instead of failing.
            print(f"  warning: {dest / name} differs from the copy described in SOURCE.md (sha256)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

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
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Dict

from .datasets import CLUENER_ZIP, DATASETS, file_sha256


def copy_from_shared(source: Path, dest: Path, files: Dict[str, str]) -> None:
    """Copy FILES (name -> sha256) from SOURCE into DEST, skipping identical copies; exit on a bad sha256."""
    dest.mkdir(parents=True, exist_ok=True)
    for name, expected in files.items():
        target = dest / name
        if target.exists() and file_sha256(target) == expected:
            print(f"  {target}: already there")
            continue
        shutil.copyfile(source / name, target)
        if file_sha256(target) != expected:
            sys.exit(f"error: {source / name} does not have the sha256 of its SOURCE.md ({expected})")
        print(f"  {target}: copied from {source / name} (sha256 ok)")


def download(project_dir: Path, dataset: str, dest: Path) -> None:
    """Download every asset of project.yml with weasel; unpack CLUENER's zip into DEST."""
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
    """The command line; RETURNS (int): the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", choices=sorted(DATASETS))
    parser.add_argument("--shared-data", default="../shared/data",
                        help="folder laid out like ../shared/data (used when it exists)")
    parser.add_argument("--assets", default="assets", help="the project's assets folder")
    parser.add_argument("--project-dir", default=".", help="the project folder (for weasel assets)")
    args = parser.parse_args()
    dataset = DATASETS[args.dataset]
    files = dataset.files
    dest = Path(args.assets) / dataset.name
    source = Path(args.shared_data) / dataset.folder
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
        if file_sha256(dest / name) != expected:
            # e.g. CLUENER unpacked from the official zip: the SOURCE.md sha256 is that of the
            # copies in ../shared/data; report a difference instead of failing.
            print(f"  warning: {dest / name} differs from the copy described in SOURCE.md (sha256)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

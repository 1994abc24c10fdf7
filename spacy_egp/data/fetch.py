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


class FetchError(Exception):
    """The dataset's files are still missing after copying or downloading."""


def fetch(name: str, shared_data: Path, assets: Path, project_dir: Path) -> Path:
    """Put the raw files of dataset NAME into ASSETS/NAME: copied from SHARED_DATA when it has them, else downloaded.

    RETURNS (Path): the folder with the files. Raises FetchError when some are still missing.
    """
    dataset = DATASETS[name]
    files = dataset.files
    dest = assets / dataset.name
    source = shared_data / dataset.folder
    print(f"fetch {name} -> {dest}")
    if all((source / file).is_file() for file in files):
        copy_from_shared(source, dest, files)
    elif all((dest / file).is_file() for file in files):
        print(f"  no {source}; the files are already in {dest}: nothing to download")
    else:
        download(project_dir, name, dest)
    missing = [file for file in files if not (dest / file).is_file()]
    if missing:
        raise FetchError(f"missing in {dest}: {', '.join(missing)} (no {source} and the download did not "
                         f"provide them)")
    for file, expected in files.items():
        if file_sha256(dest / file) != expected:
            # e.g. CLUENER unpacked from the official zip: the SOURCE.md sha256 is that of the
            # copies in ../shared/data; report a difference instead of failing.
            print(f"  warning: {dest / file} differs from the copy described in SOURCE.md (sha256)")
    return dest

"""Atomic artefact writes and content hashes.

A crash or Ctrl-C during a write never leaves a half-written artefact at the final path:
everything is written to a temporary file in the same folder and renamed into place.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from pathlib import Path
from typing import Iterator

from clca_deploy.errors import ClcaDeployError


def check_output_path(path: str | Path) -> Path:
    """The output path, if its folder exists and it is not a folder itself."""
    path = Path(path)
    if not path.parent.is_dir():
        raise ClcaDeployError(f"output folder {path.parent} does not exist; create it first (mkdir -p {path.parent}).")
    if path.is_dir():
        raise ClcaDeployError(f"output path {path} is a folder; give a file name such as {path / 'model.onnx'}.")
    return path


@contextlib.contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it into place only if the block succeeds."""
    path = check_output_path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


@contextlib.contextmanager
def atomic_folder(path: str | Path) -> Iterator[Path]:
    """``atomic_output`` for a folder: yield an empty folder beside ``path`` that replaces it
    (and whatever it held) only if the block succeeds."""
    path = Path(path)
    staging = path.with_name(f".{path.name}.{os.getpid()}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        yield staging
        if path.exists():
            retired = path.with_name(f".{path.name}.{os.getpid()}.old")
            os.replace(path, retired)
            os.replace(staging, path)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(staging, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def sha256_file(path: str | Path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_json(path: str | Path, data: object) -> Path:
    """Write ``data`` as indented JSON, atomically; returns the path."""
    import json

    text = json.dumps(data, indent=2) + "\n"
    with atomic_output(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)

"""Atomic artefact writes, output checks made before any work, and content hashes.

A crash or Ctrl-C during a write never leaves a half-written artefact at the final path:
everything is written to a temporary file in the same folder and renamed into place. The
temporaries get random names created exclusively (``mkstemp`` / ``mkdtemp``), so nothing
planted beside an output (a symlink at a guessable name) can redirect the write.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

from clca_deploy.errors import ClcaDeployError


def _nearest_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(os.sep)


def _probe_creating_files(folder: Path, what: str, advice: str) -> None:
    # os.access says yes to root everywhere, and knows nothing of /proc or full quotas: try it.
    try:
        handle, name = tempfile.mkstemp(dir=folder, prefix=".clca-deploy-probe.")
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ClcaDeployError(f"cannot create files in {what} {folder} (the system says: {reason}); {advice}.") from None
    os.close(handle)
    os.unlink(name)


def check_writable_folder(folder: str | Path, what: str = "output folder", advice: str = "choose another path") -> Path:
    """``folder`` if it exists, is a folder, and files can be created in it; else one clear error."""
    folder = Path(folder)
    if not folder.exists():
        blocker = _nearest_existing(folder)
        if not blocker.is_dir():
            raise ClcaDeployError(f"{what} {folder} cannot exist: {blocker} is a file, not a folder; {advice}.")
        raise ClcaDeployError(f"{what} {folder} does not exist; create it first (mkdir -p {folder}).")
    if not folder.is_dir():
        raise ClcaDeployError(f"{what} {folder} is a file, not a folder; {advice}.")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ClcaDeployError(f"cannot write to {what} {folder}: no write permission; {advice}.")
    _probe_creating_files(folder, what, advice)
    return folder


def check_output_folder(folder: str | Path, what: str = "output folder", advice: str = "choose another path") -> Path:
    """A folder a command will create (with its parents) if missing and write into: refused now if it cannot be."""
    folder = Path(folder)
    existing = _nearest_existing(folder)
    if not existing.is_dir():
        reason = "it is a file" if existing == folder else f"{existing} is a file"
        raise ClcaDeployError(f"{what} {folder} cannot be made: {reason}, not a folder; {advice}.")
    check_writable_folder(existing, what if existing == folder else f"{what} {folder}'s nearest existing folder", advice)
    return folder


def check_output_path(path: str | Path) -> Path:
    """The output path, if it can be written: its folder exists and is writable, and it is not a
    folder or a read-only file. Call it before the work that produces the output."""
    path = Path(path)
    check_writable_folder(path.parent)
    if path.is_dir():
        raise ClcaDeployError(f"output path {path} is a folder; give a file name such as {path / 'model.onnx'}.")
    if path.exists() and not os.access(path, os.W_OK):
        raise ClcaDeployError(f"output {path} exists and is read-only; choose another output path (or chmod u+w it).")
    return path


def _same_file(output: Path, source: Path) -> str | None:
    """How ``output`` is ``source`` (same path, through a symlink, a hard link), or None if it is not."""
    try:
        out_stat, source_stat = os.stat(output), os.stat(source)
    except OSError:  # one of them does not exist (yet): only the same path could still meet
        return "the same path" if output.resolve() == source.resolve() else None
    if (out_stat.st_dev, out_stat.st_ino) != (source_stat.st_dev, source_stat.st_ino):
        return None
    if os.path.abspath(output) == os.path.abspath(source):
        return "the same file"
    if output.resolve() == source.resolve():
        return "the same file through a symlink"
    return "a hard link of the same file"


def refuse_overwriting_inputs(outputs: Iterable[str | Path | None], inputs: Iterable[str | Path | None]) -> None:
    """Refuse, in one line, any output that is one of the inputs: the same path, a symlink to it or a
    hard link of it (st_dev/st_ino). Writing it would replace the input. ``None`` entries are skipped,
    so optional paths can be passed as they are; call it before any work."""
    sources = [Path(p) for p in inputs if p is not None]
    for output in (Path(p) for p in outputs if p is not None):
        for source in sources:
            how = _same_file(output, source)
            if how:
                raise ClcaDeployError(
                    f"output {output} is the input {source} ({how}); writing it would destroy that input. "
                    "Choose another output path."
                )


def _umask() -> int:
    umask = os.umask(0o022)  # the only way to read it is to set it; put it straight back
    os.umask(umask)
    return umask


def _file_mode() -> int:
    # mkstemp makes files 0600; an artefact gets what open() would give it: 0666 less the umask.
    return 0o666 & ~_umask()


@contextlib.contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Yield a new empty file beside ``path`` (random name, created exclusively); it replaces
    ``path`` only if the block succeeds, and is removed otherwise. Writers may reopen it by name."""
    path = check_output_path(path)
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(name)
    try:
        try:
            os.fchmod(handle, _file_mode())
        finally:
            os.close(handle)
        yield tmp
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


@contextlib.contextmanager
def atomic_folder(path: str | Path) -> Iterator[Path]:
    """``atomic_output`` for a folder: yield a new empty folder beside ``path`` that replaces it
    (and whatever it held) only if the block succeeds."""
    path = Path(os.path.abspath(path))
    staging = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial"))
    try:
        os.chmod(staging, 0o777 & ~_umask())  # mkdtemp's 0700 would hide a repository from a server's user
        yield staging
        _swap_in(staging, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _swap_in(staging: Path, path: Path) -> None:
    """Rename ``staging`` to ``path``; an existing ``path`` goes first into a fresh folder of its own
    (no guessable name to collide with) and is deleted only once the new one is in place."""
    if not path.exists() and not path.is_symlink():
        os.replace(staging, path)
        return
    holder = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".old"))
    retired = holder / path.name
    try:
        os.replace(path, retired)
    except BaseException:
        holder.rmdir()
        raise
    try:
        os.replace(staging, path)
    except BaseException:
        os.replace(retired, path)  # put the previous folder back before giving up
        holder.rmdir()
        raise
    shutil.rmtree(holder, ignore_errors=True)


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

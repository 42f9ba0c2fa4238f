"""Atomic artefact writes, output checks made before any work, stale-temporary sweeps, content hashes.

A crash or Ctrl-C during a write never leaves a half-written artefact at the final path:
everything is written to a temporary file in the same folder, flushed to the disk and renamed
into place. The temporaries get random names created exclusively (``mkstemp`` / ``mkdtemp``), so
nothing planted beside an output (a symlink at a guessable name) can redirect the write.

Only a missing path or a regular file is ever replaced: an output that is a folder, a device, a
FIFO, a socket or a symbolic link (to anything) is refused before any work, because renaming over
it would silently turn ``/dev/stdout`` or a named pipe into a plain file, and following a link
would let whoever planted it choose which file this (perhaps root) process overwrites.

A write that fails for want of space, quota or permission (ENOSPC, EDQUOT, EROFS, EFBIG, EIO,
EACCES, EPERM) is one ``WriteFailed`` line naming the folder and what to do; the previous
artefact is left as it was.

Temporaries are locked while their writer lives and swept once stale (``temporaries``).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Iterable, Iterator, NoReturn

from clca_deploy.errors import ClcaDeployError
from clca_deploy.temporaries import TAG, sweep_stale_temporaries, temporary_prefix, try_lock
from clca_deploy.terminal import printable

def _nearest_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(os.sep)


def _probe_creating_files(folder: Path, what: str, advice: str) -> None:
    # os.access says yes to root everywhere, and knows nothing of /proc or full quotas: try it.
    try:
        handle, name = tempfile.mkstemp(dir=folder, prefix=f".{TAG}-probe.")
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ClcaDeployError(
            f"cannot create files in {what} {printable(folder)} (the system says: {reason}); {advice}."
        ) from None
    os.close(handle)
    os.unlink(name)


def check_writable_folder(folder: str | Path, what: str = "output folder", advice: str = "choose another path") -> Path:
    """``folder`` if it exists, is a folder, and files can be created in it; else one clear error."""
    folder = Path(folder)
    shown = printable(folder)
    if not folder.exists():
        blocker = _nearest_existing(folder)
        if not blocker.is_dir():
            raise ClcaDeployError(f"{what} {shown} cannot exist: {printable(blocker)} is a file, not a folder; {advice}.")
        raise ClcaDeployError(f"{what} {shown} does not exist; create it first (mkdir -p {shown}).")
    if not folder.is_dir():
        raise ClcaDeployError(f"{what} {shown} is a file, not a folder; {advice}.")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ClcaDeployError(f"cannot write to {what} {shown}: no write permission; {advice}.")
    _probe_creating_files(folder, what, advice)
    return folder


def check_output_folder(folder: str | Path, what: str = "output folder", advice: str = "choose another path") -> Path:
    """A folder a command will create (with its parents) if missing and write into: refused now if it cannot be."""
    folder = Path(folder)
    existing = _nearest_existing(folder)
    if not existing.is_dir():
        reason = "it is a file" if existing == folder else f"{printable(existing)} is a file"
        raise ClcaDeployError(f"{what} {printable(folder)} cannot be made: {reason}, not a folder; {advice}.")
    check_writable_folder(existing, what if existing == folder else f"{what} {folder}'s nearest existing folder", advice)
    return folder


_KINDS = (
    (stat.S_ISREG, "a regular file"), (stat.S_ISDIR, "a folder"), (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
    (stat.S_ISLNK, "a symbolic link"),
)


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def _link_target_kind(path: Path) -> str:
    try:
        return _kind(os.stat(path).st_mode)  # stat only: opening a FIFO or a device could block or act
    except FileNotFoundError:
        return "nothing: the link is dangling"
    except OSError as exc:
        return f"something that cannot be inspected ({exc.strerror})"


def refuse_unsafe_output(path: str | Path, folder: bool = False) -> None:
    """Refuse, in one line, an existing output that a rename would destroy rather than update: anything
    but a regular file (a real folder where ``folder``), a symbolic link included. A missing path passes."""
    path = Path(path)
    try:
        mode = os.lstat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return  # nothing there to replace (a missing parent, or a file as parent, is the folder check's to name)
    except OSError as exc:
        raise ClcaDeployError(f"cannot inspect output {printable(path)} ({exc.strerror}); choose another output path.") from None
    wanted = stat.S_ISDIR if folder else stat.S_ISREG
    if wanted(mode):
        return
    shown = printable(path)
    if stat.S_ISLNK(mode):
        target = printable(os.readlink(path))
        raise ClcaDeployError(
            f"output {shown} is a symbolic link to {target} ({_link_target_kind(path)}); outputs are never written "
            "through a link nor put in its place: give the real path, or remove the link first."
        )
    if stat.S_ISDIR(mode):
        raise ClcaDeployError(f"output path {shown} is a folder; give a file name such as {printable(path / 'model.onnx')}.")
    if folder and stat.S_ISREG(mode):
        raise ClcaDeployError(f"{shown} is a file; give a folder for the output, not a file it would replace.")
    expected = "a folder" if folder else "a regular file"
    raise ClcaDeployError(
        f"output {shown} is {_kind(mode)}, not {expected}; writing would replace it. Choose another output path."
    )


def check_output_path(path: str | Path) -> Path:
    """The output path, if it can be written: its folder exists and is writable, and it is missing or a
    writable regular file (not a folder, device, FIFO, socket or link). Call it before the work."""
    path = Path(path)
    if str(path) == "-":
        # "-" means standard output by convention; a file named "-" is almost never what was meant.
        raise ClcaDeployError(
            "output '-' (standard output) is not supported here; give a file name "
            f"(for a file really named '-', give its full path: {printable(Path.cwd() / '-')})."
        )
    check_writable_folder(path.parent)
    refuse_unsafe_output(path)
    if path.exists() and not os.access(path, os.W_OK):
        raise ClcaDeployError(
            f"output {printable(path)} exists and is read-only; choose another output path (or chmod u+w it)."
        )
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
                    f"output {printable(output)} is the input {printable(source)} ({how}); writing it would destroy "
                    "that input. Choose another output path."
                )


# ---------------------------------------------------------------------------------------------
# write failures


class WriteFailed(ClcaDeployError):
    """An artefact could not be written (full disk, quota, read-only, permission); the old one is kept."""

    def __init__(self, message: str, path: Path, folder: Path) -> None:
        super().__init__(message)
        self.path = path
        self.folder = folder


# errno -> (what happened, what to do). The failures a user can fix from the message alone.
_WRITE_ERRORS = {
    errno.ENOSPC: ("no space left on the device holding", "free some space there or write to another file system"),
    errno.EDQUOT: ("your disk quota is exceeded in", "free some of your files there or write to another file system"),
    errno.EROFS: ("the file system is read-only at", "write to another folder"),
    errno.EFBIG: ("the file is too large for the file system (or for ulimit -f) at", "write to another file system"),
    errno.EIO: ("an input/output error (a failing disk or a lost network mount) in", "check that disk, then run again"),
    errno.EACCES: ("permission denied in", "check that folder's permissions or write to another folder"),
    errno.EPERM: ("the operation is not permitted in", "check that folder's permissions or write to another folder"),
}
# Permission errors also come from reading inputs; only these name-less or own-file ones are the write's.
_ANY_FILE = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG, errno.EIO}


def _is_ours(filename, ours: tuple[Path, ...]) -> bool:
    if filename is None:
        return True
    named = Path(os.fsdecode(filename))
    return any(named == own or own in named.parents for own in ours)


def write_failure(exc: OSError, path: Path, ours: tuple[Path, ...] = ()) -> WriteFailed | None:
    """The one-line ``WriteFailed`` for a write of ``path`` that raised ``exc``, or None when ``exc`` is
    no write failure of ``path`` (``ours``: the temporaries, whose names the system may report)."""
    if exc.errno not in _WRITE_ERRORS:
        return None
    if exc.errno not in _ANY_FILE and not _is_ours(exc.filename, (path, *ours)):
        return None
    what, advice = _WRITE_ERRORS[exc.errno]
    elsewhere = exc.filename is not None and not _is_ours(exc.filename, (path, *ours))
    folder = Path(os.fsdecode(exc.filename)).parent if elsewhere else path.parent
    kept = "what was there before is kept as it was" if os.path.lexists(path) else "nothing was written"
    return WriteFailed(f"could not write {printable(path)}: {what} {printable(folder)}; {advice} ({kept}).", path, folder)


# ---------------------------------------------------------------------------------------------
# temporaries: locked while written, swept when certainly stale


def _flush_to_disk(path: Path) -> None:
    # A full disk or quota may only show when the data reach the disk (NFS, delayed allocation):
    # found before the rename, the old artefact is still there.
    handle = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        os.fsync(handle)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP):
            raise  # only a file system that cannot sync at all is let through
    finally:
        os.close(handle)


def _sync_folder(folder: Path) -> None:
    with contextlib.suppress(OSError):  # durability of the rename only; some file systems refuse it
        handle = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(handle)
        finally:
            os.close(handle)


def _new_temporary(path: Path) -> tuple[int, Path]:
    """A new, locked, empty temporary file beside ``path`` with an artefact's usual mode."""
    try:
        handle, name = tempfile.mkstemp(dir=path.parent, prefix=temporary_prefix(path.name), suffix=".tmp")
    except OSError as exc:
        _raise_write_failure(exc, path, (path.parent,))
    try_lock(handle)  # before anything else: only a locked temporary may live longer than an instant
    try:
        os.fchmod(handle, 0o666 & ~_umask())  # mkstemp's 0600 -> what open() would give
    except BaseException:
        os.unlink(name)
        os.close(handle)
        raise
    return handle, Path(name)


def _raise_write_failure(exc: Exception, path: Path, ours: tuple[Path, ...]) -> NoReturn:
    """Raise the ``WriteFailed`` line ``exc`` stands for, or ``exc`` itself when it is no write failure."""
    if isinstance(exc, OSError):
        failure = write_failure(exc, path, ours)
    elif not isinstance(exc, ClcaDeployError) and _disk_full(path.parent):
        # Writers in C++ (torch.save, onnxruntime) report a full disk as a RuntimeError without errno.
        failure = write_failure(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), path)
    else:
        failure = None
    if failure is None:
        raise exc
    raise failure from exc


def _disk_full(folder: Path) -> bool:
    """True when the file system holding ``folder`` has (almost) no room left for this user."""
    try:
        info = os.statvfs(folder)
    except OSError:
        return False
    free = info.f_bfree if os.geteuid() == 0 else info.f_bavail  # root may use the reserved blocks
    # A zero total means "not counted" (btrfs inodes, some FUSE mounts), not "full".
    no_space = info.f_blocks > 0 and free * info.f_frsize < (1 << 20)
    return no_space or (info.f_files > 0 and info.f_favail == 0)


def _umask() -> int:
    umask = os.umask(0o022)  # the only way to read it is to set it; put it straight back
    os.umask(umask)
    return umask


@contextlib.contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Yield a new empty file beside ``path`` (random name, created exclusively, locked while in use);
    it replaces ``path`` only if the block succeeds, and is removed otherwise. Writers may reopen it
    by name. A full disk, quota or permission failure is one ``WriteFailed`` line."""
    path = check_output_path(path)
    sweep_stale_temporaries(path.parent, writing=path.name)
    handle, tmp = _new_temporary(path)
    try:
        try:
            yield tmp
            _flush_to_disk(tmp)
            refuse_unsafe_output(path)  # made a FIFO or a link while we wrote: still never replaced
            os.replace(tmp, path)
        except Exception as exc:
            _raise_write_failure(exc, path, (tmp,))
        _sync_folder(path.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        os.close(handle)  # the lock goes last: a temporary is never unlocked while it exists


@contextlib.contextmanager
def atomic_folder(path: str | Path) -> Iterator[Path]:
    """``atomic_output`` for a folder: yield a new empty folder beside ``path`` that replaces it
    (and whatever it held) only if the block succeeds. A link or a non-folder at ``path`` is refused."""
    path = Path(os.path.abspath(path))
    refuse_unsafe_output(path, folder=True)
    sweep_stale_temporaries(path.parent, writing=path.name)
    try:
        staging = Path(tempfile.mkdtemp(dir=path.parent, prefix=temporary_prefix(path.name), suffix=".partial"))
    except OSError as exc:
        _raise_write_failure(exc, path, (path.parent,))
    lock = os.open(staging, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try_lock(lock)
    try:
        os.chmod(staging, 0o777 & ~_umask())  # mkdtemp's 0700 would hide a repository from a server's user
        try:
            yield staging
            refuse_unsafe_output(path, folder=True)
            _swap_in(staging, path)
        except Exception as exc:
            _raise_write_failure(exc, path, (staging,))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        os.close(lock)


def _swap_in(staging: Path, path: Path) -> None:
    """Rename ``staging`` to ``path``; an existing ``path`` goes first into a fresh folder of its own
    (no guessable name to collide with) and is deleted only once the new one is in place."""
    if not path.exists() and not path.is_symlink():
        os.replace(staging, path)
        return
    holder = Path(tempfile.mkdtemp(dir=path.parent, prefix=temporary_prefix(path.name), suffix=".old"))
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

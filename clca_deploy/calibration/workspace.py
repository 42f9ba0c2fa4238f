"""A private scratch folder for the libraries calibration calls, so that none writes beside the user's files.

onnxruntime's quantizer writes ``<model>-inferred.onnx`` beside the model file it is given and deletes
it afterwards: a user's file of that name was lost, a symlink planted there redirected the write, two
calibrations of one model raced, and a model in a read-only folder failed. It also makes
``ort.quant.*`` folders in the system temporary folder, which a killed run leaves behind.

So each calibration gets one folder of its own (``mkdtemp``: a random name created exclusively, mode
0700, in the system temporary folder, ``TMPDIR``); the quantizer reads a copy of the checked model
inside it, writes its result there, and Python's ``tempfile`` points into it while the quantizer runs,
so its temporaries go with it. The folder is removed afterwards, and a folder a killed run left is
swept by the next run: only this user's, only once its process is gone and it is a day old.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator

from clca_deploy.errors import ClcaDeployError

PREFIX = "clca-deploy-calibrate."
# The process id in the name says whether its owner still runs; the age guards against a process of
# another PID namespace sharing this temporary folder (a container), where that test cannot see it.
STALE_AFTER_S = 24 * 3600
TMPDIR_ADVICE = "free space there or set TMPDIR to a folder with room"

# tempfile.tempdir is process-wide: two calibrations in threads of one process take turns.
_TEMPDIR_LOCK = threading.Lock()


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, under another user
        return True
    return True


def _is_stale(entry: os.DirEntry, now: float) -> bool:
    try:
        info = entry.stat(follow_symlinks=False)
        pid = int(entry.name[len(PREFIX):].split(".", 1)[0])
    except (OSError, ValueError):
        return False
    return (
        stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid()
        and now - info.st_mtime > STALE_AFTER_S and pid != os.getpid() and not _process_exists(pid)
    )


def sweep_stale(root: str | Path | None = None, now: float | None = None) -> list[Path]:
    """Remove the scratch folders killed calibrations left in ``root`` (the temporary folder); returns them."""
    root = Path(root or tempfile.gettempdir())
    now = time.time() if now is None else now
    swept = []
    with contextlib.suppress(OSError), os.scandir(root) as entries:
        for entry in entries:
            if entry.name.startswith(PREFIX) and _is_stale(entry, now):
                shutil.rmtree(entry.path, ignore_errors=True)  # rmtree never follows symlinks out of it
                swept.append(Path(entry.path))
    return swept


def _make_folder() -> Path:
    try:
        return Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}."))
    except OSError as exc:  # gettempdir raises FileNotFoundError when no temporary folder is usable
        raise ClcaDeployError(
            f"cannot make a private temporary folder in {exc.filename or 'the temporary folder'} "
            f"(the system says: {exc.strerror or exc}); {TMPDIR_ADVICE}."
        ) from None


@contextlib.contextmanager
def private_folder() -> Iterator[Path]:
    """A new 0700 folder for one calibration's scratch files, removed when the block ends; Python's
    ``tempfile`` (and so onnxruntime's ``ort.quant.*`` folders) points into it meanwhile."""
    folder = _make_folder()
    sweep_stale(folder.parent)
    try:
        with _TEMPDIR_LOCK:
            previous, tempfile.tempdir = tempfile.tempdir, str(folder)
            try:
                yield folder
            finally:
                tempfile.tempdir = previous
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def scratch_write_error(exc: Exception, folder: Path) -> ClcaDeployError | None:
    """The one-line error for a scratch write the system refused (full, quota, read-only), None for other
    errors. onnxruntime's C++ writers report a full disk without an errno, so the disk is asked too."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EFBIG):
        reason = exc.strerror
    elif _nearly_full(folder):
        reason = os.strerror(errno.ENOSPC)
    else:
        return None
    return ClcaDeployError(f"cannot write scratch files in {folder} (the system says: {reason}); {TMPDIR_ADVICE}.")


def _nearly_full(folder: Path) -> bool:
    try:
        return shutil.disk_usage(folder).free < (1 << 20)
    except OSError:
        return False

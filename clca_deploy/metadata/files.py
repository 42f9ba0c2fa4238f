"""Reading a file anyone may have put there: a regular file only (a FIFO blocks, a device never ends), and
never more than a bound set by the caller."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from clca_deploy.errors import ClcaDeployError


def _kind(mode: int) -> str:
    kinds = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a character device"),
             (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def _refuse_special(path: Path, mode: int, what: str, error: type[ClcaDeployError]) -> None:
    if not stat.S_ISREG(mode):
        raise error(f"{what} {path} is {_kind(mode)}, not a regular file; give the path of the file itself.")


def check_regular_file(path: str | Path, what: str = "model file", error: type[ClcaDeployError] = ClcaDeployError) -> Path:
    """``path`` if it is a regular file (or a link to one), else a clear error: a FIFO would block the
    reader until a writer comes, and a device such as /dev/zero never ends."""
    path = Path(path)
    try:
        mode = os.stat(path).st_mode  # stat, not open: opening a FIFO blocks
    except FileNotFoundError:
        raise error(f"{what} not found: {path}. Check the path.") from None
    except OSError as exc:
        raise error(f"cannot read {what} {path} ({exc.strerror or exc}).") from None
    _refuse_special(path, mode, what, error)
    return path


def _without_blocking(path: str, flags: int) -> int:
    # A FIFO opened for reading waits for a writer; without blocking it opens at once and fstat refuses it.
    return os.open(path, flags | getattr(os, "O_NONBLOCK", 0))


def read_regular_file(
    path: str | Path, what: str, limit: int, error: type[ClcaDeployError] = ClcaDeployError
) -> bytes:
    """The bytes of ``path``, a regular file of at most ``limit`` bytes, or a clear error.

    Opened without blocking and checked on the open descriptor, so a FIFO swapped in after a check is
    refused too; the read stops at the limit even if the file grows meanwhile.
    """
    path = Path(path)
    try:
        handle = open(path, "rb", opener=_without_blocking)
    except FileNotFoundError:
        raise error(f"{what} not found: {path}. Check the path.") from None
    except IsADirectoryError:  # open() itself refuses a folder
        _refuse_special(path, stat.S_IFDIR, what, error)
    except OSError as exc:
        raise error(f"cannot read {what} {path} ({exc.strerror or exc}).") from None
    with handle:
        info = os.fstat(handle.fileno())
        _refuse_special(path, info.st_mode, what, error)
        too_big = error(f"{what} {path} is larger than the {limit:,} bytes this tool reads from such a file; is it the right file?")
        if info.st_size > limit:
            raise too_big
        chunks, total = [], 0
        try:
            # Read what fstat announced (one chunk, no copy), then whatever a growing file added, up to the limit.
            while chunk := handle.read(min(max(info.st_size - total, 1 << 16), limit + 1 - total)):
                chunks.append(chunk)
                total += len(chunk)
                if total > limit:
                    raise too_big
        except OSError as exc:
            raise error(f"cannot read {what} {path} ({exc.strerror or exc}).") from None
    return b"".join(chunks)

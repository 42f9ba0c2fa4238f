"""The temporaries of atomic writes: their names, their locks, and the sweep of those a killed writer left.

A temporary is locked (``flock``) for as long as its writer lives. Those a killed writer left are
removed by the next write into the same folder, and only those certainly stale: named by this
module, a regular file (or folder) of this user, untouched for ``STALE_AFTER_S`` and not locked.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import stat
import time
from pathlib import Path

# The lock is what protects a live writer; the age only covers the instant between creating a
# temporary and locking it, and file systems where flock is not available.
STALE_AFTER_S = 3600
TAG = "clca-deploy"
_RANDOM = r"[a-z0-9_]{8}"  # mkstemp's and mkdtemp's random part
# .NAME.clca-deploy-XXXXXXXX.tmp (atomic_output), .partial (atomic_folder's staging folder), .old
# (the folder atomic_folder is replacing); re.S: a file name may hold a newline.
_TEMPORARY = re.compile(rf"\.(?P<target>.+)\.{TAG}-{_RANDOM}\.(?P<kind>tmp|partial|old)", re.S)
_PROBE = re.compile(rf"\.{TAG}-probe\.{_RANDOM}")
# Earlier versions wrote .NAME.XXXXXXXX.tmp: swept only beside the very NAME being written, where the
# name says whose it is (elsewhere the pattern could be another program's).
_LEGACY = re.compile(rf"\.(?P<target>.+)\.{_RANDOM}\.(?P<kind>tmp|partial)", re.S)
_MAX_PREFIX_BYTES = 200  # NAME_MAX is 255: the tag, the random part and the suffix must still fit


def temporary_prefix(name: str) -> str:
    """The name prefix of ``name``'s temporaries: hidden, tagged, short enough for NAME_MAX."""
    # A long output name must still leave room for the tag: mkstemp would fail with ENAMETOOLONG.
    while len(os.fsencode(name)) > _MAX_PREFIX_BYTES:
        name = name[:-1]
    return f".{name}.{TAG}-"


def _temporary_kind(name: str, writing: str | None) -> tuple[str, str] | None:
    """(kind, target) of a name this module gives its temporaries, or None for any other name."""
    if _PROBE.fullmatch(name):
        return "probe", ""
    match = _TEMPORARY.fullmatch(name)
    if not match and writing is not None:
        match = _LEGACY.fullmatch(name)
        if match and match["target"] != writing:
            match = None
    return (match["kind"], match["target"]) if match else None


def try_lock(handle: int) -> bool:
    """Take the lock on ``handle`` without waiting: False when someone holds it or this file system has
    no flock (a writer then goes on unlocked, the age still protecting its file; a sweeper leaves it)."""
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def _remove_if_stale(path: Path, kind: str, now: float, stale_after: float) -> bool:
    """Remove one temporary if it is certainly stale; True if it was removed."""
    try:
        info = os.lstat(path)
    except OSError:
        return False
    is_folder = kind in ("partial", "old")
    if not (stat.S_ISDIR if is_folder else stat.S_ISREG)(info.st_mode) or info.st_uid != os.geteuid():
        return False  # a link, a device, another user's file: never
    if now - info.st_mtime < stale_after:
        return False
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | (os.O_DIRECTORY if is_folder else 0)
    try:
        handle = os.open(path, flags)
    except OSError:
        return False
    try:
        opened = os.fstat(handle)
        if (opened.st_dev, opened.st_ino) != (info.st_dev, info.st_ino) or not try_lock(handle):
            return False  # replaced meanwhile, or a live writer holds it
        # Removed while we hold the lock: no writer can take it up in between.
        if is_folder:
            shutil.rmtree(path, ignore_errors=True)
        else:
            os.unlink(path)
    except OSError:
        return False
    finally:
        os.close(handle)
    return not os.path.lexists(path)


def sweep_stale_temporaries(
    folder: str | Path, writing: str | None = None, stale_after: float = STALE_AFTER_S, now: float | None = None,
) -> list[Path]:
    """Remove the temporaries killed writes of this tool left in ``folder``; returns them. ``writing``:
    the output name about to be written, whose temporaries of earlier versions go too."""
    folder = Path(folder)
    now = time.time() if now is None else now
    try:
        names = [entry.name for entry in os.scandir(folder) if entry.name.startswith(".")]
    except OSError:
        return []
    removed = []
    for name in sorted(names):
        found = _temporary_kind(name, writing)
        if found is None:
            continue
        kind, target = found
        # An .old folder whose output is missing holds the only copy of it (killed mid-swap): keep it.
        if kind == "old" and not os.path.lexists(folder / target):
            continue
        if _remove_if_stale(folder / name, kind, now, stale_after):
            removed.append(folder / name)
    return removed

"""The private work folder of a local Triton server, and the clean-up of folders a killed server left.

`serve` writes its model repository, PyTriton's workspace (a 22 MB copy of the server) and the
server log into ``<tmp>/clca-serve-<pid>-<random>``, removed when the server stops. A SIGKILL
(or a crash) skips that; the next start removes such folders, and only those that are certainly
stale: named by this module, owned by this user, their owner process gone (the PID in the name
is not running) and no process holding the folder's lock (a live server in another PID
namespace sharing /tmp still holds it, the kernel drops it when its holder dies).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import glob
import os
import re
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Callable, Iterator

PREFIX = "clca-serve-"
LOCK_FILE = "owner.lock"
# mkdtemp's random part is [a-z0-9_]: a folder of an older version (clca-serve-<random>) never matches.
_NAME = re.compile(rf"^{re.escape(PREFIX)}(?P<pid>\d+)-[a-z0-9_]+$")
# Files and folders the server writes are for this user only: the repository holds the model,
# the log its requests' errors, and Triton's Python backend shares tensors through /dev/shm.
PRIVATE_UMASK = 0o077


def pid_alive(pid: int) -> bool:
    """True if a process ``pid`` exists (ours or another user's)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, it is just not ours to signal
    return True


def _lock_held(folder: Path) -> bool:
    try:
        handle = os.open(folder / LOCK_FILE, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return False  # no lock file: killed before taking it, or never had one
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        return exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN)
    finally:
        os.close(handle)  # releases the lock we may just have taken
    return False


def is_stale(folder: Path, alive: Callable[[int], bool] = pid_alive) -> bool:
    """True only for a work folder of this user whose server is certainly gone."""
    match = _NAME.match(folder.name)
    if not match:
        return False
    try:
        info = os.lstat(folder)
    except OSError:
        return False
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():  # a link or another user's folder: never
        return False
    return not alive(int(match["pid"])) and not _lock_held(folder)


def remove_stale_workdirs(parent: str | Path | None = None, alive: Callable[[int], bool] = pid_alive) -> list[Path]:
    """Remove the work folders killed servers left in ``parent`` (the temp folder); returns them."""
    parent = Path(parent or tempfile.gettempdir())
    try:
        candidates = sorted(p for p in parent.iterdir() if p.name.startswith(PREFIX))
    except OSError:
        return []
    removed = []
    for folder in candidates:
        if is_stale(folder, alive):
            shutil.rmtree(folder, ignore_errors=True)
            if not folder.exists():
                removed.append(folder)
    return removed


@contextlib.contextmanager
def private_workdir(parent: str | Path | None = None) -> Iterator[Path]:
    """A new work folder (mode 0700, named with this PID and locked while in use), removed at the end."""
    folder = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir=parent))
    lock = os.open(folder / LOCK_FILE, os.O_CREAT | os.O_WRONLY | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        os.close(lock)


def restrict_shared_memory(prefix: str, folder: str | Path = "/dev/shm") -> list[Path]:
    """Make this user's POSIX shared-memory regions named ``prefix...`` readable by this user only; returns them.

    Triton's Python backend creates its regions through Boost.Interprocess, which sets mode 0644
    with fchmod after creating them, whatever the umask: the tensors of every request would be
    readable by any local user. The mode of a region can be changed while it is in use.
    """
    restricted = []
    try:
        entries = sorted(Path(folder).glob(f"{glob.escape(prefix)}*"))
    except OSError:
        return []
    for path in entries:
        try:
            info = os.lstat(path)
            if stat.S_ISREG(info.st_mode) and info.st_uid == os.getuid() and info.st_mode & 0o077:
                os.chmod(path, 0o600, follow_symlinks=False)
                restricted.append(path)
        except OSError:
            continue  # gone meanwhile, or not ours to change
    return restricted


@contextlib.contextmanager
def private_umask() -> Iterator[None]:
    """Files created meanwhile, by this process and the processes it starts, are for this user only.

    The umask is process-wide: hold this only around starting the server, not for its lifetime.
    """
    previous = os.umask(PRIVATE_UMASK)
    try:
        yield
    finally:
        os.umask(previous)

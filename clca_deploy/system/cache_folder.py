"""Where clca-deploy keeps its caches, what they hold, and trimming them.

One folder, one rule (:data:`LOCATION_RULE`): ``$CLCA_DEPLOY_CACHE`` if set, else
``$XDG_CACHE_HOME/clca-deploy`` (an absolute ``XDG_CACHE_HOME`` only: the XDG spec says a relative
one is ignored), else ``~/.cache/clca-deploy``. Each kind of cache has its subfolder, named by its
owner (``calibration/``); the owner also says which file names are its entries.

Scanning reads directory listings and ``lstat`` only, never a file's content, and follows no link
below the folder itself: an entry is a regular file, in its kind's subfolder, whose name its
owner's pattern matches. Everything else is counted as "other" and never removed. A set of 256
images at 448 px is about 0.6 GB, so a Jetson's eMMC fills fast: ``clca-deploy cache --trim``.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from clca_deploy.errors import ClcaDeployError

CACHE_ENV = "CLCA_DEPLOY_CACHE"
FOLDER_NAME = "clca-deploy"
LOCATION_RULE = f"${CACHE_ENV} if set, else $XDG_CACHE_HOME/{FOLDER_NAME}, else ~/.cache/{FOLDER_NAME}"
OTHER = "other"
_ADVICE = f"set {CACHE_ENV} to a folder"


@dataclass(frozen=True)
class CacheRoot:
    """The cache folder and the setting that chose it: ``CLCA_DEPLOY_CACHE``, ``XDG_CACHE_HOME`` or ``home``."""

    path: Path
    chosen_by: str


def cache_root(environ: Mapping[str, str] | None = None) -> CacheRoot:
    """The cache folder by :data:`LOCATION_RULE` (it need not exist yet)."""
    environ = os.environ if environ is None else environ
    if environ.get(CACHE_ENV):
        return CacheRoot(Path(os.path.abspath(os.path.expanduser(environ[CACHE_ENV]))), CACHE_ENV)
    xdg = environ.get("XDG_CACHE_HOME", "")
    if os.path.isabs(xdg):
        return CacheRoot(Path(xdg) / FOLDER_NAME, "XDG_CACHE_HOME")
    home = environ.get("HOME") or os.path.expanduser("~")  # no HOME: the password database's entry
    if not os.path.isabs(home):  # neither (an arbitrary container user)
        raise ClcaDeployError(f"no home folder to keep the cache in; set {CACHE_ENV} to a folder.")
    return CacheRoot(Path(home) / ".cache" / FOLDER_NAME, "home")


@dataclass(frozen=True)
class CacheEntry:
    """One file (or, for ``other``, a file or folder) in the cache folder."""

    kind: str  # a kind's subfolder name, or OTHER
    path: Path
    size: int  # bytes; a folder's: the files below it
    used: float  # modification time: when it was written, or last read for kinds that mark reads


@dataclass(frozen=True)
class CacheUsage:
    """What the cache folder holds: the kinds' entries and everything else."""

    root: CacheRoot
    exists: bool
    entries: tuple[CacheEntry, ...]  # recognised entries, least recently used first
    other: tuple[CacheEntry, ...]  # never removed by this tool
    kind_folders: tuple[Path, ...] = ()  # the kinds' subfolders that exist

    def per_kind(self, kinds: tuple[str, ...]) -> dict[str, tuple[int, int]]:
        """{kind: (entries, bytes)} for every kind in ``kinds`` (zeros included) and OTHER."""
        counts = {kind: (0, 0) for kind in (*kinds, OTHER)}
        for entry in (*self.entries, *self.other):
            number, size = counts.get(entry.kind, (0, 0))
            counts[entry.kind] = (number + 1, size + entry.size)
        return counts

    @property
    def entry_bytes(self) -> int:
        return sum(entry.size for entry in self.entries)

    @property
    def total_bytes(self) -> int:
        return self.entry_bytes + sum(entry.size for entry in self.other)


def scan_cache(root: CacheRoot, kinds: Mapping[str, re.Pattern]) -> CacheUsage:
    """What ``root`` holds; ``kinds``: {subfolder name: the pattern its entries' names fully match}."""
    try:
        info = os.stat(root.path)  # the folder itself may be a link (a cache moved to a bigger disk)
    except FileNotFoundError:
        return CacheUsage(root, False, (), ())
    except OSError as exc:
        raise ClcaDeployError(f"cannot read the cache folder {root.path} ({exc.strerror}); {_ADVICE}.") from None
    if not stat.S_ISDIR(info.st_mode):
        raise ClcaDeployError(f"the cache folder {root.path} is not a folder; {_ADVICE}.")
    found: list[CacheEntry | None] = []
    folders = []
    for item in _listing(root.path):
        pattern = kinds.get(item.name)
        if pattern is not None and item.is_dir(follow_symlinks=False):
            folders.append(Path(item.path))
            found += [_entry(child, item.name if _is_entry(child, pattern) else OTHER) for child in _listing(Path(item.path))]
        else:
            found.append(_entry(item, OTHER))
    entries = sorted((e for e in found if e is not None and e.kind != OTHER), key=lambda e: (e.used, str(e.path)))
    other = tuple(e for e in found if e is not None and e.kind == OTHER)
    return CacheUsage(root, True, tuple(entries), other, tuple(folders))



def _listing(folder: Path) -> list[os.DirEntry]:
    try:
        with os.scandir(folder) as items:
            return sorted(items, key=lambda item: item.name)
    except OSError as exc:
        raise ClcaDeployError(f"cannot list {folder} ({exc.strerror}); {_ADVICE} you can read.") from None


def _is_entry(item: os.DirEntry, pattern: re.Pattern) -> bool:
    return pattern.fullmatch(item.name) is not None and item.is_file(follow_symlinks=False)


def _entry(item: os.DirEntry, kind: str) -> CacheEntry | None:
    """The entry, or None when it went away while we looked (a calibration replacing its file)."""
    try:
        info = item.stat(follow_symlinks=False)
    except FileNotFoundError:
        return None
    size = _tree_size(Path(item.path)) if stat.S_ISDIR(info.st_mode) else info.st_size
    return CacheEntry(kind, Path(item.path), size, info.st_mtime)


def _tree_size(folder: Path) -> int:
    """Bytes of the files below ``folder``; links are counted as links, never followed."""
    total = 0
    for parent, folders, files in os.walk(folder, followlinks=False):
        for name in (*folders, *files):
            try:
                info = os.lstat(os.path.join(parent, name))
            except OSError:  # removed while we looked
                continue
            total += 0 if stat.S_ISDIR(info.st_mode) else info.st_size
    return total


@dataclass(frozen=True)
class Trimmed:
    """What ``trim_cache`` removed, and what it could not."""

    removed: tuple[CacheEntry, ...]
    failed: tuple[tuple[CacheEntry, str], ...]  # (entry, why)
    temporaries: tuple[Path, ...]  # stale half-written files of killed runs


def trim_cache(usage: CacheUsage, target_bytes: int) -> Trimmed:
    """Remove the least recently used entries until the entries take at most ``target_bytes``
    (0: all of them), and the stale temporaries a killed write left in the kinds' folders."""
    from clca_deploy.temporaries import sweep_stale_temporaries

    swept = tuple(path for folder in usage.kind_folders for path in sweep_stale_temporaries(folder))
    removed, failed, left = [], [], usage.entry_bytes
    for entry in usage.entries:  # least recently used first
        if left <= target_bytes:
            break
        try:
            os.unlink(entry.path)  # a regular file when scanned; a link put there since goes, not its target
        except FileNotFoundError:
            pass  # another trim, or the owner, got there first
        except OSError as exc:
            failed.append((entry, exc.strerror or str(exc)))
            continue
        removed.append(entry)
        left -= entry.size
    return Trimmed(tuple(removed), tuple(failed), swept)

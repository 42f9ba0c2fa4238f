"""The calibration cache: the preprocessed images of one calibration, so the next one decodes nothing.

The cache is an optimisation, never a dependency. A cache file is untrusted (anyone who can write the
cache folder, a full disk or a killed run may have made it):

- reading it: a file that fails to load or fails a check is ignored with a ``CalibrationCacheWarning``
  and the images are decoded again (the fresh set then replaces it). Checks, before anything is
  allocated from the file's say-so: a regular file (no symlink, FIFO or device) no larger than the
  set could be; an uncompressed .npz holding exactly our three arrays, CRC-checked; .npy headers read
  by numpy's own reader (bounded header, no object dtype: nothing is ever unpickled); the fingerprint
  stored inside equals the one computed for this data and preprocessing; images float32
  ``[n, 3, S, S]`` with ``1 <= n <= images asked for``; every value finite and one that the
  preprocessing can produce, ``(k / 255 - mean) / std`` for an integer ``k`` in 0..255.
- writing it: best effort. A cache folder that cannot be written, or a write that fails (full disk,
  quota, read-only), is a warning and calibration goes on; ``atomic_output`` leaves no partial file.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
import warnings
import zipfile
from pathlib import Path

import numpy as np

from clca_deploy.errors import ClcaDeployError
from clca_deploy.system.cache_folder import cache_root
from clca_deploy.terminal import printable

# Part of every fingerprint: bump when the file's layout changes, so older files are never read.
CACHE_FORMAT = "npz-3"
MEMBERS = ("fingerprint.npy", "images.npy", "skipped.npy")
MAX_NPY_HEADER = 4096  # ours are about 128 bytes
# A skipped entry is a path (PATH_MAX 4096 bytes, JSON-escaped: up to 6 characters a byte) and a reason.
SKIPPED_BYTES_PER_RECORD = 64 << 10
CHUNK = 16 << 20
CACHE_ADVICE = "set CLCA_DEPLOY_CACHE to another folder, or pass --no-cache"
# The cache folder's subfolder and the names of its entries, <fingerprint>.npz (batches.py names them: the
# first 32 hex digits of a SHA-256); `clca-deploy cache` counts and removes these files and nothing else.
CACHE_KIND = "calibration"
ENTRY_NAME = re.compile(r"[0-9a-f]{32}\.npz")


class CalibrationCacheWarning(UserWarning):
    """The calibration cache could not be read or saved; calibration went on without it."""


class _Unusable(Exception):
    """Why a cache file is not used."""


def cache_dir() -> Path:
    """The calibration cache folder: ``calibration/`` in the cache folder (system.cache_folder.LOCATION_RULE)."""
    return cache_root().path / CACHE_KIND


def refuse_impossible_cache_folder() -> None:
    """A cache folder that cannot exist (a file in its way) is a bad setting: refused in one line."""
    folder = cache_dir()
    blocker = next((p for p in (folder, *folder.parents) if p.exists() or p.is_symlink()), None)
    if blocker is not None and not blocker.is_dir():
        raise ClcaDeployError(
            f"calibration cache folder {folder} cannot be made: {blocker} is not a folder; {CACHE_ADVICE}."
        )


def cache_folder_writable() -> bool:
    """True if a new cache can be saved; a folder that cannot be written now (permissions, read-only,
    full) is only a warning: calibration goes on and the set is not saved."""
    from clca_deploy.artifacts import check_output_folder

    try:
        check_output_folder(cache_dir(), "calibration cache folder", advice=CACHE_ADVICE)
    except ClcaDeployError as exc:
        _warn(f"{str(exc).rstrip('.')}. Calibrating without saving the cache.")
        return False
    return True


def _warn(message: str) -> None:
    warnings.warn(message, CalibrationCacheWarning, stacklevel=3)


def read_cache(path: Path, fingerprint: str, preprocess, max_images: int, records: int):
    """(images, skipped) from a cache file that passes every check; None (with a warning, unless there
    is no file at all) otherwise. ``preprocess`` is the PreprocessConfig the images were made with."""
    try:
        handle = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as exc:
        _warn(f"ignoring the calibration cache {path} ({exc.strerror or exc}); decoding the images again.")
        return None
    if not stat.S_ISREG(os.fstat(handle).st_mode):  # a folder or FIFO: fdopen or a read would fail or block
        os.close(handle)
        _warn(f"ignoring the calibration cache {path} (not a regular file); decoding the images again.")
        return None
    with os.fdopen(handle, "rb") as file:
        try:
            found = _read_checked(file, fingerprint, preprocess, max_images, records)
            _mark_used(file)
            return found
        # Whatever failed, the answer is the same: decode again. The cache only ever saves time.
        except Exception as exc:  # noqa: BLE001
            reason = printable(str(exc) if isinstance(exc, _Unusable) else f"{type(exc).__name__}: {exc}")[:300]
            _warn(f"ignoring the calibration cache {path} ({reason}); decoding the images again.")
            return None


def _mark_used(file) -> None:
    """Set the file's modification time to now, so that `clca-deploy cache --trim` removes the sets
    least recently used, not least recently written; a cache folder we cannot write keeps its times."""
    try:
        os.utime(file.fileno())
    except OSError:
        pass


def _read_checked(file, fingerprint: str, preprocess, max_images: int, records: int):
    size = preprocess.img_size
    limit = 4 * max_images * 3 * size * size + SKIPPED_BYTES_PER_RECORD * records + (64 << 10)
    info = os.fstat(file.fileno())
    if info.st_size > limit:
        raise _Unusable(f"{info.st_size} bytes, more than a cache of {max_images} images can hold")
    with zipfile.ZipFile(file) as archive:
        members = {member.filename: member for member in archive.infolist()}
        if sorted(members) != sorted(MEMBERS) or len(archive.infolist()) != len(MEMBERS):
            raise _Unusable(f"holds {sorted(members)[:5]}, not {list(MEMBERS)}")
        stored = np.asarray(_load_member(archive, members["fingerprint.npy"], limit))
        if stored.dtype.kind != "U" or stored.shape != () or str(stored) != fingerprint:
            raise _Unusable("made for other images or settings")
        images = _load_member(archive, members["images.npy"], limit)
        skipped = _load_member(archive, members["skipped.npy"], limit)
    _check_images(images, preprocess, max_images)
    return images, _parse_skipped(skipped, records)


def _npy_header(stream) -> tuple[tuple[int, ...], bool, np.dtype]:
    version = np.lib.format.read_magic(stream)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(stream, max_header_size=MAX_NPY_HEADER)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(stream, max_header_size=MAX_NPY_HEADER)
    raise _Unusable(f"unsupported .npy version {version}")


def _load_member(archive: zipfile.ZipFile, member: zipfile.ZipInfo, limit: int) -> np.ndarray:
    """One .npy member, allocated only once its header agrees with its stored size; CRC-checked."""
    if member.compress_type != zipfile.ZIP_STORED or member.file_size != member.compress_size:
        raise _Unusable(f"{member.filename} is compressed; this tool writes plain members")
    if member.file_size > limit:
        raise _Unusable(f"{member.filename} is larger than a cache can be")
    with archive.open(member) as stream:
        shape, fortran_order, dtype = _npy_header(stream)
        if dtype.hasobject or fortran_order:
            raise _Unusable(f"{member.filename} is not a plain numeric array")
        payload = member.file_size - stream.tell()
        if math.prod(shape) * dtype.itemsize != payload:
            raise _Unusable(f"{member.filename} declares {shape} but stores {payload} bytes")
        array = np.empty(shape, dtype)
        view = memoryview(array.reshape(-1).view(np.uint8))
        for start in range(0, payload, CHUNK):  # chunks: never a second full-size copy in memory
            chunk = stream.read(min(CHUNK, payload - start))
            if len(chunk) != min(CHUNK, payload - start):
                raise _Unusable(f"{member.filename} is truncated")
            view[start : start + len(chunk)] = chunk
        if stream.read(1):  # also where zipfile checks the CRC
            raise _Unusable(f"{member.filename} is longer than its header says")
    return array


def _check_images(images: np.ndarray, preprocess, max_images: int) -> None:
    size = preprocess.img_size
    if images.dtype != np.float32 or images.ndim != 4 or images.shape[1:] != (3, size, size):
        raise _Unusable(f"images are {images.dtype} {images.shape}, not float32 [n, 3, {size}, {size}]")
    if not 1 <= images.shape[0] <= max_images:
        raise _Unusable(f"{images.shape[0]} images, not 1 to {max_images}")
    mean = np.asarray(preprocess.mean, dtype=np.float32).astype(np.float64)[:, None, None]
    std = np.asarray(preprocess.std, dtype=np.float32).astype(np.float64)[:, None, None]
    for index, image in enumerate(images):  # one image at a time: the float64 copy stays small
        if not np.isfinite(image).all():
            raise _Unusable(f"image {index} holds NaN or infinite values")
        levels = (image * std + mean) * 255.0  # the 8-bit level each value was made from
        if levels.min() < -0.5 or levels.max() > 255.5 or np.abs(levels - np.rint(levels)).max() > 0.01:
            raise _Unusable(f"image {index} holds values the preprocessing cannot produce")


def _parse_skipped(array: np.ndarray, records: int) -> tuple[tuple[str, str], ...]:
    if array.dtype != np.uint8 or array.ndim != 1:
        raise _Unusable("the list of skipped images is damaged")
    pairs = json.loads(array.tobytes().decode("utf-8"))
    if (
        not isinstance(pairs, list) or len(pairs) > records
        or not all(isinstance(p, list) and len(p) == 2 and all(isinstance(s, str) for s in p) for p in pairs)
    ):
        raise _Unusable("the list of skipped images is damaged")
    return tuple((path, reason) for path, reason in pairs)


def write_cache(path: Path, fingerprint: str, images: np.ndarray, skipped: tuple) -> bool:
    """Save the set at ``path`` if possible; a failure is a warning (the cache is optional). True if saved."""
    from clca_deploy.artifacts import atomic_output

    # ensure_ascii: file names that are not UTF-8 (surrogate escapes) are stored as \\udcXX, not refused.
    text = np.frombuffer(json.dumps([list(pair) for pair in skipped]).encode("ascii"), dtype=np.uint8)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_output(path) as tmp, open(tmp, "wb") as handle:
            np.savez(handle, fingerprint=np.array(fingerprint), images=images, skipped=text)
    except (OSError, ClcaDeployError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        _warn(f"could not save the calibration cache {path} ({reason}); calibration goes on without it.")
        return False
    return True


"""Calibration images: leaf images through the evaluation preprocessing, cached on disk.

The cache key hashes the model's preprocessing, the image list (paths, sizes, mtimes) and
the image count, so a second calibration of the same model family on the same data does
not decode a single image again, and any change to the data invalidates it. The cache file
itself is untrusted and optional: ``cache.py`` says how it is checked and when it is skipped.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clca_deploy.calibration.cache import (
    CACHE_FORMAT, cache_dir, cache_folder_writable, read_cache, refuse_impossible_cache_folder, write_cache,
)
from clca_deploy.errors import ClcaDeployError

# Below this, activation ranges come from too few images to be trusted.
RECOMMENDED_MIN_IMAGES = 64


@dataclass(frozen=True)
class CalibrationSet:
    images: np.ndarray  # [N, 3, S, S] float32, preprocessed
    skipped: tuple[tuple[str, str], ...]  # (path, reason) of unreadable images
    cache_path: Path | None
    from_cache: bool


# Part of the cache key: bump when the choice of images changes, so old caches are not reused.
SELECTION_VERSION = "spread-v2"


def _fingerprint(dataset, preprocess: dict, num_images: int) -> str:
    digest = hashlib.sha256(json.dumps(preprocess, sort_keys=True).encode())
    digest.update(f"{SELECTION_VERSION}|{CACHE_FORMAT}|{num_images}".encode())
    for record in dataset.records:
        try:
            stat = record.path.stat()
            state = f"{stat.st_size}|{stat.st_mtime_ns}"
        except OSError:  # gone or unreadable since the listing: it will be skipped, and the key says so
            state = "unreadable"
        # File names are bytes to the system: fsencode takes names that are not UTF-8 as they are.
        digest.update(os.fsencode(os.path.abspath(record.path)) + f"|{state}\n".encode())
    return digest.hexdigest()[:32]


def spread_order(records: tuple, count: int) -> tuple:
    """``count`` records evenly spaced over the whole (class-sorted) list first, then the rest.

    Taking the first ``count`` records would calibrate on the first classes only; the rest
    follow so that unreadable files are replaced by readable ones.
    """
    total = len(records)
    if count >= total:
        return tuple(records)
    chosen = [(i * total) // count for i in range(count)]
    picked = set(chosen)
    return tuple(records[i] for i in chosen) + tuple(r for i, r in enumerate(records) if i not in picked)


def _memory_budget() -> int | None:
    """Bytes this process may use: physical memory, or the address-space limit if lower; None if unknown."""
    budgets = []
    try:
        budgets.append(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        pass
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft != resource.RLIM_INFINITY:
            budgets.append(soft)
    except (ImportError, ValueError, OSError):
        pass
    return min(budgets) if budgets else None


def check_set_fits(count: int, img_size: int) -> None:
    """Refuse, before decoding, a calibration set that could not be held in memory (it is held whole,
    and decoding it briefly needs a second copy)."""
    needed = count * 3 * img_size * img_size * 4
    budget = _memory_budget()
    if budget is not None and 2 * needed > budget:
        raise ClcaDeployError(
            f"{count} calibration images of {img_size}x{img_size} px take {needed / 2**30:.1f} GiB as float32, "
            f"more than half of the {budget / 2**30:.1f} GiB this process may use; pass a smaller --num-images."
        )


def calibration_images(
    data: str | Path, preprocess: dict, num_images: int = 256, csv: str | None = None, image_folder: str | None = None,
    use_cache: bool = True, progress: bool = False, warn_below: int = RECOMMENDED_MIN_IMAGES,
) -> CalibrationSet:
    """Up to ``num_images`` preprocessed images from ``data`` (ImageFolder, CSV split or flat folder);
    fewer than ``warn_below`` decoded warn (ranges from few images are unreliable)."""
    from clca_deploy.data import PreprocessConfig, open_dataset

    if num_images < 1:
        raise ClcaDeployError(f"--num-images must be at least 1, got {num_images}.")
    config = PreprocessConfig.from_dict(preprocess)
    dataset = open_dataset(data, csv=csv, image_folder=image_folder)
    count = min(num_images, len(dataset.records))
    check_set_fits(count, config.img_size)
    if not use_cache:
        return _decode(dataset, config, num_images, progress, None, warn_below)
    refuse_impossible_cache_folder()
    fingerprint = _fingerprint(dataset, config.to_dict(), num_images)
    path = cache_dir() / f"{fingerprint}.npz"
    cached = read_cache(path, fingerprint, config, count, len(dataset.records))
    if cached is not None:
        return CalibrationSet(cached[0], cached[1], path, from_cache=True)
    writable = cache_folder_writable()  # before any image is decoded, not when the cache is written after them
    return _decode(dataset, config, num_images, progress, (path, fingerprint) if writable else None, warn_below)


def _decode(dataset, config, num_images: int, progress: bool, cache: tuple[Path, str] | None, warn_below: int) -> CalibrationSet:
    """Decode and preprocess the spread-out records; save the set to ``cache`` (path, fingerprint) if given."""
    from clca_deploy.data import iter_batches

    records = spread_order(dataset.records, num_images)
    subset = type(dataset)(records=records, class_names=dataset.class_names, root=dataset.root, kind=dataset.kind)
    reader = iter_batches(subset, config, 32, limit=num_images, progress=progress)
    images = np.concatenate([batch.images for batch in reader])
    skipped = tuple((str(s.path), s.reason) for s in reader.skipped)
    if len(images) < warn_below:
        warnings.warn(
            f"calibrating on only {len(images)} images; activation ranges from fewer than "
            f"{RECOMMENDED_MIN_IMAGES} are unreliable (a few hundred are better).",
            stacklevel=3,
        )
    saved = cache is not None and write_cache(cache[0], cache[1], images, skipped)
    return CalibrationSet(images, skipped, cache[0] if saved else None, from_cache=False)

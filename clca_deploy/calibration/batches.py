"""Calibration images: leaf images through the evaluation preprocessing, cached on disk.

The cache key hashes the model's preprocessing, the image list (paths, sizes, mtimes) and
the image count, so a second calibration of the same model family on the same data does
not decode a single image again, and any change to the data invalidates it.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clca_deploy.errors import ClcaDeployError

# Below this, activation ranges come from too few images to be trusted.
RECOMMENDED_MIN_IMAGES = 64


def cache_dir() -> Path:
    root = os.environ.get("CLCA_DEPLOY_CACHE") or Path.home() / ".cache" / "clca-deploy"
    return Path(root) / "calibration"


def check_cache_folder() -> Path:
    """The cache folder, refused in one line now if it cannot be made or written."""
    from clca_deploy.artifacts import check_output_folder

    return check_output_folder(
        cache_dir(), "calibration cache folder", advice="set CLCA_DEPLOY_CACHE to another folder, or pass --no-cache"
    )


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
    digest.update(SELECTION_VERSION.encode())
    digest.update(str(num_images).encode())
    for record in dataset.records:
        stat = record.path.stat()
        digest.update(f"{record.path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
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


def calibration_images(
    data: str | Path, preprocess: dict, num_images: int = 256, csv: str | None = None, image_folder: str | None = None,
    use_cache: bool = True, progress: bool = False,
) -> CalibrationSet:
    """Up to ``num_images`` preprocessed images from ``data`` (ImageFolder, CSV split or flat folder)."""
    from clca_deploy.data import PreprocessConfig, iter_batches, open_dataset

    if num_images < 1:
        raise ClcaDeployError(f"--num-images must be at least 1, got {num_images}.")
    dataset = open_dataset(data, csv=csv, image_folder=image_folder)
    path = cache_dir() / f"{_fingerprint(dataset, preprocess, num_images)}.npz"
    if use_cache and path.exists():
        with np.load(path) as cached:
            skipped = tuple(tuple(pair) for pair in json.loads(str(cached["skipped"])))
            return CalibrationSet(cached["images"], skipped, path, from_cache=True)
    if use_cache:
        check_cache_folder()  # before any image is decoded, not when the cache is written after them
    records = spread_order(dataset.records, num_images)
    subset = type(dataset)(records=records, class_names=dataset.class_names, root=dataset.root, kind=dataset.kind)
    reader = iter_batches(subset, PreprocessConfig.from_dict(preprocess), 32, limit=num_images, progress=progress)
    images = np.concatenate([batch.images for batch in reader])
    skipped = tuple((str(s.path), s.reason) for s in reader.skipped)
    if len(images) < RECOMMENDED_MIN_IMAGES:
        warnings.warn(
            f"calibrating on only {len(images)} images; activation ranges from fewer than "
            f"{RECOMMENDED_MIN_IMAGES} are unreliable (a few hundred are better).",
            stacklevel=2,
        )
    if use_cache:
        from clca_deploy.artifacts import atomic_output

        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_output(path) as tmp:
            with open(tmp, "wb") as handle:
                np.savez(handle, images=images, skipped=json.dumps(skipped))
    return CalibrationSet(images, skipped, path if use_cache else None, from_cache=False)

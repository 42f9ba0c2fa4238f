"""Splits of the leaves, as symlinks: a validation split, or the folds of a cross-validation.

The placement search judges INT8 placements on images the model never trained on (`calibrate
--held-out-data`): a trained model is surer of its training images, so they overstate agreement.
The leaves ship train/ and test/ only; by default this makes ROOT/train (3 in 4 scans), ROOT/val
(1 in 4) and ROOT/test (the original test/), so models trained on ROOT/train leave ROOT/val unseen.

With ``--folds K --fold I`` the 570 scans (train/ and test/ pooled, per class in name order) are
dealt into K folds, scan j of a class into fold j mod K: ROOT/test is fold I, and the other folds
are split 3:1 into ROOT/train and ROOT/val as above. Over I = 0..K-1 every scan is a test scan
exactly once, so agreement can be judged on all 570 scans instead of the 180 of the shipped test/:
with 180, one flipped scan moves agreement by 0.56 points and 99.5% means no flip at all.

    python benchmarks/leaves_split.py ../shared/data/leaves runs/leaves
    python benchmarks/leaves_split.py ../shared/data/leaves runs/fold0 --folds 3 --fold 0
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def _link(image: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists():
        os.symlink(image.resolve(), target)


def split(source: Path, root: Path) -> dict[str, int]:
    counts = {"train": 0, "val": 0}
    for folder in sorted(p for p in (source / "train").iterdir() if p.is_dir()):
        for index, image in enumerate(sorted(folder.iterdir())):
            part = "val" if index % 4 == 3 else "train"
            _link(image, root / part / folder.name / image.name)
            counts[part] += 1
    if not (root / "test").exists():
        os.symlink((source / "test").resolve(), root / "test")
    return counts


def split_fold(source: Path, root: Path, folds: int, fold: int) -> dict[str, int]:
    """ROOT/test = fold ``fold`` of ``folds``; the rest 3:1 into ROOT/train and ROOT/val."""
    counts = {"train": 0, "val": 0, "test": 0}
    classes = sorted({p.name for part in ("train", "test") for p in (source / part).iterdir() if p.is_dir()})
    for name in classes:
        scans = sorted((p for part in ("train", "test") for p in (source / part / name).iterdir()), key=lambda p: p.name)
        rest = 0
        for index, image in enumerate(scans):
            if index % folds == fold:
                part = "test"
            else:
                part = "val" if rest % 4 == 3 else "train"
                rest += 1
            _link(image, root / part / name / image.name)
            counts[part] += 1
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="The leaves, with train/ and test/.")
    parser.add_argument("root", type=Path, help="Where train/, val/ and test/ are made.")
    parser.add_argument("--folds", type=int, help="Deal the scans into this many folds (cross-validation).")
    parser.add_argument("--fold", type=int, default=0, help="Which fold is ROOT/test (0-based).")
    args = parser.parse_args()
    if args.folds is None:
        print(split(args.source, args.root))
    elif not 0 <= args.fold < args.folds:
        parser.error(f"--fold must be in 0..{args.folds - 1}")
    else:
        print(split_fold(args.source, args.root, args.folds, args.fold))


if __name__ == "__main__":
    main()

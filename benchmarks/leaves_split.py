"""A validation split for the leaves: every fourth training scan of each class, as symlinks.

The placement search judges INT8 placements on images the model never trained on (`calibrate
--held-out-data`): a trained model is surer of its training images, so they overstate agreement.
The leaves ship train/ and test/ only; this makes ROOT/train (3 in 4 scans), ROOT/val (1 in 4) and
ROOT/test (the original test/), so models trained on ROOT/train leave ROOT/val unseen.

    python benchmarks/leaves_split.py ../shared/data/leaves runs/leaves
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def split(source: Path, root: Path) -> dict[str, int]:
    counts = {"train": 0, "val": 0}
    for folder in sorted(p for p in (source / "train").iterdir() if p.is_dir()):
        for index, image in enumerate(sorted(folder.iterdir())):
            part = "val" if index % 4 == 3 else "train"
            target = root / part / folder.name / image.name
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.exists():
                os.symlink(image.resolve(), target)
            counts[part] += 1
    if not (root / "test").exists():
        os.symlink((source / "test").resolve(), root / "test")
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="The leaves, with train/ and test/.")
    parser.add_argument("root", type=Path, help="Where train/, val/ and test/ are made.")
    args = parser.parse_args()
    print(split(args.source, args.root))


if __name__ == "__main__":
    main()

"""A tiny labelled ImageFolder tree for training tests (coloured shapes, so it is learnable)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def write_image_folder(root: Path, classes: int, per_class: int, size: int = 48, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for c in range(classes):
        folder = root / f"class_{c:02d}"
        folder.mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
            pixels[:, :, c % 3] += np.uint8(120 + 10 * (c // 3))
            Image.fromarray(pixels).save(folder / f"img_{i:03d}.png")
    return root


@pytest.fixture(scope="session")
def tiny_splits(tmp_path_factory) -> Path:
    """root/train (3 classes x 8) and root/test (3 x 3)."""
    root = tmp_path_factory.mktemp("tiny_leaves")
    write_image_folder(root / "train", classes=3, per_class=8, seed=0)
    write_image_folder(root / "test", classes=3, per_class=3, seed=1)
    return root

"""Writing the synthetic cultivar dataset as an ImageFolder train/test split, atomically."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from clca_deploy.data.synthetic.render import render_leaf
from clca_deploy.data.synthetic.traits import cultivar_means, sample_traits
from clca_deploy.errors import ConfigError

DESCRIPTION_FILE = "synthetic.json"
SPLITS = ("train", "test")
# Made-up cultivar names of one species; sorted order is the class order.
CULTIVAR_NAMES = (
    "amber_vale", "briar_crest", "cedar_run", "dawn_hollow", "elm_ridge", "fern_gate",
    "glen_mist", "hazel_brook", "iris_field", "juniper_bay", "kestrel_hill", "linden_way",
)
GENERATOR_VERSION = 1
JPEG_QUALITY = 92


@dataclass(frozen=True)
class SyntheticLeafConfig:
    """What to generate; the same config always gives byte-identical files."""

    num_cultivars: int = 6
    train_per_class: int = 60
    test_per_class: int = 20
    image_size: int = 128
    seed: int = 0
    difficulty: float = 1.0  # how far apart cultivar means are; lower is harder

    def __post_init__(self) -> None:
        if not 2 <= self.num_cultivars <= len(CULTIVAR_NAMES):
            raise ConfigError(f"num_cultivars must be in 2..{len(CULTIVAR_NAMES)}, got {self.num_cultivars}.")
        if self.train_per_class < 1 or self.test_per_class < 1:
            raise ConfigError("train_per_class and test_per_class must be at least 1.")
        if not 32 <= self.image_size <= 1024:
            raise ConfigError(f"image_size must be in 32..1024 pixels, got {self.image_size}.")
        if not 0.0 < self.difficulty <= 3.0:
            raise ConfigError(f"difficulty must be in (0, 3], got {self.difficulty} (1.0 is the default, lower is harder).")

    def to_dict(self) -> dict:
        return {**asdict(self), "generator_version": GENERATOR_VERSION}


@dataclass(frozen=True)
class SyntheticDatasetInfo:
    root: str
    reused: bool
    class_names: tuple[str, ...]
    train_images: int
    test_images: int
    content_sha256: str
    config: dict = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def _image_rng(config: SyntheticLeafConfig, split: str, label: int, index: int) -> np.random.Generator:
    # One generator per image, keyed by where it goes: files do not depend on generation order.
    return np.random.default_rng([config.seed, SPLITS.index(split), label, index])


def _content_hash(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*.jpg")):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def _existing(root: Path, config: SyntheticLeafConfig) -> SyntheticDatasetInfo | None:
    description = root / DESCRIPTION_FILE
    if not root.exists():
        return None
    if root.is_dir() and not any(root.iterdir()):
        root.rmdir()  # an empty folder the user made for us
        return None
    try:
        recorded = json.loads(description.read_text())
    except (OSError, ValueError):
        raise ConfigError(
            f"{root} exists and is not a synthetic leaf dataset; choose another folder (nothing was changed)."
        ) from None
    if recorded.get("config") != config.to_dict():
        raise ConfigError(
            f"{root} holds a synthetic dataset made with other settings ({recorded.get('config')}); "
            "remove it or choose another folder."
        )
    return SyntheticDatasetInfo(str(root), True, tuple(recorded["class_names"]), recorded["train_images"],
                                recorded["test_images"], recorded["content_sha256"], recorded["config"])


def write_synthetic_dataset(root: str | Path, config: SyntheticLeafConfig = SyntheticLeafConfig()) -> SyntheticDatasetInfo:
    """Write ``root/{train,test}/<cultivar>/*.jpg`` and ``root/synthetic.json``; reuse a matching one.

    Written into a temporary sibling folder and renamed into place, so an interrupted run
    never leaves half a dataset at ``root``.
    """
    root = Path(root)
    existing = _existing(root, config)
    if existing is not None:
        return existing
    if not root.parent.is_dir():
        raise ConfigError(f"folder {root.parent} does not exist; create it first.")
    names = tuple(sorted(CULTIVAR_NAMES[: config.num_cultivars]))
    means = cultivar_means(config.num_cultivars, config.difficulty, config.seed)
    tmp = root.with_name(f".{root.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        traits_per_image = []
        counts = {"train": config.train_per_class, "test": config.test_per_class}
        for split in SPLITS:
            for label, name in enumerate(names):
                folder = tmp / split / name
                folder.mkdir(parents=True)
                for index in range(counts[split]):
                    rng = _image_rng(config, split, label, index)
                    traits = sample_traits(means[label], rng)
                    render_leaf(traits, config.image_size, rng).save(
                        folder / f"{name}_{index:04d}.jpg", quality=JPEG_QUALITY
                    )
                    traits_per_image.append({"split": split, "label": label, "index": index, **traits.to_dict()})
        info = SyntheticDatasetInfo(
            str(root), False, names, config.train_per_class * len(names), config.test_per_class * len(names),
            _content_hash(tmp), config.to_dict(),
        )
        description = {
            "what": "synthetic cultivar leaves (clca_deploy.data.synthetic): one species, cultivars differing "
                    "only in subtle traits; not real data",
            "config": info.config,
            "class_names": list(names),
            "cultivar_means": {name: m.to_dict() for name, m in zip(names, means)},
            "train_images": info.train_images,
            "test_images": info.test_images,
            "content_sha256": info.content_sha256,
            "images": traits_per_image,
        }
        (tmp / DESCRIPTION_FILE).write_text(json.dumps(description, indent=1) + "\n")
        os.replace(tmp, root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return info

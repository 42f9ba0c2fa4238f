"""Writing the synthetic cultivar leaves as an ImageFolder train/test split, atomically, with reuse.

The dataset is generated into a hidden temporary sibling of ``root`` and renamed into place,
so ``root`` either does not exist or holds a complete dataset. ``root/synthetic.json`` records
the settings, the cultivars' trait means and every image's ground-truth traits and nuisance.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clca_deploy.data.synthetic.config import SyntheticLeafConfig
from clca_deploy.data.synthetic.render import render_leaf, sample_nuisance
from clca_deploy.data.synthetic.traits import TRAIT_SPECS, Cultivar, make_cultivars, sample_leaf_traits
from clca_deploy.errors import ConfigError

DESCRIPTION_FILE = "synthetic.json"
FORMAT = "clca-deploy synthetic leaves"
# Bump whenever the same config would give different files, so that an old dataset is not reused.
GENERATOR_VERSION = 2
SPLITS = ("train", "test")
JPEG_QUALITY = 92  # scans are JPEGs too; 92 keeps the fine teeth and veins


@dataclass(frozen=True)
class SyntheticDatasetInfo:
    """Where the dataset is, what it holds, and whether an existing one was reused."""

    root: Path
    config: SyntheticLeafConfig
    class_names: tuple[str, ...]
    train_images: int
    test_images: int
    content_sha256: str  # over the image files' relative paths and bytes
    reused: bool
    seconds: float  # spent generating, or checking the existing dataset

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def train_dir(self) -> Path:
        return self.root / "train"

    @property
    def test_dir(self) -> Path:
        return self.root / "test"

    def to_dict(self) -> dict:
        """Plain JSON-able dict."""
        return {
            "root": str(self.root),
            "config": self.config.to_dict(),
            "class_names": list(self.class_names),
            "train_images": self.train_images,
            "test_images": self.test_images,
            "content_sha256": self.content_sha256,
            "reused": self.reused,
            "seconds": round(self.seconds, 3),
        }


def write_synthetic_dataset(
    root: str | os.PathLike, config: SyntheticLeafConfig = SyntheticLeafConfig()
) -> SyntheticDatasetInfo:
    """Write ``root/{train,test}/<cultivar>/*.jpg`` and ``root/synthetic.json``, or reuse a matching dataset.

    ``root`` must not exist, be an empty folder, or hold a dataset made with the same config;
    anything else is a ConfigError and nothing is changed.
    """
    root = Path(root).expanduser()
    started = time.perf_counter()
    existing = _reusable(root, config)
    if existing is not None:
        return _info(root, config, existing, reused=True, started=started)
    root.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{root.name}.", suffix=".partial", dir=root.parent))
    try:
        partial.chmod(0o755)  # mkdtemp makes it private; the finished dataset is an ordinary folder
        description = _generate(partial, config)
        try:
            # rename() replaces an empty folder but never a non-empty one.
            os.rename(partial, root)
        except OSError:
            # Another process may have written the same dataset meanwhile: that one is as good.
            description = _reusable(root, config)
            if description is None:
                raise
            return _info(root, config, description, reused=True, started=started)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return _info(root, config, description, reused=False, started=started)


def read_description(root: str | os.PathLike) -> dict:
    """The parsed ``synthetic.json`` of a generated dataset (config, cultivars, per-image traits)."""
    path = Path(root).expanduser() / DESCRIPTION_FILE
    try:
        description = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(
            f"{path} is missing or unreadable ({exc}); is {path.parent} a synthetic leaf dataset?"
        ) from None
    if not isinstance(description, dict) or description.get("format") != FORMAT:
        raise ConfigError(f"{path} does not describe a synthetic leaf dataset (no format {FORMAT!r}).")
    return description


def image_seed(config: SyntheticLeafConfig, split: str, label: int, index: int) -> np.random.SeedSequence:
    """The seed of one image: fixed by where the image goes, never by generation order or global state."""
    return np.random.SeedSequence([config.seed, SPLITS.index(split), label, index])


def _generate(folder: Path, config: SyntheticLeafConfig) -> dict:
    cultivars = make_cultivars(config)
    counts = {"train": config.train_per_class, "test": config.test_per_class}
    images = []
    for split in SPLITS:
        for cultivar in cultivars:
            (folder / split / cultivar.name).mkdir(parents=True)
            for index in range(counts[split]):
                images.append(_write_image(folder, config, split, cultivar, index))
    description = {
        "format": FORMAT,
        "generator_version": GENERATOR_VERSION,
        "note": "synthetic cultivar leaves, not real data: one species, cultivars differing only in subtle traits",
        "config": config.to_dict(),
        "class_names": [cultivar.name for cultivar in cultivars],
        "traits": {spec.name: {"meaning": spec.meaning, "base": spec.base, "between": spec.between,
                               "within": spec.within} for spec in TRAIT_SPECS},
        "cultivars": [cultivar.to_dict() for cultivar in cultivars],
        "train_images": config.train_per_class * len(cultivars),
        "test_images": config.test_per_class * len(cultivars),
        "content_sha256": content_hash(folder),
    }
    _write_description(folder / DESCRIPTION_FILE, description, images)
    return description


def _write_image(folder: Path, config: SyntheticLeafConfig, split: str, cultivar: Cultivar, index: int) -> dict:
    rng = np.random.default_rng(image_seed(config, split, cultivar.label, index))
    traits = sample_leaf_traits(cultivar, rng)
    nuisance = sample_nuisance(rng)
    relative = f"{split}/{cultivar.name}/{cultivar.name}_{index:04d}.jpg"
    image = render_leaf(traits, nuisance, config.image_size, rng)
    # No EXIF, no timestamps: the same config gives the same bytes.
    image.save(folder / relative, format="JPEG", quality=JPEG_QUALITY)
    return {"path": relative, "split": split, "label": cultivar.label, "traits": traits.to_dict(),
            "nuisance": nuisance.to_dict()}


def _write_description(path: Path, description: dict, images: list[dict]) -> None:
    # One line per image keeps a few hundred images' records readable and diffable.
    head = json.dumps(description, indent=2)[:-2]
    rows = ",\n".join("    " + json.dumps(image, separators=(", ", ": ")) for image in images)
    path.write_text(f'{head},\n  "images": [\n{rows}\n  ]\n}}\n', encoding="utf-8")


def content_hash(root: Path) -> str:
    """SHA-256 over the relative path and bytes of every file in the split folders, in sorted order."""
    digest = hashlib.sha256()
    files = sorted(p for split in SPLITS for p in (root / split).rglob("*") if p.is_file())
    for path in files:
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def _reusable(root: Path, config: SyntheticLeafConfig) -> dict | None:
    """The description of a matching dataset at ``root``; None if there is nothing there; else ConfigError."""
    if not root.exists():
        return None
    if not root.is_dir():
        raise ConfigError(f"{root} is a file; give a folder path for the synthetic dataset (new or empty).")
    if not any(root.iterdir()):
        return None
    elsewhere = f"choose a new folder, or remove {root} yourself (nothing was changed)"
    if not (root / DESCRIPTION_FILE).is_file():
        raise ConfigError(
            f"{root} exists, is not empty and is not a synthetic leaf dataset (no {DESCRIPTION_FILE}); {elsewhere}."
        )
    try:
        description = json.loads((root / DESCRIPTION_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"{root / DESCRIPTION_FILE} is unreadable ({exc}); {elsewhere}.") from None
    if not isinstance(description, dict):
        description = {}
    if description.get("format") != FORMAT or description.get("generator_version") != GENERATOR_VERSION:
        raise ConfigError(
            f"{root} was not made by this version of the synthetic leaf generator (version "
            f"{GENERATOR_VERSION}; its images would differ); {elsewhere}."
        )
    recorded = description.get("config") if isinstance(description.get("config"), dict) else {}
    wanted = config.to_dict()
    if recorded != wanted:
        changes = ", ".join(
            f"{key} {recorded.get(key)!r} -> {value!r}" for key, value in wanted.items() if recorded.get(key) != value
        )
        raise ConfigError(f"{root} holds a synthetic dataset made with other settings ({changes}); {elsewhere}.")
    if content_hash(root) != description.get("content_sha256"):
        raise ConfigError(
            f"the images in {root} changed since they were generated (content hash differs); {elsewhere}."
        )
    return description


def _info(
    root: Path, config: SyntheticLeafConfig, description: dict, reused: bool, started: float
) -> SyntheticDatasetInfo:
    return SyntheticDatasetInfo(
        root=root,
        config=config,
        class_names=tuple(description["class_names"]),
        train_images=int(description["train_images"]),
        test_images=int(description["test_images"]),
        content_sha256=description["content_sha256"],
        reused=reused,
        seconds=time.perf_counter() - started,
    )

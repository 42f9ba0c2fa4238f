"""The one evaluation preprocessing: the official eval transform, in numpy and PIL only.

Official ``datasets.build_transform`` (eval): ``Resize((R, R), BICUBIC)`` (square, not
aspect-preserving) with ``R = int(S / 0.875)``, ``CenterCrop(S)``, ``ToTensor()``,
``Normalize(ImageNet mean, std)``, the same for every backbone (CLIP included).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, Iterable, Mapping

import numpy as np
from PIL import Image

from clca_deploy.data.images import to_rgb
from clca_deploy.errors import ConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The official eval resizes to int(S / 0.875) before the centre crop.
CROP_PCT = 0.875

INTERPOLATIONS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}


def default_resize_size(img_size: int) -> int:
    """``int(img_size / 0.875)``: 256 for 224, 512 for 448."""
    return int(img_size / CROP_PCT)


@dataclass(frozen=True)
class PreprocessConfig:
    """Eval preprocessing settings; ``resize_size`` defaults to ``int(img_size / 0.875)``."""

    img_size: int
    resize_size: int | None = None
    interpolation: str = "bicubic"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        if not _is_int(self.img_size) or self.img_size <= 0:
            raise ConfigError(f"img_size must be a positive integer, got {self.img_size!r}.")
        resize = default_resize_size(self.img_size) if self.resize_size is None else self.resize_size
        if not _is_int(resize) or resize < self.img_size:
            raise ConfigError(
                f"resize_size must be an integer >= img_size ({self.img_size}), got {resize!r}; "
                f"the official eval uses int(img_size / 0.875) = {default_resize_size(self.img_size)}."
            )
        if self.interpolation not in INTERPOLATIONS:
            raise ConfigError(
                f"unknown interpolation {self.interpolation!r}; use one of {sorted(INTERPOLATIONS)} "
                "(the official eval uses 'bicubic')."
            )
        object.__setattr__(self, "resize_size", int(resize))
        object.__setattr__(self, "img_size", int(self.img_size))
        object.__setattr__(self, "mean", _channel_triple("mean", self.mean, positive=False))
        object.__setattr__(self, "std", _channel_triple("std", self.std, positive=True))

    @classmethod
    def for_size(cls, img_size: int) -> "PreprocessConfig":
        """The official eval preprocessing for a model of input size ``img_size``."""
        return cls(img_size=img_size)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict with the five settings."""
        return {
            "img_size": self.img_size,
            "resize_size": self.resize_size,
            "interpolation": self.interpolation,
            "mean": list(self.mean),
            "std": list(self.std),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "PreprocessConfig":
        """Inverse of ``to_dict``; missing optional keys take their defaults, unknown keys are refused."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"preprocessing settings must be a mapping, got {type(data).__name__}.")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown preprocessing setting(s) {unknown}; expected keys {sorted(known)}.")
        if "img_size" not in data:
            raise ConfigError("preprocessing settings have no 'img_size'.")
        return cls(**dict(data))


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _channel_triple(name: str, value: Any, positive: bool) -> tuple[float, float, float]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise ConfigError(f"{name} must be 3 numbers (one per RGB channel), got {value!r}.")
    items = tuple(value)
    if len(items) != 3 or not all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool) for v in items):
        raise ConfigError(f"{name} must be 3 numbers (one per RGB channel), got {value!r}.")
    triple = tuple(float(v) for v in items)
    if not all(math.isfinite(v) for v in triple) or (positive and min(triple) <= 0):
        kind = "finite positive" if positive else "finite"
        raise ConfigError(f"{name} must be {kind} numbers, got {list(triple)}.")
    return triple  # type: ignore[return-value]


def center_crop_box(size: int, crop: int) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of torchvision's CenterCrop: offset int(round((size - crop) / 2))."""
    offset = int(round((size - crop) / 2.0))  # Python rounds halves to even, as torchvision does
    return offset, offset, offset + crop, offset + crop


def preprocess(image: Image.Image, config: PreprocessConfig) -> np.ndarray:
    """One PIL image -> float32 [3, S, S], equal to the official torchvision eval transform."""
    out = np.empty((3, config.img_size, config.img_size), dtype=np.float32)
    preprocess_into(image, config, out)
    return out


def preprocess_batch(images: Iterable[Image.Image], config: PreprocessConfig) -> np.ndarray:
    """PIL images -> float32 [B, 3, S, S]."""
    images = list(images)
    out = np.empty((len(images), 3, config.img_size, config.img_size), dtype=np.float32)
    for index, image in enumerate(images):
        preprocess_into(image, config, out[index])
    return out


def preprocess_into(image: Image.Image, config: PreprocessConfig, out: np.ndarray) -> None:
    """Preprocess ``image`` into ``out`` (float32 [3, S, S]), e.g. one row of a batch buffer."""
    rgb = image if image.mode == "RGB" else to_rgb(image)
    size = config.resize_size
    resized = rgb.resize((size, size), resample=INTERPOLATIONS[config.interpolation])
    pixels = np.asarray(resized.crop(center_crop_box(size, config.img_size)), dtype=np.uint8)
    # Same float32 operations in the same order as ToTensor (x / 255) then Normalize ((x - m) / s),
    # so the result is bit-identical to torchvision, not merely close.
    np.divide(pixels.transpose(2, 0, 1), np.float32(255.0), out=out, dtype=np.float32)
    out -= np.asarray(config.mean, dtype=np.float32)[:, None, None]
    out /= np.asarray(config.std, dtype=np.float32)[:, None, None]

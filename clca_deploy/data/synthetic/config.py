"""Settings of the synthetic leaf generator, validated on construction."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from clca_deploy.errors import ConfigError

# One made-up cultivar name per letter, so that sorted folder order is the class order.
MAX_CULTIVARS = 26
MIN_IMAGE_SIZE = 32  # below this the teeth and veins that tell cultivars apart are gone
MAX_IMAGE_SIZE = 1024
# Above 1 the cultivars sit further apart than in the default task: easier, for demos that train
# a small model from scratch for a minute. The trait limits in traits.py leave room up to here.
MAX_DIFFICULTY = 2.0


@dataclass(frozen=True)
class SyntheticLeafConfig:
    """What to generate: cultivars, images per class and split, image size, seed, difficulty.

    ``difficulty`` scales how far apart the cultivars' trait means lie relative to the (fixed)
    spread of traits within a cultivar: 1.0 is the default task, lower is harder, values up to
    ``MAX_DIFFICULTY`` (2.0) are easier. The same config always gives byte-identical files.
    """

    num_cultivars: int = 6
    train_per_class: int = 60
    test_per_class: int = 20
    image_size: int = 128
    seed: int = 0
    difficulty: float = 1.0

    def __post_init__(self) -> None:
        _check_int("num_cultivars", self.num_cultivars, 2, MAX_CULTIVARS, "a classification task needs two or more")
        _check_int("train_per_class", self.train_per_class, 1, None, "every class folder needs an image")
        _check_int("test_per_class", self.test_per_class, 1, None, "every class folder needs an image")
        _check_int("image_size", self.image_size, MIN_IMAGE_SIZE, MAX_IMAGE_SIZE, "pixels per side")
        _check_int("seed", self.seed, 0, None, "seeds are non-negative")
        difficulty = self.difficulty
        if isinstance(difficulty, bool) or not isinstance(difficulty, (int, float)) or not math.isfinite(difficulty):
            raise ConfigError(f"difficulty must be a number in (0, {MAX_DIFFICULTY:g}], got {difficulty!r}.")
        if not 0.0 < difficulty <= MAX_DIFFICULTY:
            raise ConfigError(
                f"difficulty must be in (0, {MAX_DIFFICULTY:g}] (1.0 = default task, lower = cultivars closer "
                f"together, harder), got {difficulty}."
            )
        for name in ("num_cultivars", "train_per_class", "test_per_class", "image_size", "seed"):
            object.__setattr__(self, name, int(getattr(self, name)))
        object.__setattr__(self, "difficulty", float(difficulty))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict of the six settings."""
        return asdict(self)


def _check_int(name: str, value: Any, low: int, high: int | None, why: str) -> None:
    # bool is an int subclass; True as a count is a bug in the caller, not a 1.
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name} must be an integer, got {value!r}.")
    if value < low or (high is not None and value > high):
        bounds = f">= {low}" if high is None else f"between {low} and {high}"
        raise ConfigError(f"{name} must be {bounds} ({why}), got {value}.")

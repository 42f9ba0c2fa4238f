"""Cultivar traits: one species, cultivars that differ only slightly in each of seven traits.

Every trait has a species-wide centre and a within-cultivar spread. Cultivar means sit
``separation * difficulty`` spreads away from the centre in random directions, with the
separation kept near one spread: any single trait overlaps heavily between cultivars, and
only the combination tells them apart, as with real cultivars.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

# name -> (species centre, within-cultivar spread, lower bound, upper bound)
TRAIT_RANGES: dict[str, tuple[float, float, float, float]] = {
    "aspect": (2.1, 0.16, 1.3, 3.2),  # blade length / width
    "teeth": (18.0, 2.2, 6.0, 34.0),  # serrations per side
    "tooth_depth": (0.045, 0.010, 0.0, 0.1),  # relative to the local half-width
    "vein_angle": (48.0, 4.0, 25.0, 70.0),  # degrees between secondary veins and midrib
    "petiole": (0.16, 0.03, 0.03, 0.35),  # relative to blade length
    "hue": (0.27, 0.012, 0.18, 0.36),  # HSV hue of the blade (0.33 = pure green)
    "asymmetry": (0.06, 0.035, -0.1, 0.25),  # left half wider than right, relative
}
TRAIT_NAMES = tuple(TRAIT_RANGES)
# Cultivar means are this many within-cultivar spreads from the centre (times difficulty).
SEPARATION = 1.3


@dataclass(frozen=True)
class CultivarTraits:
    aspect: float
    teeth: float
    tooth_depth: float
    vein_angle: float
    petiole: float
    hue: float
    asymmetry: float

    def to_dict(self) -> dict[str, float]:
        return {k: round(float(v), 6) for k, v in asdict(self).items()}

    def as_vector(self) -> np.ndarray:
        return np.array([getattr(self, n) for n in TRAIT_NAMES], dtype=np.float64)


def _clip(name: str, value: float) -> float:
    _, _, low, high = TRAIT_RANGES[name]
    return float(min(high, max(low, value)))


def cultivar_means(num_cultivars: int, difficulty: float, seed: int) -> list[CultivarTraits]:
    """Mean traits of each cultivar: unit directions in trait space (normalised by spread),
    scaled to ``SEPARATION * difficulty`` per trait on average, so cultivars neither collapse
    onto each other nor differ grossly in one trait."""
    rng = np.random.default_rng([seed, 7919])
    directions = rng.normal(size=(num_cultivars, len(TRAIT_NAMES)))
    directions -= directions.mean(axis=0, keepdims=True)  # centred on the species
    directions /= np.linalg.norm(directions, axis=1, keepdims=True) / np.sqrt(len(TRAIT_NAMES))
    means = []
    for direction in directions:
        values = {
            name: _clip(name, centre + SEPARATION * difficulty * spread * d)
            for (name, (centre, spread, _, _)), d in zip(TRAIT_RANGES.items(), direction)
        }
        means.append(CultivarTraits(**values))
    return means


def sample_traits(mean: CultivarTraits, rng: np.random.Generator) -> CultivarTraits:
    """One leaf of a cultivar: its mean plus the within-cultivar spread of every trait."""
    values = {
        name: _clip(name, getattr(mean, name) + spread * rng.normal())
        for name, (_, spread, _, _) in TRAIT_RANGES.items()
    }
    return CultivarTraits(**values)

"""Cultivar traits: what tells the synthetic cultivars apart, and how one leaf's traits are drawn.

Every cultivar is the same species: each trait has one species-wide base value, and a cultivar
only shifts it by a modest amount (at most ``between`` at difficulty 1). Within a cultivar each
trait varies with standard deviation ``within`` = half of ``between``, so neighbouring cultivars
overlap heavily on any one trait; only the combination of traits separates them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np

from clca_deploy.data.synthetic.config import SyntheticLeafConfig

# Made-up cultivar names with distinct first letters: sorted order is list order is class index.
CULTIVAR_NAMES = (
    "Aldergrove", "Bramblewick", "Cinderford", "Dunmore", "Elmstead", "Foxhollow", "Greywell",
    "Harrowgate", "Ivybridge", "Juniper_Vale", "Kestrel", "Larkspur", "Marlowe", "Northwood",
    "Oakhurst", "Pennington", "Quillon", "Rosslyn", "Silverdale", "Thornbury", "Umberleigh",
    "Valewood", "Wychwood", "Xanthe", "Yarrow", "Zephyr",
)  # fmt: skip

# Tried arrangements of cultivar means; the one whose two closest cultivars are farthest apart wins,
# so that no pair of cultivars happens to share nearly every trait.
ARRANGEMENT_CANDIDATES = 64


@dataclass(frozen=True)
class TraitSpec:
    """One trait: species base value, cultivar shift at difficulty 1, within-cultivar spread, hard limits."""

    name: str
    base: float
    between: float  # cultivar means lie in base +- between * difficulty
    within: float  # standard deviation of one leaf around its cultivar's mean
    low: float
    high: float
    meaning: str


TRAIT_SPECS = (
    TraitSpec("aspect", 1.85, 0.22, 0.11, 1.2, 2.8, "blade length / blade width"),
    TraitSpec("tip_acuteness", 1.15, 0.25, 0.125, 0.6, 1.9, "taper exponent towards the tip (higher = more drawn out)"),
    TraitSpec("tooth_count", 17.0, 4.0, 2.0, 7.0, 30.0, "marginal teeth per side of the blade"),
    TraitSpec("tooth_depth", 0.016, 0.005, 0.0025, 0.003, 0.035, "tooth depth / blade length"),
    TraitSpec("vein_angle", 50.0, 9.0, 4.5, 25.0, 75.0, "degrees between secondary veins and midrib"),
    TraitSpec("petiole_length", 0.24, 0.08, 0.04, 0.04, 0.5, "petiole length / blade length"),
    TraitSpec("tint_hue", 0.0, 5.0, 2.5, -15.0, 15.0, "degrees of hue shift from the species green"),
    TraitSpec("tint_saturation", 0.0, 0.07, 0.035, -0.2, 0.2, "saturation shift from the species green"),
    TraitSpec("asymmetry", 0.0, 0.07, 0.035, -0.2, 0.2, "half-widths are (1 + a) on the left, (1 - a) on the right"),
)


@dataclass(frozen=True)
class LeafTraits:
    """The ground-truth cultivar traits of one leaf (or a cultivar's mean traits); see TRAIT_SPECS."""

    aspect: float
    tip_acuteness: float
    tooth_count: float
    tooth_depth: float
    vein_angle: float
    petiole_length: float
    tint_hue: float
    tint_saturation: float
    asymmetry: float

    def to_dict(self) -> dict[str, float]:
        # Rounded so that the JSON record stays short; rendering uses the unrounded values.
        return {name: round(float(value), 6) for name, value in asdict(self).items()}

    def as_array(self) -> np.ndarray:
        return np.array([getattr(self, name) for name in TRAIT_NAMES], dtype=np.float64)


TRAIT_NAMES = tuple(field.name for field in fields(LeafTraits))
_BASE = np.array([spec.base for spec in TRAIT_SPECS])
_BETWEEN = np.array([spec.between for spec in TRAIT_SPECS])
_WITHIN = np.array([spec.within for spec in TRAIT_SPECS])
_LOW = np.array([spec.low for spec in TRAIT_SPECS])
_HIGH = np.array([spec.high for spec in TRAIT_SPECS])


@dataclass(frozen=True)
class Cultivar:
    """One class: its folder name, 0-based label and mean traits."""

    name: str
    label: int
    means: LeafTraits

    def to_dict(self) -> dict:
        return {"name": self.name, "label": self.label, "trait_means": self.means.to_dict()}


def make_cultivars(config: SyntheticLeafConfig) -> tuple[Cultivar, ...]:
    """The config's cultivars, in class order; depends only on seed, num_cultivars and difficulty."""
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, 0xC017]))
    n = config.num_cultivars
    # Even spacing on every trait (no cultivar is an outlier on one trait), with a different
    # cultivar order per trait, so that each trait ranks the cultivars differently.
    levels = np.linspace(-1.0, 1.0, n)
    best, best_gap = None, -1.0
    for _ in range(ARRANGEMENT_CANDIDATES):
        positions = np.stack([rng.permutation(levels) for _ in TRAIT_SPECS], axis=1)  # [cultivar, trait]
        distances = np.linalg.norm(positions[:, None, :] - positions[None, :, :], axis=-1)
        gap = float(distances[np.triu_indices(n, k=1)].min())
        if gap > best_gap:
            best, best_gap = positions, gap
    means = _BASE + config.difficulty * _BETWEEN * best
    return tuple(Cultivar(CULTIVAR_NAMES[i], i, _traits(means[i])) for i in range(n))


def sample_leaf_traits(cultivar: Cultivar, rng: np.random.Generator) -> LeafTraits:
    """One leaf's traits: the cultivar's means plus within-cultivar Gaussian variation, kept in range."""
    values = cultivar.means.as_array() + _WITHIN * rng.standard_normal(len(TRAIT_SPECS))
    return _traits(np.clip(values, _LOW, _HIGH))


def standardise(traits: np.ndarray) -> np.ndarray:
    """Trait vectors [..., trait] in units of the within-cultivar spread (for comparing traits)."""
    return (np.asarray(traits, dtype=np.float64) - _BASE) / _WITHIN


def _traits(values: np.ndarray) -> LeafTraits:
    return LeafTraits(**{name: float(value) for name, value in zip(TRAIT_NAMES, values)})

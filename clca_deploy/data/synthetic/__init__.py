"""Synthetic cultivar leaves: a seeded, ultra-fine-grained ImageFolder dataset for demos and tests.

One species, cultivars that differ only in the combination of subtle traits (outline aspect,
tip, teeth count and depth, vein angle, petiole length, tint, asymmetry), drawn as leaf scans
with per-image nuisance. ``write_synthetic_dataset`` is the entry point.
"""

from clca_deploy.data.synthetic.config import SyntheticLeafConfig
from clca_deploy.data.synthetic.dataset import SyntheticDatasetInfo, read_description, write_synthetic_dataset
from clca_deploy.data.synthetic.render import Nuisance, render_leaf, sample_nuisance
from clca_deploy.data.synthetic.traits import (
    TRAIT_NAMES,
    TRAIT_SPECS,
    Cultivar,
    LeafTraits,
    TraitSpec,
    make_cultivars,
    sample_leaf_traits,
    standardise,
)

__all__ = [
    "TRAIT_NAMES",
    "TRAIT_SPECS",
    "Cultivar",
    "LeafTraits",
    "Nuisance",
    "SyntheticDatasetInfo",
    "SyntheticLeafConfig",
    "TraitSpec",
    "make_cultivars",
    "read_description",
    "render_leaf",
    "sample_leaf_traits",
    "sample_nuisance",
    "standardise",
    "write_synthetic_dataset",
]

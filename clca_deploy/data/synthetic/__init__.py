"""Synthetic cultivar leaves: a seeded, ultra-fine-grained ImageFolder dataset for demos and tests."""

from clca_deploy.data.synthetic.dataset import SyntheticDatasetInfo, SyntheticLeafConfig, write_synthetic_dataset
from clca_deploy.data.synthetic.traits import TRAIT_NAMES, CultivarTraits, cultivar_means, sample_traits

__all__ = [
    "TRAIT_NAMES",
    "CultivarTraits",
    "SyntheticDatasetInfo",
    "SyntheticLeafConfig",
    "cultivar_means",
    "sample_traits",
    "write_synthetic_dataset",
]

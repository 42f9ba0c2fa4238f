"""Per-method behaviour beyond the golden logits: weights placement, keep-rate changes, the
official NaN case, DPC-KNN's deterministic tie-break, and ATS's refusal."""

from __future__ import annotations

import argparse

import pytest
import torch

from clca_deploy.errors import UnsupportedError
from clca_deploy.model import ClcaConfig, ClcaModel, load_checkpoint, token_schedule
from clca_deploy.model.deploy import for_inference, with_input_size, with_keep_rate
from clca_deploy.model.reduction import ReductionSite
from clca_deploy.model.reduction.dpcknn import DpcKnnReducer
from tests.conftest import load_golden


@pytest.mark.parametrize(
    "name,prefix",
    [
        ("dyvit_tiny_clca_k0.5_224", "score_predictor."),
        ("sit_tiny_clca_k0.5_224", "cluster_layers."),
        ("patchmerger_tiny_clca_k0.5_224", "cluster_layers."),
        ("dpcknn_tiny_clca_k0.25_224", "cluster_layers."),
    ],
)
def test_learned_reducers_sit_under_the_official_keys(name, prefix):
    path, _, _ = load_golden(name)
    keys = load_checkpoint(path).state_dict().keys()
    assert {k.split(".")[1] for k in keys if k.startswith(prefix)} == {"0", "1", "2"}
    assert not any(k.startswith("reducers.") for k in keys)


@pytest.mark.parametrize("name", ["tome_tiny_clca_k0.5_224", "dyvit_tiny_clca_k0.5_224", "dpcknn_tiny_clca_k0.25_224"])
def test_weights_independent_of_keep_rate_run_at_another_rate(name):
    path, _, io = load_golden(name)
    variant = with_keep_rate(load_checkpoint(path), 0.7)
    assert variant.config.keep_rate == (0.7,)
    with torch.no_grad():
        assert torch.isfinite(variant(torch.from_numpy(io["input"]))).all()


@pytest.mark.parametrize("name", ["sit_tiny_clca_k0.5_224", "patchmerger_tiny_clca_k0.5_224"])
def test_keep_rate_fixed_by_weights_is_refused_clearly(name):
    model = load_checkpoint(load_golden(name)[0])
    with pytest.raises(UnsupportedError, match="one weight row per output token"):
        with_keep_rate(model, 0.25)
    with pytest.raises(UnsupportedError, match="one weight row per output token"):
        with_input_size(model, 448)


def test_official_nan_configuration_is_reproduced_but_not_exported():
    """SiT at keep 0.1 (README settings) leaves the CLS alone at block 9 and the official GAP
    carrier then averages nothing: NaN logits. PyTorch reproduces it; export refuses it."""
    config = ClcaConfig(
        model="sit_vit_tiny_patch16_224", img_size=224, num_classes=5, keep_rate=(0.1,),
        clc=True, num_clr=1, ifa_head=True,
    )
    model = ClcaModel(config).eval()
    assert token_schedule(config)[9].tokens_in == 1
    with torch.no_grad():
        assert torch.isnan(model(torch.randn(1, 3, 224, 224))).all()
    with pytest.raises(UnsupportedError, match="NaN"):
        for_inference(model)


def test_dpcknn_equal_densities_make_the_earlier_token_denser():
    """Exact duplicates have equal densities; the official code breaks such ties with random
    noise, here the earlier copy wins, so only earlier copies can become centers."""
    site = ReductionSite(
        location_index=0, num_locations=1, keep_rates=(0.5,), num_patches=12, initial_tokens=13,
        tokens_in=13, suffix_tokens=0, clc=False,
    )
    reducer = DpcKnnReducer(site, 3, ClcaConfig(model="vit_tiny_patch16_224", img_size=224, num_classes=2).backbone)
    generator = torch.Generator().manual_seed(0)
    centres = torch.randn(3, 192, generator=generator) * 5
    # tokens 0..5 are three tight pairs around three centres, 6..11 exact copies of 0..5
    first = torch.cat([centres + 0.1 * torch.randn(3, 192, generator=generator) for _ in range(2)])
    tokens = torch.cat([first, first]).unsqueeze(0)
    assignment, centers = reducer.cluster(tokens)
    assert sorted(int(c) % 3 for c in centers[0]) == [0, 1, 2]  # one center per group
    assert all(int(c) < 6 for c in centers[0])  # never the later copy
    assert torch.equal(assignment.sum(dim=1), torch.ones(1, 12))  # every token in one cluster
    again, _ = reducer.cluster(tokens.clone())
    assert torch.equal(assignment, again)


def test_ats_checkpoint_is_refused_with_the_reason(tmp_path):
    settings = dict(model="ats_vit_tiny_patch16_224", input_size=224, num_classes=3, keep_rate=[0.5])
    torch.save({"model": {"cls_token": torch.zeros(1, 1, 192)}, "args": argparse.Namespace(**settings)}, tmp_path / "ats.pth")
    with pytest.raises(UnsupportedError, match="different number of tokens for every image"):
        load_checkpoint(tmp_path / "ats.pth")

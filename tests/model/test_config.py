"""Settings validation: every bad value is a ClcaDeployError that says what to do."""

from __future__ import annotations

import pytest

from clca_deploy.errors import ConfigError, UnsupportedError
from clca_deploy.model import ClcaConfig
from clca_deploy.model.config import split_model_name


def test_model_name_parsing():
    assert split_model_name("evit_vit_base_patch16_clip_224.laion2b") == ("evit", "vit_base_patch16_clip_224", "laion2b")
    assert split_model_name("vit_base_patch16_224.orig_in21k") == ("vit", "vit_base_patch16_224", "orig_in21k")
    assert split_model_name("topk_deit3_base_patch16_224") == ("topk", "deit3_base_patch16_224", None)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(img_size=230), "multiple of the patch size 16"),
        (dict(keep_rate=(0.0,)), "outside"),
        (dict(keep_rate=(1.2,)), "outside"),
        (dict(keep_rate=(0.5, 0.5)), "keep rates for 3"),
        (dict(reduction_loc=(9, 3)), "increasing"),
        (dict(reduction_loc=(11,)), "increasing"),
        (dict(clc=True, num_clr=0, clc_include_gap=False), "carriers"),
        (dict(model="evit_vit_tiny_patch16_siglip_224"), "unknown backbone"),
        (dict(model="evit_swin_tiny_patch4_window7_224"), "unknown backbone"),
    ],
)
def test_invalid_settings(kwargs, message):
    settings = {**dict(model="evit_vit_tiny_patch16_224", img_size=224, num_classes=3), **kwargs}
    with pytest.raises(ConfigError, match=message):
        ClcaConfig(**settings)


def test_ats_is_refused_with_reason():
    with pytest.raises(UnsupportedError, match="static-shape"):
        ClcaConfig(model="ats_vit_tiny_patch16_224", img_size=224, num_classes=3)


def test_plain_vit_uses_hard_coded_locations():
    config = ClcaConfig(model="vit_tiny_patch16_224", img_size=224, num_classes=3, reduction_loc=(2,))
    assert config.reduction_loc == (3, 6, 9)


@pytest.mark.parametrize("method", ["tome", "dpcknn", "sit", "patchmerger"])
def test_compounding_methods_take_one_keep_rate(method):
    # The official code reads a keep_rate list as token counts for these: refuse it clearly.
    with pytest.raises(ConfigError, match="one keep rate"):
        ClcaConfig(model=f"{method}_vit_tiny_patch16_224", img_size=224, num_classes=3, keep_rate=(0.5, 0.5, 0.25))


def test_dyvit_and_topk_accept_per_location_rates():
    for method in ("dyvit", "evit", "topk"):
        ClcaConfig(model=f"{method}_vit_tiny_patch16_224", img_size=224, num_classes=3, keep_rate=(0.5, 0.5, 0.25))


def test_dpcknn_settings_come_from_args():
    base = dict(model="dpcknn_vit_tiny_patch16_224", input_size=224, num_classes=3, keep_rate=[0.25])
    config, defaulted = ClcaConfig.from_args({**base, "k_neighbors": 7, "equal_weight": True})
    assert (config.k_neighbors, config.equal_weight) == (7, True)
    assert "k_neighbors" not in defaulted
    _, defaulted = ClcaConfig.from_args(base)
    assert {"k_neighbors", "equal_weight"} <= set(defaulted)
    _, defaulted = ClcaConfig.from_args({**base, "model": "evit_vit_tiny_patch16_224"})
    assert "k_neighbors" not in defaulted  # only DPC-KNN reads them


def test_dpcknn_needs_enough_tokens_to_cluster():
    with pytest.raises(ConfigError, match="DPC-KNN"):
        from clca_deploy.model import token_schedule

        token_schedule(ClcaConfig(model="dpcknn_vit_tiny_patch16_224", img_size=32, num_classes=3, keep_rate=(0.5,)))

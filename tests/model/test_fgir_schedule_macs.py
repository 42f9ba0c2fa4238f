"""Token schedules and MAC counts of ILA / GLSim variants, checked against what the modules really do.

The configs are written here in the official args' terms (no fixture needed). The sequence
lengths come from hooks on the running model, and the MACs from hooks on every Linear, conv,
norm and attention: both independent of ``FgirConfig.token_schedule`` / ``count_fgir_macs``.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from clca_deploy.errors import UnsupportedError
from clca_deploy.model.fgir import FgirConfig, build_model, config_from_args, count_fgir_macs
from clca_deploy.model.fgir.vit import Attention, Block

# The README command's ILA args (vit_t16), at 96px so that the tests are quick: grid 6 -> 4 -> 2.
ILA_ARGS = dict(
    model_name="vit_t16", image_size=96, num_classes=5, classifier="cls", pos_embedding_type="learned",
    hidden_size=192, intermediate_size=768, num_attention_heads=3, num_hidden_layers=12, layer_norm_eps=1e-12,
    encoder_norm=True, patch_stride=16, resize_size=128, test_resize_size=128, adapter="adapter",
    adapter_path="convpass", adapter_dim=8, adapter_kernel_size=3, ila=True, ila_locs=[], ila_ds_locs=[3, 7],
    ila_cls_conv=True, ila_ds_conv=True, ila_ds_conv_type="dws_near_ones_init", ila_ds_kernel_size=3,
    ila_norm1="bn", ila_norm2="bn", ila_norm3="bn", ila_padding=False, ila_dilation=1, ila_dws_conv_groups=1,
    selector=None, prompt=None, dynamic_anchor=False,
)
GLSIM_ARGS = dict(
    model_name="vit_t16", image_size=96, num_classes=5, classifier="cls", pos_embedding_type="learned",
    hidden_size=192, intermediate_size=768, num_attention_heads=3, num_hidden_layers=12, layer_norm_eps=1e-12,
    encoder_norm=True, resize_size=128, test_resize_size=128, dynamic_anchor=True, dynamic_top=4,
    sim_metric="cos", anchor_size=16, num_anchors=1, anchor_random=False, anchor_class_token=True, reducer="cls",
    representation_size=192, aggregator=True, aggregator_num_hidden_layers=1, aggregator_norm=True, test_flip=False,
)
ILA_VARIANTS = {
    "readme": {},
    "all_locs": {"ila_locs": [-1]},
    "padding": {"ila_padding": True},
    "convpass_pfeiffer": {"adapter": "convpass", "adapter_path": "pfeiffer", "ila_locs": [0, 5]},
    "ours_path": {"adapter_path": "ours"},
    "ln_groups0_conv": {"ila_norm1": "ln", "ila_norm2": "ln", "ila_norm3": "ln", "ila_dws_conv_groups": 0,
                        "ila_ds_conv_type": "conv", "ila_locs": [1]},
    "avg_pool_no_norms": {"ila_ds_conv_type": "avg_pool", "ila_norm1": None, "ila_norm2": None, "ila_norm3": None,
                          "ila_dws_conv_groups": 2},
    "cls_through_conv": {"ila_cls_conv": False, "ila_locs": [2]},  # forces padding: no down-sampling
    "no_ds_conv": {"ila_ds_conv": False},  # no residual at all in the ds adapters
    "dilated_ila": {"ila_dilation": 2, "ila_locs": [0], "ila_ds_locs": []},
    "plain": {"adapter": None, "ila": False},
    "reordered_locs": {"ila_locs": [5, 2, 2], "ila_ds_locs": [9]},
}
GLSIM_VARIANTS = {
    "glsim_yaml": {},
    "wide_reducer": {"representation_size": 256},
    "two_aggregator_layers_no_norm": {"aggregator_num_hidden_layers": 2, "aggregator_norm": False},
    "no_aggregator": {"aggregator": False, "anchor_class_token": False},
}


def _config(base: dict, changes: dict) -> FgirConfig:
    return config_from_args({**base, **changes})


def _all_variants():
    return [("ila", k) for k in ILA_VARIANTS] + [("glsim", k) for k in GLSIM_VARIANTS]


def _variant_config(family: str, variant: str) -> FgirConfig:
    if family == "ila":
        return _config(ILA_ARGS, ILA_VARIANTS[variant])
    return _config(GLSIM_ARGS, GLSIM_VARIANTS[variant])


def _measure(model: nn.Module, images: torch.Tensor) -> tuple[int, list[tuple[str, int]]]:
    """(MACs at batch 1 seen by hooks, (stage, sequence length) entering each block in order)."""
    macs, lengths = [0], []

    def count(module, inputs, output):
        if isinstance(module, nn.Linear):
            macs[0] += output.numel() * module.in_features
        elif isinstance(module, nn.Conv2d):
            kernel = module.kernel_size[0] * module.kernel_size[1]
            macs[0] += output.numel() * module.in_channels // module.groups * kernel
        elif isinstance(module, (nn.LayerNorm, nn.BatchNorm1d, nn.BatchNorm2d)):
            macs[0] += output.numel()
        elif isinstance(module, Attention):
            _, length, dim = inputs[0].shape
            macs[0] += 2 * length * length * dim
        if isinstance(module, Block):
            lengths.append(inputs[0].shape[1])

    hooks = [m.register_forward_hook(count) for m in model.modules()]
    with torch.no_grad():
        logits = model(images)
    for hook in hooks:
        hook.remove()
    assert logits.shape == (1, model.config.num_classes) and torch.isfinite(logits).all()
    return macs[0], lengths


@pytest.mark.parametrize("family, variant", _all_variants())
def test_schedule_and_macs_are_what_the_model_runs(family, variant):
    config = _variant_config(family, variant)
    torch.manual_seed(0)
    model = build_model(config)
    measured_macs, lengths = _measure(model, torch.randn(1, 3, 96, 96))
    assert lengths == [step.tokens_in for step in config.token_schedule()]
    assert count_fgir_macs(config).total == measured_macs


def test_expected_schedules():
    grid_counts = lambda cfg: [s.tokens_out for s in cfg.token_schedule()]  # noqa: E731
    assert grid_counts(_config(ILA_ARGS, {})) == [37] * 3 + [17] * 4 + [5] * 5
    assert grid_counts(_config(ILA_ARGS, {"ila_padding": True})) == [37] * 12
    assert grid_counts(_config(ILA_ARGS, {"ila_cls_conv": False})) == [37] * 12
    labels = [s.adapter for s in _config(ILA_ARGS, ILA_VARIANTS["reordered_locs"]).token_schedule()]
    # Official order: adapters are taken in block order, whatever the order of the list.
    assert labels == [None, None, "ila[0]", None, None, "ila[1]", None, None, None, "ila_ds[0]", None, None]
    all_locs = _config(ILA_ARGS, {"ila_locs": [-1]}).ila.ila_locs
    assert all_locs == (0, 1, 2, 4, 5, 6, 8, 9, 10, 11)
    glsim = _config(GLSIM_ARGS, {"aggregator_num_hidden_layers": 2}).token_schedule()
    assert [s.stage for s in glsim] == ["global"] * 12 + ["crop"] * 12 + ["aggregator"] * 2
    assert {(s.tokens_in, s.tokens_out) for s in glsim if s.stage == "aggregator"} == {(2, 2)}


def test_unused_adapter_modules_are_built_as_the_official_code_builds_them():
    model = build_model(_config(ILA_ARGS, ILA_VARIANTS["reordered_locs"]))
    assert len(model.encoder.ila) == 3 and len(model.encoder.ila_ds) == 1


def test_no_ds_conv_means_no_residual():
    """The official ILAdapter adds its input only when it pads or down-samples its residual."""
    model = build_model(_config(ILA_ARGS, {"ila_ds_conv": False}))
    adapter = model.encoder.ila_ds[0]
    assert not adapter.geometry.residual and not hasattr(adapter, "ds_conv")
    for module in adapter.modules():
        for parameter in module.parameters(recurse=False):
            nn.init.zeros_(parameter)
    with torch.no_grad():
        out = adapter(torch.randn(1, 37, 192))
    assert out.shape == (1, 17, 192) and torch.count_nonzero(out) == 0


def test_ila_readme_macs_at_224():
    """Hand count of the README model's blocks 0 and 3 (with its ila_ds[0]) at 224px."""
    report = count_fgir_macs(_config(ILA_ARGS, {"image_size": 224, "test_resize_size": 300}))
    n, d, f, a = 197, 192, 768, 8
    block = 4 * n * d * d + 2 * n * n * d + 2 * n * d * f + 2 * n * d + 2 * (2 * n * d * a)
    assert report.blocks[0] == block
    ds = (n * d * a + n * a) + (144 * (a * 9 + a + a * a) + a * a) + (145 * a + 145 * a * d) + 144 * d * 9
    assert report.blocks[3] == block + ds
    assert report.embedding == 196 * 192 * 3 * 256 and report.head == 101 * d + d * 5
    assert math.isclose(report.gmacs, report.total / 1e9)


@pytest.mark.parametrize("changes, option", [
    ({"ila_ds_locs": [0, 1, 2]}, "ila_ds_kernel_size"),  # 96px: grid 6 -> 4 -> 2 -> 0
    ({"ila_dilation": 2}, "ila_dilation"),
    ({"adapter_path": ""}, "adapter_path"),
    ({"adapter_path": False}, "adapter_path"),
])
def test_geometries_the_official_code_cannot_run_are_refused(changes, option):
    with pytest.raises(UnsupportedError, match=option):
        _config(ILA_ARGS, changes)


def test_none_takes_the_official_model_default():
    config = _config(ILA_ARGS, {"adapter_dim": None, "layer_norm_eps": None, "ila_dws_conv_groups": None})
    assert (config.ila.adapter_dim, config.vit.layer_norm_eps, config.ila.ila_dws_conv_groups) == (8, 1e-12, 2)

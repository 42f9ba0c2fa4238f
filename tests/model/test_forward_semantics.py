"""The static-schedule forward against a literal transcription of the official control flow,
and the plain backbones against timm's own VisionTransformer."""

from __future__ import annotations

import itertools

import pytest
import timm
import torch

from clca_deploy.model import ClcaConfig, ClcaModel
from tests.model.literal_reference import literal_forward


def randomized(model: ClcaModel, seed: int = 0) -> ClcaModel:
    """Random weights and BN statistics, with peaky attention as in the golden fixtures."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if not tensor.is_floating_point():
                continue
            values = torch.randn(tensor.shape, generator=generator)
            if name.endswith("running_var"):
                values = values.abs() + 0.5
            elif "qkv.weight" in name:
                values = values * 0.15
            else:
                values = values * 0.05
            tensor.copy_(values)
    return model.eval()


FLAGS = list(
    itertools.product(
        ["evit", "topk", "vit"],
        [0.1, 0.5],
        [  # (clc, num_clr, gap, pool_cls, pool_clr, recover_at_last)
            (True, 1, True, False, False, True),
            (True, 2, True, True, False, False),
            (True, 2, False, False, True, True),
            (True, 0, True, False, False, True),
            (False, 1, True, False, False, True),
            (False, 0, True, False, False, True),
        ],
        [(True, 2), (True, 0), (False, 2)],  # (ifa_head, ifa_dws_conv_groups)
    )
)


@pytest.mark.parametrize("method,keep,cache,head", FLAGS)
def test_static_forward_equals_literal_official_flow(method, keep, cache, head):
    clc, num_clr, gap, pool_cls, pool_clr, recover_at_last = cache
    config = ClcaConfig(
        model=f"{method}_vit_tiny_patch16_224" if method != "vit" else "vit_tiny_patch16_224",
        img_size=64,
        num_classes=7,
        keep_rate=(keep,),
        reduction_loc=(3, 6, 9),
        clc=clc,
        num_clr=num_clr,
        clc_include_gap=gap,
        clc_pool_cls=pool_cls,
        clc_pool_clr=pool_clr,
        clc_recover_at_last=recover_at_last,
        ifa_head=head[0],
        ifa_dws_conv_groups=head[1],
    )
    model = randomized(ClcaModel(config))
    images = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        static = model(images)
    literal, counts = literal_forward(model, images)
    assert counts == [(s.tokens_in, s.tokens_out) for s in model.token_schedule()]
    torch.testing.assert_close(static, literal, atol=1e-5, rtol=1e-5)


TIMM_EQUIVALENTS = [
    "vit_tiny_patch16_224",  # standard
    "deit_tiny_patch16_224",
    "deit3_small_patch16_224",  # LayerScale, no class pos-embed
    "vit_base_patch16_224_miil",  # no qkv bias
    "vit_base_patch16_clip_224",  # pre-norm, no patch bias, eps 1e-5
]


@pytest.mark.parametrize("name", TIMM_EQUIVALENTS)
def test_plain_backbone_equals_timm(name):
    """Without reduction, cache or CLA our model is timm's ViT: same keys, same logits."""
    reference = timm.create_model(name, pretrained=False, num_classes=5, img_size=64).eval()
    ours = ClcaModel(ClcaConfig(model=name, img_size=64, num_classes=5))
    state = {k: v for k, v in reference.state_dict().items()}
    ours.load_state_dict(state, strict=True)
    ours.eval()
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(ours(images), reference(images), atol=2e-5, rtol=1e-5)


def test_backbone_kinds_follow_official_table():
    def spec(name):
        return ClcaConfig(model=name, img_size=224, num_classes=2).backbone

    clip = spec("evit_vit_base_patch16_clip_224.laion2b")
    assert (clip.kind, clip.norm_eps, clip.pre_norm) == ("clip", 1e-5, True)
    assert spec("evit_vit_base_patch16_224_miil.in21k").qkv_bias is False
    deit3 = spec("evit_deit3_base_patch16_224.fb_in22k_ft_in1k")
    assert deit3.kind == "deit3" and deit3.pos_embed_covers_cls is False
    assert spec("evit_vit_base_patch16_224.dino").kind == "standard"
    model = ClcaModel(ClcaConfig(model="evit_deit3_small_patch16_224", img_size=224, num_classes=2, num_clr=1))
    assert model.pos_embed.shape[1] == 196  # DeiT 3: no pos rows for CLS or CLR


OTHER_METHODS = list(
    itertools.product(
        ["tome", "dpcknn", "dyvit", "sit", "patchmerger"],
        [0.25, 0.5],
        [  # (clc, num_clr, gap, pool_cls, pool_clr, recover_at_last)
            (True, 1, True, False, False, True),
            (True, 2, True, True, True, False),
            (True, 0, True, False, False, True),
            (False, 1, True, False, False, True),
            (False, 0, True, False, False, True),
        ],
    )
)


@pytest.mark.parametrize("method,keep,cache", OTHER_METHODS)
def test_other_methods_static_forward_equals_literal_official_flow(method, keep, cache):
    """ToMe, DPC-KNN, DynamicViT, SiT and PatchMerger against their literal, dynamic-shape steps.

    In float64: there cdist is exact, so the literal DPC-KNN (official arithmetic, torch.cdist)
    and the static one (exactly re-measured distances) make the same decisions.
    """
    clc, num_clr, gap, pool_cls, pool_clr, recover_at_last = cache
    config = ClcaConfig(
        model=f"{method}_vit_tiny_patch16_224",
        img_size=64,
        num_classes=7,
        keep_rate=(keep,),
        clc=clc,
        num_clr=num_clr,
        clc_include_gap=gap,
        clc_pool_cls=pool_cls,
        clc_pool_clr=pool_clr,
        clc_recover_at_last=recover_at_last,
        ifa_head=True,
    )
    model = randomized(ClcaModel(config)).double()
    images = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(1)).double()
    with torch.no_grad():
        static = model(images)
    literal, counts = literal_forward(model, images)
    assert counts == [(s.tokens_in, s.tokens_out) for s in model.token_schedule()]
    # An empty GAP window makes the official logits NaN (SiT/PatchMerger/DynamicViT at low keep).
    empty_window = any(step.pools_nothing(config) for step in model.token_schedule())
    assert bool(torch.isnan(literal).any()) == empty_window
    torch.testing.assert_close(static, literal, atol=1e-9, rtol=1e-9, equal_nan=True)

"""Initial weights: timm pretrained backbones mapped the official way; offline fails clearly."""

from __future__ import annotations

import timm
import torch
import pytest

from clca_deploy.errors import ClcaDeployError
from clca_deploy.model import ClcaConfig
from clca_deploy.model.clca import ClcaModel
from clca_deploy.train.init import init_fresh, load_pretrained_backbone


def _config(model="evit_vit_tiny_patch16_224", img_size=64):
    return ClcaConfig(model=model, img_size=img_size, num_classes=5, keep_rate=(0.5,), clc=True, num_clr=1, ifa_head=True)


@pytest.mark.parametrize("model", ["evit_vit_tiny_patch16_224", "evit_deit3_small_patch16_224", "evit_vit_base_patch16_clip_224"])
def test_timm_weights_are_mapped_with_resized_positions_and_clr_from_cls(model):
    timm_model = timm.create_model(model.split("_", 1)[1], pretrained=False)
    state = timm_model.state_dict()
    clca = ClcaModel(_config(model, img_size=64))
    fresh = load_pretrained_backbone(clca, state)
    ours = clca.state_dict()
    for key in ("blocks.0.attn.qkv.weight", "blocks.11.mlp.fc2.bias", "patch_embed.proj.weight", "cls_token"):
        assert torch.equal(ours[key], state[key])
    assert torch.equal(ours["clr"], state["cls_token"])
    prefix = 0 if "deit3" in model else 1
    assert ours["pos_embed"].shape[1] == prefix + 16 + (prefix and 1)
    assert torch.equal(ours["pos_embed"][:, :prefix], state["pos_embed"][:, :prefix])
    assert all(k.startswith("ifa_head") for k in fresh)


def test_offline_pretrained_download_fails_with_a_clear_message(monkeypatch, tmp_path):
    import huggingface_hub.constants as hub

    # huggingface_hub reads its settings at import time, so patch them where they live:
    # offline, with an empty cache, whatever the machine has downloaded before.
    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ClcaDeployError, match="without --pretrained"):
        load_pretrained_backbone(ClcaModel(_config()))


def test_fresh_init_copies_cls_into_the_register_and_is_seeded():
    torch.manual_seed(0)
    a = ClcaModel(_config())
    torch.manual_seed(0)
    b = ClcaModel(_config())
    init_fresh(a, torch.Generator().manual_seed(3))
    init_fresh(b, torch.Generator().manual_seed(3))
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert torch.equal(a.clr, a.cls_token)
    assert a.blocks[0].attn.qkv.weight.std() < 0.03

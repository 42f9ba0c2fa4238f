"""Inference-only variants of a loaded model, made on a copy: the caller's model is never mutated."""

from __future__ import annotations

import copy

import torch
from timm.layers import resample_abs_pos_embed

from clca_deploy.model.clca import ClcaModel
from clca_deploy.model.config import ClcaConfig
from clca_deploy.model.head import fold_cla_batchnorms


def with_input_size(model: ClcaModel, img_size: int) -> ClcaModel:
    """A copy of ``model`` for a different square input size.

    The patch grid's position embeddings are resampled the way the official code does when
    it loads a pretrained backbone (bicubic; antialias except for CLIP). CLS and CLR rows are
    kept. The result is a different function from the one trained: accuracy must be re-measured.
    """
    if img_size == model.config.img_size:
        return model
    from dataclasses import replace

    config: ClcaConfig = replace(model.config, img_size=img_size)
    resized = ClcaModel(config)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    spec = config.backbone
    prefix = 1 if spec.pos_embed_covers_cls else 0
    suffix = config.num_clr if spec.pos_embed_covers_cls else 0
    pos = state["pos_embed"]
    grid = pos[:, prefix : pos.shape[1] - suffix]
    new_grid = resample_abs_pos_embed(
        grid,
        new_size=(config.grid_size, config.grid_size),
        old_size=(model.config.grid_size, model.config.grid_size),
        num_prefix_tokens=0,
        interpolation="bicubic",
        antialias=not spec.pre_norm,
    )
    state["pos_embed"] = torch.cat([pos[:, :prefix], new_grid, pos[:, pos.shape[1] - suffix :]], dim=1)
    resized.load_state_dict(state, strict=True)
    resized.class_names = model.class_names
    resized.source = model.source
    return resized.eval()


def for_inference(model: ClcaModel) -> ClcaModel:
    """A copy with the CLA head's BatchNorms folded into its convolution (fewer graph nodes)."""
    deployed = copy.deepcopy(model).eval()
    if model.config.ifa_head and model.config.ifa_dws_conv_groups:
        deployed.ifa_head = fold_cla_batchnorms(model.ifa_head)
    return deployed


def with_keep_rate(model: ClcaModel, keep_rate: float) -> ClcaModel:
    """The same weights at another static keep rate (EViT/Top-K weights do not depend on it)."""
    if (keep_rate,) == model.config.keep_rate:
        return model
    variant = ClcaModel(model.config.with_keep_rate(keep_rate))
    variant.load_state_dict(model.state_dict(), strict=True)
    variant.class_names = model.class_names
    variant.source = model.source
    return variant.eval()

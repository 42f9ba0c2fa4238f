"""Inference-only variants of a loaded model, made on a copy: the caller's model is never mutated."""

from __future__ import annotations

import copy

import torch
from timm.layers import resample_abs_pos_embed

from clca_deploy.errors import UnsupportedError
from clca_deploy.model.clca import ClcaModel
from clca_deploy.model.config import ClcaConfig
from clca_deploy.model.head import fold_cla_batchnorms


def _refuse_if_counts_in_weights(model: ClcaModel, config: ClcaConfig, change: str) -> None:
    """SiT and PatchMerger have one weight row per output token: other counts need other weights."""
    kind = model.reducer_kind
    if kind is None or not kind.keep_rate_in_weights:
        return
    from clca_deploy.model.schedule import token_schedule

    trained = [step.keep for step in model.token_schedule() if step.site is not None]
    wanted = [step.keep for step in token_schedule(config) if step.site is not None]
    if trained != wanted:
        raise UnsupportedError(
            f"{config.method} learns one weight row per output token ({trained} at the trained "
            f"settings); {change} would need {wanted}, which these weights do not have. "
            "Export it at the trained keep rate and image size."
        )


def _refuse_unless_clca(model, change: str) -> None:
    if not isinstance(model, ClcaModel):
        raise UnsupportedError(
            f"{change} applies to CLCA token-reduction models; this {model.config.family.upper()} model is exported "
            "at its trained settings: drop the option."
        )


def with_input_size(model: ClcaModel, img_size: int) -> ClcaModel:
    """A copy of ``model`` for a different square input size.

    The patch grid's position embeddings are resampled the way the official code does when
    it loads a pretrained backbone (bicubic; antialias except for CLIP). CLS and CLR rows are
    kept. The result is a different function from the one trained: accuracy must be re-measured.
    """
    if img_size == model.config.img_size:
        return model
    _refuse_unless_clca(model, f"input size {img_size}")
    from dataclasses import replace

    config: ClcaConfig = replace(model.config, img_size=img_size)
    _refuse_if_counts_in_weights(model, config, f"image size {img_size}")
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
    """A copy ready for export: the CLA head's BatchNorms folded into its convolution (fewer
    graph nodes). Refuses models whose official output is NaN (see ``BlockTokens.pools_nothing``).
    A GLSim copy crops with the static-shape GridSample instead of the per-image loop."""
    if not isinstance(model, ClcaModel):
        return model.for_inference()  # the fgir families know their own export form
    config = model.config
    empty = [step.index for step in model.token_schedule() if step.pools_nothing(config)]
    if empty:
        raise UnsupportedError(
            f"{config.model} at keep {list(config.keep_rate)} keeps no token besides the CLS at block "
            f"{empty[0]}; the official code then averages an empty set into the cross-layer cache's GAP "
            "carrier and every logit is NaN. Use a higher keep rate (or a model trained with "
            "clc_pool_cls or without the GAP carrier)."
        )
    deployed = copy.deepcopy(model).eval()
    if model.config.ifa_head and model.config.ifa_dws_conv_groups:
        deployed.ifa_head = fold_cla_batchnorms(model.ifa_head)
    return deployed


def with_keep_rate(model: ClcaModel, keep_rate: float) -> ClcaModel:
    """The same weights at another static keep rate. EViT, Top-K, ToMe, DPC-KNN and
    DynamicViT weights do not depend on it; SiT's and PatchMerger's do (refused)."""
    if (keep_rate,) == model.config.keep_rate:
        return model
    _refuse_unless_clca(model, f"keep rate {keep_rate}")
    config = model.config.with_keep_rate(keep_rate)
    _refuse_if_counts_in_weights(model, config, f"keep rate {keep_rate}")
    variant = ClcaModel(config)
    variant.load_state_dict(model.state_dict(), strict=True)
    variant.class_names = model.class_names
    variant.source = model.source
    return variant.eval()

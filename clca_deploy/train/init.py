"""Initial weights of a training run: timm's recipe for a fresh model, or a pretrained backbone.

Pretrained backbones are mapped the way the official code loads them: the patch grid's
position embeddings resized to the run's grid (bicubic; antialias except for CLIP), the
CLR register initialised as a copy of the CLS token with new position rows (randn * 0.02)
appended at the end, and the classifier left new.
"""

from __future__ import annotations

import torch
from torch import nn
from timm.layers import resample_abs_pos_embed

from clca_deploy.errors import ClcaDeployError
from clca_deploy.model.clca import ClcaModel
from clca_deploy.model.config import split_model_name


def init_fresh(model: ClcaModel, generator: torch.Generator) -> None:
    """timm's ViT initialisation (truncated normal 0.02 for linear layers and position
    embeddings, tiny CLS), which trains much better from scratch than PyTorch's defaults."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02, generator=generator)
                if module.bias is not None:
                    module.bias.zero_()
        nn.init.trunc_normal_(model.pos_embed, std=0.02, generator=generator)
        model.cls_token.normal_(std=1e-6, generator=generator)
        if model.config.num_clr:
            # The official add_clr copies the CLS token into every register.
            model.clr.copy_(model.cls_token.expand_as(model.clr))


def _download_timm_state(model_name: str) -> dict[str, torch.Tensor]:
    import timm

    method, timm_name, tag = split_model_name(model_name)
    name = f"{timm_name}.{tag}" if tag else timm_name
    try:
        backbone = timm.create_model(name, pretrained=True, num_classes=0)
    except (OSError, RuntimeError, ValueError) as exc:
        raise ClcaDeployError(
            f"could not get timm's pretrained weights for '{name}' ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:160]}). They come from the Hugging Face Hub: connect to the "
            "internet once (they are cached in ~/.cache/huggingface), or train from scratch without --pretrained."
        ) from exc
    return backbone.state_dict()


def load_pretrained_backbone(model: ClcaModel, timm_state: dict[str, torch.Tensor] | None = None) -> list[str]:
    """Copy a timm ViT's weights into ``model``; returns the keys left at their fresh values."""
    config = model.config
    state = timm_state if timm_state is not None else _download_timm_state(config.model)
    spec = config.backbone
    own = model.state_dict()
    mapped: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key in ("pos_embed", "head.weight", "head.bias") or key not in own:
            continue
        if own[key].shape != value.shape:
            raise ClcaDeployError(
                f"pretrained '{key}' has shape {tuple(value.shape)}, the model expects {tuple(own[key].shape)}: "
                f"the timm weights do not belong to {config.model}."
            )
        mapped[key] = value
    prefix = 1 if spec.pos_embed_covers_cls else 0
    pos = state["pos_embed"]
    old_grid = int(round((pos.shape[1] - prefix) ** 0.5))
    grid = resample_abs_pos_embed(
        pos[:, prefix:],
        new_size=(config.grid_size, config.grid_size),
        old_size=(old_grid, old_grid),
        num_prefix_tokens=0,
        interpolation="bicubic",
        antialias=not spec.pre_norm,
    )
    rows = [pos[:, :prefix], grid]
    if config.num_clr and spec.pos_embed_covers_cls:
        rows.append(torch.randn(1, config.num_clr, spec.embed_dim) * 0.02)
    mapped["pos_embed"] = torch.cat(rows, dim=1)
    if config.num_clr:
        mapped["clr"] = state["cls_token"].expand(1, config.num_clr, -1).clone()
    model.load_state_dict(mapped, strict=False)
    return sorted(set(own) - set(mapped))

"""A CLCA (timm ViT) backbone's weights under fgir_vit's names, to start an ILA or GLSim run from it.

timm and fgir_vit compute the same encoder with different parameter layouts: timm fuses
q, k and v into one ``attn.qkv`` Linear (output rows ordered q | k | v, each head-major, as
fgir's separate ``proj_q``/``proj_k``/``proj_v`` are) and keeps the output projection inside
the attention (``attn.proj``, fgir: ``blocks.i.proj``). The rest is renaming. Position rows
are kept for the class token and the patch grid (CLCA's CLR rows, appended after the grid,
are dropped) and the grid is resampled when the sizes differ, as the official
``resize_pos_embedding`` does it (scipy ``zoom(order=1)``: linear, corners aligned).

What this cannot carry over is refused by name: LayerScale (DeiT 3) and pre-norm (CLIP)
backbones have no place in fgir_vit's blocks. The LayerNorm eps stays fgir's (1e-12, timm
1e-6): the mapped encoder is a starting point for training, not a conversion.
"""

from __future__ import annotations

import math
from typing import Mapping

import torch
import torch.nn.functional as F

from clca_deploy.errors import ConfigError

# timm block parameter -> fgir block parameter (both under blocks.<i>.)
_BLOCK_NAMES = {
    "norm1.weight": "norm1.weight", "norm1.bias": "norm1.bias",
    "attn.proj.weight": "proj.weight", "attn.proj.bias": "proj.bias",
    "norm2.weight": "norm2.weight", "norm2.bias": "norm2.bias",
    "mlp.fc1.weight": "pwff.fc1.weight", "mlp.fc1.bias": "pwff.fc1.bias",
    "mlp.fc2.weight": "pwff.fc2.weight", "mlp.fc2.bias": "pwff.fc2.bias",
}
_STEM_NAMES = {
    "patch_embed.proj.weight": "patch_embedding.weight",
    "patch_embed.proj.bias": "patch_embedding.bias",
    "cls_token": "class_token",
    "norm.weight": "encoder_norm.weight",
    "norm.bias": "encoder_norm.bias",
}
_UNMAPPABLE = ("ls1.", "ls2.", "norm_pre.")  # LayerScale, CLIP's pre-norm


def resample_grid(pos: torch.Tensor, grid: int) -> torch.Tensor:
    """[1, g*g, D] position rows -> [1, grid*grid, D], bilinear with corners aligned (official zoom order 1)."""
    old = math.isqrt(pos.shape[1])
    if old * old != pos.shape[1]:
        raise ConfigError(f"{pos.shape[1]} patch position rows are not a square grid.")
    if old == grid:
        return pos.clone()
    image = pos.reshape(1, old, old, -1).permute(0, 3, 1, 2).double()
    resized = F.interpolate(image, size=(grid, grid), mode="bilinear", align_corners=True)
    return resized.permute(0, 2, 3, 1).reshape(1, grid * grid, -1).to(pos.dtype)


def timm_to_fgir(
    state: Mapping[str, torch.Tensor], *, depth: int, grid: int, extra_tokens: int = 0
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """(fgir_vit weights, timm keys left out) for a timm-layout ViT state dict.

    ``depth`` is the number of blocks; ``grid`` the fgir model's patch grid side; ``extra_tokens``
    the position rows after the grid (CLCA's CLR registers). Keys are fgir's module names without
    the official ``model.`` prefix. Everything outside the backbone (heads, CLR, reducers) is left out.
    """
    blocked = sorted(k for k in state if k.startswith("blocks.") and any(p in k for p in _UNMAPPABLE))
    blocked += sorted(k for k in state if k.startswith("norm_pre."))
    if blocked:
        raise ConfigError(
            f"this backbone has {', '.join(blocked[:3])}: LayerScale (DeiT 3) and pre-norm (CLIP) ViTs have no "
            "fgir_vit form; start from a CLCA model on a standard ViT (vit_*/deit_*) instead."
        )
    for key in ("patch_embed.proj.weight", "cls_token", "pos_embed"):
        if key not in state:
            raise ConfigError(f"the --init weights have no '{key}'; they are not a timm-layout ViT.")
    mapped: dict[str, torch.Tensor] = {}
    for old, new in _STEM_NAMES.items():
        if old in state:
            mapped[new] = state[old].clone()
    dim = state["cls_token"].shape[-1]
    if "patch_embedding.bias" not in mapped:  # fgir's patch embedding always has a bias
        mapped["patch_embedding.bias"] = torch.zeros(dim, dtype=state["cls_token"].dtype)

    pos = state["pos_embed"]
    patches = pos.shape[1] - 1 - extra_tokens
    if patches < 1:
        raise ConfigError(f"pos_embed has {pos.shape[1]} rows: too few for a class token and {extra_tokens} extra ones.")
    grid_rows = resample_grid(pos[:, 1 : 1 + patches], grid)
    mapped["positional_embedding.pos_embedding"] = torch.cat([pos[:, :1].clone(), grid_rows], dim=1)

    for i in range(depth):
        prefix = f"blocks.{i}."
        qkv = state.get(prefix + "attn.qkv.weight")
        if qkv is None:
            raise ConfigError(f"the --init weights have no '{prefix}attn.qkv.weight': fewer than {depth} blocks.")
        target = f"encoder.blocks.{i}."
        bias = state.get(prefix + "attn.qkv.bias", torch.zeros(3 * dim, dtype=qkv.dtype))  # miil: no qkv bias
        for j, name in enumerate(("proj_q", "proj_k", "proj_v")):
            mapped[f"{target}attn.{name}.weight"] = qkv[j * dim : (j + 1) * dim].clone()
            mapped[f"{target}attn.{name}.bias"] = bias[j * dim : (j + 1) * dim].clone()
        for old, new in _BLOCK_NAMES.items():
            if prefix + old not in state:
                raise ConfigError(f"the --init weights have no '{prefix + old}'; they are not a timm-layout ViT.")
            mapped[target + new] = state[prefix + old].clone()
    if f"blocks.{depth}.attn.qkv.weight" in state:
        raise ConfigError(f"the --init backbone has more than {depth} blocks; pick the fgir_vit size with its depth.")
    used = set(_STEM_NAMES) | {"pos_embed"}
    used |= {f"blocks.{i}.{n}" for i in range(depth) for n in (*_BLOCK_NAMES, "attn.qkv.weight", "attn.qkv.bias")}
    return mapped, sorted(k for k in state if k not in used)

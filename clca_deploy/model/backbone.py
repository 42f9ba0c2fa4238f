"""The ViT backbones CLCA is built on, named by timm model strings.

The paper's nine backbones are four architectures: standard ViT (also DeiT, MoCo v3,
DINO, MAE, which differ only in weights), miil (no qkv bias), DeiT 3 (LayerScale, no
class position embedding) and CLIP (pre-norm, no patch-embed bias, LayerNorm eps 1e-5).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import partial

import torch
from torch import nn
from timm.layers import LayerScale, Mlp

from clca_deploy.errors import ConfigError

# name -> (embed_dim, depth, num_heads), as timm defines them.
_SIZES = {
    "tiny": (192, 12, 3),
    "small": (384, 12, 6),
    "medium": (512, 12, 8),
    "base": (768, 12, 12),
    "large": (1024, 24, 16),
}

_NAME_PATTERN = re.compile(
    r"^(?P<family>vit|deit|deit3)_(?P<size>tiny|small|medium|base|large)"
    r"_patch(?P<patch>\d+)(?P<clip>_clip)?_(?P<res>\d+)(?P<miil>_miil)?$"
)

SUPPORTED_BACKBONES_HELP = (
    "vit_{tiny,small,base,large}_patch16_<res> (ViT, DeiT, MoCo v3, DINO, MAE weights), "
    "deit_{tiny,small,base}_patch16_<res>, deit3_{small,base,large}_patch16_<res>, "
    "vit_base_patch16_224_miil, vit_{tiny,small,base}_patch16_clip_<res>"
)


@dataclass(frozen=True)
class BackboneSpec:
    """Architecture of one ViT variant; everything needed to build it without timm's registry."""

    name: str
    embed_dim: int
    depth: int
    num_heads: int
    patch_size: int
    default_img_size: int
    qkv_bias: bool = True
    pre_norm: bool = False
    norm_eps: float = 1e-6
    pos_embed_covers_cls: bool = True
    layer_scale_init: float | None = None
    mlp_ratio: float = 4.0

    @property
    def kind(self) -> str:
        if self.pre_norm:
            return "clip"
        if self.layer_scale_init is not None:
            return "deit3"
        if not self.qkv_bias:
            return "miil"
        return "standard"


def parse_backbone(timm_name: str) -> BackboneSpec:
    """Backbone spec for a timm ViT name such as ``vit_base_patch16_clip_224`` (tag already removed)."""
    match = _NAME_PATTERN.match(timm_name)
    if not match:
        raise ConfigError(
            f"unknown backbone '{timm_name}'. Supported: {SUPPORTED_BACKBONES_HELP}."
        )
    family, size = match["family"], match["size"]
    clip, miil = bool(match["clip"]), bool(match["miil"])
    if clip and family != "vit" or miil and (family != "vit" or clip):
        raise ConfigError(f"unknown backbone '{timm_name}'. Supported: {SUPPORTED_BACKBONES_HELP}.")
    embed_dim, depth, num_heads = _SIZES[size]
    return BackboneSpec(
        name=timm_name,
        embed_dim=embed_dim,
        depth=depth,
        num_heads=num_heads,
        patch_size=int(match["patch"]),
        default_img_size=int(match["res"]),
        qkv_bias=not miil,
        pre_norm=clip,
        norm_eps=1e-5 if clip else 1e-6,
        pos_embed_covers_cls=family != "deit3",
        layer_scale_init=1e-6 if family == "deit3" else None,
    )


def norm_layer(spec: BackboneSpec) -> partial[nn.LayerNorm]:
    return partial(nn.LayerNorm, eps=spec.norm_eps)


class Attention(nn.Module):
    """Multi-head self-attention computed explicitly, as the official code does, returning the
    post-softmax attention and the keys so that reducers can score and match tokens."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(
        self, x: torch.Tensor, logit_bias: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(output, attention [B, H, N, N], keys [B, H, N, hd]); ``logit_bias`` [B, 1, 1, N] is
        added to the logits before the softmax (ToMe's proportional attention)."""
        batch, tokens, dim = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        logits = (q * self.scale) @ k.transpose(-2, -1)
        if logit_bias is not None:
            logits = logits + logit_bias
        attn = logits.softmax(dim=-1)
        out = (attn @ v).transpose(1, 2).reshape(batch, tokens, dim)
        return self.proj(out), attn, k


class Block(nn.Module):
    """Pre-LN transformer block whose token reduction, if any, runs between attention and MLP.

    State-dict names follow timm (norm1, attn.qkv, attn.proj, ls1, norm2, mlp.fc1, mlp.fc2, ls2).
    """

    def __init__(self, spec: BackboneSpec):
        super().__init__()
        dim = spec.embed_dim
        make_norm = norm_layer(spec)
        self.norm1 = make_norm(dim)
        self.attn = Attention(dim, spec.num_heads, spec.qkv_bias)
        init = spec.layer_scale_init
        self.ls1 = LayerScale(dim, init_values=init) if init else nn.Identity()
        self.norm2 = make_norm(dim)
        self.mlp = Mlp(in_features=dim, hidden_features=int(dim * spec.mlp_ratio), act_layer=nn.GELU)
        self.ls2 = LayerScale(dim, init_values=init) if init else nn.Identity()

    def forward(
        self,
        x: torch.Tensor,
        reducer: nn.Module | None = None,
        token_weights: torch.Tensor | None = None,
        logit_bias: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The block's output and the per-token weights that go with it (changed only by a reducer)."""
        attn_out, attn, keys = self.attn(self.norm1(x), logit_bias)
        x = x + self.ls1(attn_out)
        if reducer is not None:
            x, token_weights = reducer(x, attn=attn, keys=keys, token_weights=token_weights)
        return x + self.ls2(self.mlp(self.norm2(x))), token_weights

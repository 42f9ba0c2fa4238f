"""The fgir_vit encoder shared by the official ILA and GLSim code.

It differs from timm's ViT in ways that change the numbers, so it is written out here:
separate ``proj_q``/``proj_k``/``proj_v`` Linears, an output projection named
``blocks.i.proj`` outside the attention module, LayerNorm eps 1e-12, a patch-embedding
conv with a bias, and the class token first with positions added to it too. Module and
parameter names equal the official state-dict keys after their ``model.`` prefix, so
checkpoints load strictly. Every op is a plain matmul/softmax (no fused attention) so that
fp64 evaluation reproduces the official fp64 logits.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from clca_deploy.model.fgir.config import FgirConfig, VitSpec


class Attention(nn.Module):
    """Multi-head self-attention with separate q/k/v projections; scores / sqrt(head_dim)."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.proj_q = nn.Linear(dim, dim)
        self.proj_k = nn.Linear(dim, dim)
        self.proj_v = nn.Linear(dim, dim)
        self.num_heads = num_heads
        self.scale_divisor = math.sqrt(dim // num_heads)  # the official code divides, by np.sqrt

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, dim = x.shape
        q, k, v = (
            proj(x).reshape(batch, length, self.num_heads, dim // self.num_heads).transpose(1, 2)
            for proj in (self.proj_q, self.proj_k, self.proj_v)
        )
        scores = torch.softmax(q @ k.transpose(-2, -1) / self.scale_divisor, dim=-1)
        return (scores @ v).transpose(1, 2).reshape(batch, length, dim)


class PositionWiseFeedForward(nn.Module):
    def __init__(self, dim: int, ff_dim: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, ff_dim)
        self.fc2 = nn.Linear(ff_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))  # exact (erf) GELU, as the official F.gelu


class Block(nn.Module):
    """Pre-norm transformer block, optionally with ILA's ``--adapter`` bottlenecks.

    ``parallel`` (adapter_path convpass/ours): each adapter reads the normed input and its
    output is added beside the attention / MLP branch. Otherwise (pfeiffer) the MLP adapter
    reads the branch's residual sum. The sums keep the official order, ``(x + h) + a``.
    """

    def __init__(
        self, dim: int, num_heads: int, ff_dim: int, eps: float,
        adapter_attn: nn.Module | None = None, adapter_pwffn: nn.Module | None = None, parallel: bool = False,
    ):
        super().__init__()
        self.attn = Attention(dim, num_heads)
        self.proj = nn.Linear(dim, dim)
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.pwff = PositionWiseFeedForward(dim, ff_dim)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        if adapter_pwffn is not None:
            self.adapter_pwffn = adapter_pwffn
        if adapter_attn is not None:
            self.adapter_attn = adapter_attn
        self.parallel = parallel and (adapter_attn is not None or adapter_pwffn is not None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        attn_adapter = getattr(self, "adapter_attn", None)
        mlp_adapter = getattr(self, "adapter_pwffn", None)
        if self.parallel:
            normed = self.norm1(x)
            x = x + self.proj(self.attn(normed))
            if attn_adapter is not None:
                x = x + attn_adapter(normed)
            normed = self.norm2(x)
            x = x + self.pwff(normed)
            return x + mlp_adapter(normed) if mlp_adapter is not None else x
        x = x + self.proj(self.attn(self.norm1(x)))
        x = x + self.pwff(self.norm2(x))
        return x + mlp_adapter(x) if mlp_adapter is not None else x


def plain_blocks(spec: VitSpec) -> list[Block]:
    return [Block(spec.hidden_size, spec.num_heads, spec.intermediate_size, spec.layer_norm_eps) for _ in range(spec.num_layers)]


class Encoder(nn.Module):
    """``encoder.blocks.*``; with ILA also ``encoder.ila.*`` / ``encoder.ila_ds.*``, one of which
    may run after each block (``plan[i]`` = (attribute name, index) or None)."""

    def __init__(
        self, blocks: Sequence[Block], adapters: dict[str, nn.ModuleList] | None = None,
        plan: Sequence[tuple[str, int] | None] = (),
    ):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        for name, modules in (adapters or {}).items():
            setattr(self, name, modules)
        self.plan = tuple(plan) or (None,) * len(self.blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block, after in zip(self.blocks, self.plan):
            x = block(x)
            if after is not None:
                x = getattr(self, after[0])[after[1]](x)
        return x


class LearnedPositionalEmbedding1D(nn.Module):
    """``positional_embedding.pos_embedding``: one learned row per token, class token included."""

    def __init__(self, seq_len: int, dim: int):
        super().__init__()
        self.pos_embedding = nn.Parameter(torch.zeros(1, seq_len, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.pos_embedding


class FgirVit(nn.Module):
    """Patch embedding, class token, positions, encoder and ``encoder_norm`` (no head).

    Subclasses add the head (ILA) or the crop pass and aggregator (GLSim). Loaded models
    carry ``config`` (FgirConfig), ``class_names`` (None: official checkpoints have none)
    and ``source`` (CheckpointInfo), as ClcaModel does.
    """

    def __init__(self, config: FgirConfig, encoder: Encoder):
        super().__init__()
        spec = config.vit
        self.config = config
        self.class_names: tuple[str, ...] | None = None
        self.source = None  # CheckpointInfo when loaded from a file
        self.patch_embedding = nn.Conv2d(3, spec.hidden_size, spec.patch_size, stride=spec.patch_size)
        self.class_token = nn.Parameter(torch.zeros(1, 1, spec.hidden_size))
        self.positional_embedding = LearnedPositionalEmbedding1D(1 + config.num_patches, spec.hidden_size)
        self.encoder = encoder
        if spec.encoder_norm:
            self.encoder_norm = nn.LayerNorm(spec.hidden_size, eps=spec.layer_norm_eps)

    def token_schedule(self):
        return self.config.token_schedule()

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        x = self.patch_embedding(images).flatten(2).transpose(1, 2)  # row-major patches
        x = torch.cat([self.class_token.expand(x.shape[0], -1, -1), x], dim=1)
        return self.positional_embedding(x)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Every token after the encoder and ``encoder_norm`` (the official norms the whole sequence)."""
        x = self.encoder(self.embed(images))
        norm = getattr(self, "encoder_norm", None)
        return norm(x) if norm is not None else x

"""The one interface every token reduction method implements."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

# Where a method reduces: inside the block between attention and MLP (EViT, Top-K, ToMe),
# or before the block (DPC-KNN, SiT, PatchMerger, DynamicViT).
AFTER_ATTENTION = "after_attention"
BEFORE_BLOCK = "before_block"


class TokenReducer(nn.Module):
    """Reduces a [B, N, D] sequence (CLS first) to a length fixed when the model is built.

    A subclass decides its static output length in ``plan`` (pure Python, so the token
    schedule is known before anything runs) and implements ``forward`` with static shapes
    only: no data-dependent sizes, no Python branching on tensor values.
    """

    stage: ClassVar[str] = AFTER_ATTENTION

    def __init__(self, tokens_in: int, keep: int):
        super().__init__()
        self.tokens_in = tokens_in
        self.keep = keep

    @classmethod
    def plan(cls, tokens_in: int, keep_rate: float, location_index: int, num_patches: int) -> int | None:
        """Number of non-CLS tokens kept, or None when this location does not reduce."""
        raise NotImplementedError

    @classmethod
    def output_length(cls, keep: int) -> int:
        """Sequence length after reduction, CLS included, for a ``plan`` result."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor, attn: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError

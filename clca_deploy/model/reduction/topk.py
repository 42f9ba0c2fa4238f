"""Top-K and EViT: keep the tokens the CLS token attends to most (EViT also fuses the rest)."""

from __future__ import annotations

import math

import torch

from clca_deploy.model.reduction.base import AFTER_ATTENTION, ReductionSite, TokenReducer, gather_tokens


def cls_attention_scores(attn: torch.Tensor) -> torch.Tensor:
    """Head-averaged attention of the CLS query to every other token: [B, H, N, N] -> [B, N-1]."""
    return attn[:, :, 0, 1:].mean(dim=1)


class TopKReducer(TokenReducer):
    """Keeps the top ``keep`` tokens by CLS attention, in descending score order; drops the rest."""

    stage = AFTER_ATTENTION

    @classmethod
    def plan(cls, site: ReductionSite) -> int | None:
        # One rate at every location (not compounded), as a share of the current length.
        if site.rate >= 1.0:
            return None
        # Same float64 arithmetic as the official code, so the counts agree exactly.
        keep = math.ceil(site.rate * (site.tokens_in - 1))
        return None if keep == site.tokens_in - 1 else keep

    def _select(self, x: torch.Tensor, attn: torch.Tensor):
        scores = cls_attention_scores(attn)
        _, index = torch.topk(scores, self.keep, dim=1, largest=True, sorted=True)
        others = x[:, 1:]
        return scores, index, others, gather_tokens(others, index)

    def forward(self, x, attn=None, keys=None, token_weights=None):
        _, _, _, kept = self._select(x, attn)
        return torch.cat([x[:, :1], kept], dim=1), token_weights


class EViTReducer(TopKReducer):
    """Top-K plus one fused token: the attention-weighted sum of the tokens not kept.

    The official code builds the complement with scatter + sort; a keep-mask gives the same
    sum without a data-dependent sort (only the float summation order differs).
    """

    @classmethod
    def output_length(cls, keep: int, site: ReductionSite) -> int:
        return keep + 2

    def forward(self, x, attn=None, keys=None, token_weights=None):
        scores, index, others, kept = self._select(x, attn)
        kept_mask = torch.zeros_like(scores).scatter(1, index, 1.0)
        # Raw attention weights, not renormalised, as in the official code.
        dropped_weights = scores * (1.0 - kept_mask)
        fused = (others * dropped_weights.unsqueeze(-1)).sum(dim=1, keepdim=True)
        return torch.cat([x[:, :1], kept, fused], dim=1), token_weights

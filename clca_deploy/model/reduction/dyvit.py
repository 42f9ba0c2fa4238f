"""DynamicViT at inference: a learned predictor scores the tokens, the top ones are kept
(official ``models/dyvit.py``, eval branch).

The official ``argsort(descending)[:, :k]`` is a TopK with a static K: same tokens, same
(descending score) order. The predictor's policy, which the official code carries along to
average its global feature over live tokens only, is carried as the model's token weights:
ones at the start, gathered with the kept tokens, zeros for re-inserted cached tokens.

One deviation, in a case the official code leaves undefined: when no live token is left
(the previous selection kept only cached tokens, so the policy is all zeros), the official
global feature is 0/0 and every score NaN; which tokens ``argsort`` then keeps depends on
torch's sort implementation (it varies with the row length). Here the first tokens in
sequence order are kept, the same in every runtime.
"""

from __future__ import annotations

import torch
from torch import nn

from clca_deploy.model.backbone import BackboneSpec
from clca_deploy.model.reduction.base import BEFORE_BLOCK, ReductionSite, TokenReducer, gather_tokens

# Added to the policy-weighted mean of the global half, as in the official PredictorLG.
PREDICTOR_EPS = 1e-6


class DynamicViTReducer(TokenReducer):
    """PredictorLG (keys ``score_predictor.{j}.in_conv.*`` / ``out_conv.*``) + top-k selection."""

    stage = BEFORE_BLOCK
    state_dict_name = "score_predictor"
    reinserted_weight = 0.0  # the official eval policy marks cached tokens as not live
    weights_from_start = True

    @classmethod
    def plan(cls, site: ReductionSite) -> int | None:
        if site.clc:
            # With the cache the official count is relative to the current length, and it
            # always uses the first rate: int((N - 2) * kr).
            keep = int((site.tokens_in - 2) * site.keep_rates[0])
        else:
            rate = site.rate if len(site.keep_rates) > 1 else site.keep_rates[0] ** (site.location_index + 1)
            keep = int((site.initial_tokens - 1) * rate)
            if keep >= site.tokens_in - 1:
                return None  # keeps everything: only the token order would change
        return keep  # may be 0: the official block then runs on the CLS alone

    @classmethod
    def extra_macs(cls, keep: int, site: ReductionSite, spec: BackboneSpec) -> int:
        n, d = site.tokens_in - 1, spec.embed_dim
        norm = n * d
        linears = n * d * d + n * d * (d // 2) + n * (d // 2) * (d // 4) + n * (d // 4) * 2
        policy_weighting = n * (d // 2)
        return norm + linears + policy_weighting

    def __init__(self, site: ReductionSite, keep: int | None, spec: BackboneSpec):
        super().__init__(site, keep, spec)
        dim = spec.embed_dim
        # nn.LayerNorm's default eps (1e-5), as in the official predictor.
        self.in_conv = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim), nn.GELU())
        self.out_conv = nn.Sequential(
            nn.Linear(dim, dim // 2),
            nn.GELU(),
            nn.Linear(dim // 2, dim // 4),
            nn.GELU(),
            nn.Linear(dim // 4, 2),
            nn.LogSoftmax(dim=-1),
        )
        # Without live tokens: keep the first ones (a descending key over positions).
        self.register_buffer("earlier_first", -torch.arange(site.tokens_in - 1, dtype=torch.float32), persistent=False)

    def keep_scores(self, tokens: torch.Tensor, policy: torch.Tensor) -> torch.Tensor:
        """Log-probability of "keep" for each token: [B, N, D], [B, N, 1] -> [B, N]."""
        features = self.in_conv(tokens)
        half = features.shape[-1] // 2
        local, global_part = features[..., :half], features[..., half:]
        pooled = (global_part * policy).sum(dim=1, keepdim=True) / policy.sum(dim=1, keepdim=True) + PREDICTOR_EPS
        features = torch.cat([local, pooled.expand(-1, tokens.shape[1], -1)], dim=-1)
        return self.out_conv(features)[..., 0]

    def forward(self, x, attn=None, keys=None, token_weights=None):
        if self.keep == 0:
            return x[:, :1], token_weights[:, :1]
        policy = token_weights[:, 1:]  # the CLS slot is not part of the official policy
        scores = self.keep_scores(x[:, 1:], policy)
        scores = torch.where(policy.sum(dim=1) > 0, scores, self.earlier_first)
        _, kept = torch.topk(scores, self.keep, dim=1, largest=True, sorted=True)
        x = torch.cat([x[:, :1], gather_tokens(x[:, 1:], kept)], dim=1)
        token_weights = torch.cat([token_weights[:, :1], gather_tokens(policy, kept)], dim=1)
        return x, token_weights

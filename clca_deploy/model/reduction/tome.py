"""ToMe: bipartite soft matching merges the most similar tokens (official ``models/tome.py``).

Static rewrite of the official merge, token order included (the order matters: the next
bipartite split and the cache's "last n tokens" rule depend on it):

- the even positions (A, CLS first) are matched to the odd ones (B) by cosine similarity of
  the head-averaged keys; the CLS row is -inf, so it is never merged;
- ``argsort(descending)`` of each A token's best score, of which the official code merges
  the first ``r``, becomes a TopK with K = r (static); the rest stay, in position order, picked
  by a second TopK (K = |A| - r) over a key that puts the merged tokens last;
- ``scatter_add`` (no TensorRT form for its "mean"; "add" needs opset 16 reductions) becomes
  a MatMul with a 0/1 assignment matrix: B_j + sum of the A tokens assigned to j. Sums and
  sizes go through the same matrix, and the output is sum / size, as ``merge_wavg`` does.

Only the float summation order of the merged sums differs from the official code.
"""

from __future__ import annotations

import torch

from clca_deploy.model.backbone import BackboneSpec
from clca_deploy.model.reduction.base import (
    AFTER_ATTENTION, ReductionSite, TokenReducer, gather_tokens, one_hot_rows, single_rate_only,
)


def merge_budget(site: ReductionSite) -> int:
    """The official r at this location: previous target minus this one, targets compounded."""
    previous = site.num_patches if site.location_index == 0 else int(
        site.num_patches * (site.keep_rates[0] ** site.location_index)
    )
    return previous - site.compounded_count()


class ToMeReducer(TokenReducer):
    """Merges ``r = tokens_in - 1 - keep`` tokens of set A into set B, static shapes throughout."""

    stage = AFTER_ATTENTION
    reinserted_weight = 1.0  # a cached token is one token: size 1
    weights_bias_attention = True

    @classmethod
    def check_keep_rates(cls, keep_rates, num_locations):
        single_rate_only("ToMe", keep_rates)

    @classmethod
    def plan(cls, site: ReductionSite) -> int | None:
        # The official matching merges at most half of the non-CLS tokens.
        merged = min(merge_budget(site), (site.tokens_in - 1) // 2)
        # r <= 0 merges nothing; the official sizes become ones, which changes nothing.
        return None if merged <= 0 else site.tokens_in - 1 - merged

    @classmethod
    def extra_macs(cls, keep: int, site: ReductionSite, spec: BackboneSpec) -> int:
        t = site.tokens_in
        out = keep + 1
        head_dim = spec.embed_dim // spec.num_heads
        matching = ((t + 1) // 2) * (t // 2) * head_dim  # a @ b^T of the normalised keys
        weighting = t * spec.embed_dim  # x * size before merging
        # The official block also multiplies its [t, t-r] source map twice (visualisation
        # only, dropped here, but torchprofile counts it in the official figures).
        source_map = 2 * t * out
        return matching + weighting + source_map

    def __init__(self, site: ReductionSite, keep: int | None, spec: BackboneSpec):
        super().__init__(site, keep, spec)
        tokens = site.tokens_in
        self.size_a = (tokens + 1) // 2  # even positions, CLS included
        self.size_b = tokens // 2
        self.merged = tokens - 1 - keep if keep is not None else 0
        # Row 0 of the scores is the CLS (protected): -inf, as in the official code.
        protect = torch.zeros(self.size_a, 1)
        protect[0] = float("-inf")
        self.register_buffer("cls_protection", protect, persistent=False)
        # Merged A tokens sort after every unmerged one; unmerged ones by position.
        self.register_buffer("positions_a", torch.arange(self.size_a, dtype=torch.float32), persistent=False)

    def forward(self, x, attn=None, keys=None, token_weights=None):
        metric = keys.mean(dim=1)  # [B, N, hd]: keys averaged over heads, the official metric
        metric = metric / metric.norm(dim=-1, keepdim=True)
        scores = metric[:, ::2] @ metric[:, 1::2].transpose(-1, -2)  # [B, A, B]
        scores = scores + self.cls_protection
        best_score, best_match = scores.max(dim=-1)  # each A token's most similar B token
        # The official argsort(descending)[:r]: the r best-matched A tokens (official src_idx).
        _, merged_a = torch.topk(best_score, self.merged, dim=-1, largest=True, sorted=True)
        is_merged = torch.zeros_like(best_score).scatter(1, merged_a, 1.0)
        # The ascending positions of the unmerged A tokens (official unm_idx, sorted).
        sort_key = -(self.positions_a + is_merged * self.size_a)
        _, kept_a = torch.topk(sort_key, self.size_a - self.merged, dim=-1, largest=True, sorted=True)
        destination = torch.gather(best_match, 1, merged_a)  # official dst_idx

        sizes = token_weights if token_weights is not None else torch.ones_like(x[..., :1])
        weighted = x * sizes if token_weights is not None else x
        a_tokens, b_tokens = weighted[:, ::2], weighted[:, 1::2]
        a_sizes, b_sizes = sizes[:, ::2], sizes[:, 1::2]
        assign = one_hot_rows(destination, self.size_b, x.dtype).transpose(1, 2)  # [B, B, r]
        b_tokens = b_tokens + assign @ gather_tokens(a_tokens, merged_a)
        b_sizes = b_sizes + assign @ gather_tokens(a_sizes, merged_a)
        sums = torch.cat([gather_tokens(a_tokens, kept_a), b_tokens], dim=1)
        new_sizes = torch.cat([gather_tokens(a_sizes, kept_a), b_sizes], dim=1)
        return sums / new_sizes, new_sizes

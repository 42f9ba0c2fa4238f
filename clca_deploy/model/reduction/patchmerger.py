"""PatchMerger: K learned queries attend over the (normalised) tokens (official ``models/patchmerger.py``).

Already static: LayerNorm -> queries @ tokens^T -> softmax over the tokens -> @ tokens. The
output slots are mixtures of the *normalised* tokens, as in the official module. K is
``int(patches * kr^(j+1))`` and is the number of query rows in the weights; K = 0 leaves the
CLS alone, returned directly (see ``sit.py``).
"""

from __future__ import annotations

import torch
from torch import nn

from clca_deploy.model.backbone import BackboneSpec
from clca_deploy.model.reduction.base import BEFORE_BLOCK, ReductionSite, TokenReducer, single_rate_only


class PatchMergerReducer(TokenReducer):
    """Keys ``cluster_layers.{j}.queries`` [K, D] and ``cluster_layers.{j}.norm.*``."""

    stage = BEFORE_BLOCK
    state_dict_name = "cluster_layers"
    keep_rate_in_weights = True

    @classmethod
    def check_keep_rates(cls, keep_rates, num_locations):
        single_rate_only("PatchMerger", keep_rates)

    @classmethod
    def plan(cls, site: ReductionSite) -> int | None:
        return site.compounded_count()

    @classmethod
    def extra_macs(cls, keep: int, site: ReductionSite, spec: BackboneSpec) -> int:
        n, d = site.tokens_in - 1, spec.embed_dim
        # LayerNorm, queries @ tokens^T, the (unit) scale multiply, attention @ tokens.
        return n * d + keep * d * n + keep * n + keep * n * d

    def __init__(self, site: ReductionSite, keep: int | None, spec: BackboneSpec):
        super().__init__(site, keep, spec)
        dim = spec.embed_dim
        self.norm = nn.LayerNorm(dim)  # default eps 1e-5, as in the official module
        self.queries = nn.Parameter(torch.randn(keep, dim))

    def forward(self, x, attn=None, keys=None, token_weights=None):
        if self.keep == 0:
            return x[:, :1], token_weights
        tokens = self.norm(x[:, 1:])
        # The official similarity is multiplied by a scale of 1.0 (scaled_attention off): omitted.
        attention = torch.softmax(self.queries @ tokens.transpose(1, 2), dim=-1)
        return torch.cat([x[:, :1], attention @ tokens], dim=1), token_weights

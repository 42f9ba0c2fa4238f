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
from clca_deploy.model.reduction.base import ReductionSite, SlotReducer


class PatchMergerReducer(SlotReducer):
    """Keys ``cluster_layers.{j}.queries`` [K, D] and ``cluster_layers.{j}.norm.*``."""

    method_label = "PatchMerger"

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

    def slots(self, tokens):
        tokens = self.norm(tokens)
        # The official similarity is multiplied by a scale of 1.0 (scaled_attention off): omitted.
        attention = torch.softmax(self.queries @ tokens.transpose(1, 2), dim=-1)
        return attention @ tokens

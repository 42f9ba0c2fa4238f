"""SiT token slimming: a learned soft assignment of all tokens to K slots (official ``models/sit.py``).

Already static: LayerNorm -> MLP -> softmax over the tokens -> [K, N] @ [N, D]. K is
``int(patches * kr^(j+1))`` and is baked into the weights (the last Linear has K outputs).
When K is 0 (e.g. keep 0.1 at the third of three locations) the official module outputs
no tokens and the block runs on the CLS alone; here the reducer then returns the CLS
directly, which is the same result without a zero-sized MatMul in the graph.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from clca_deploy.model.backbone import BackboneSpec
from clca_deploy.model.reduction.base import ReductionSite, SlotReducer


class SiTReducer(SlotReducer):
    """TokenSlimmingModule: keys ``cluster_layers.{j}.weight.{0,1,3}.*`` and ``cluster_layers.{j}.scale``."""

    method_label = "SiT"

    @classmethod
    def extra_macs(cls, keep: int, site: ReductionSite, spec: BackboneSpec) -> int:
        n, d = site.tokens_in - 1, spec.embed_dim
        hidden = int(d * 0.5)
        # LayerNorm, the two Linears, the softmax-temperature multiply, the slot bmm.
        return n * d + n * d * hidden + n * hidden * keep + n * keep + keep * n * d

    def __init__(self, site: ReductionSite, keep: int | None, spec: BackboneSpec):
        super().__init__(site, keep, spec)
        dim = spec.embed_dim
        hidden = int(dim * 0.5)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # K = 0: a 0-row Linear, as in the official checkpoint
            slots = nn.Linear(hidden, keep)
        # nn.LayerNorm's default eps (1e-5), as in the official module.
        self.weight = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, hidden), nn.GELU(), slots)
        self.scale = nn.Parameter(torch.ones(1, 1, 1))

    def slots(self, tokens):
        assignment = torch.softmax(self.weight(tokens) * self.scale, dim=1)  # over the tokens
        return assignment.transpose(1, 2) @ tokens

"""Cross-layer cache (CLC): carrier tokens cached after early blocks and re-inserted later."""

from __future__ import annotations

import torch

from clca_deploy.model.schedule import BlockTokens


class CrossLayerCache:
    """Per-forward state of the CLC. Every length and slice comes from the static schedule,
    so the traced graph has no data-dependent shapes.

    Carriers per cached layer are ``[gap, clr_1..clr_n]``: the mean of the tokens in the
    pooling window, and "the last n tokens", whatever they are at that point (after a
    recovery these are re-inserted copies, a quirk of the official code kept on purpose).
    """

    def __init__(self, include_gap: bool, pool_cls: bool, num_clr: int):
        self.include_gap = include_gap
        self.pool_start = 0 if pool_cls else 1
        self.num_clr = num_clr
        self.pending: list[torch.Tensor] = []

    def after_block(self, x: torch.Tensor, step: BlockTokens) -> torch.Tensor:
        if step.reinserted:
            x = torch.cat([x, *self.pending], dim=1)
            self.pending = []
        if step.cached:
            carriers = []
            if self.include_gap:
                carriers.append(x[:, self.pool_start : step.pool_end].mean(dim=1, keepdim=True))
            if self.num_clr:
                end = step.tokens_next
                carriers.append(x[:, end - self.num_clr : end])
            self.pending.append(torch.cat(carriers, dim=1) if len(carriers) > 1 else carriers[0])
        return x

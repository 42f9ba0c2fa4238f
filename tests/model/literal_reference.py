"""A second, deliberately literal CLCA forward for tests, written from clca_reference.md section 2.

It computes every length from tensor shapes at run time, builds the EViT complement with
scatter + sort as the official code does, and keeps the cache as a Python list: nothing is
shared with the static-schedule forward except the weights. Agreement between the two over
many flag combinations shows that the static schedule reproduces the official control flow.
The other methods' literal steps are in ``literal_methods.py``.
"""

from __future__ import annotations

import math

import torch

from clca_deploy.model.clca import ClcaModel
from tests.model.literal_methods import LiteralState, reduce_before_block, tome_attention, tome_merge

BEFORE_BLOCK_METHODS = ("dpcknn", "dyvit", "sit", "patchmerger")


def _complement(index: torch.Tensor, size: int) -> torch.Tensor:
    rows = torch.arange(size).expand(index.shape[0], -1)
    marked = torch.scatter(rows, 1, index, 0)
    ordered, _ = torch.sort(marked, dim=1)
    return ordered[:, index.shape[1] :]


def _tome_block(model: ClcaModel, i: int, x: torch.Tensor, state: LiteralState) -> torch.Tensor:
    block = model.blocks[i]
    out, metric = tome_attention(block, block.norm1(x), state.sizes)
    x = x + block.ls1(out)
    if i in model.config.reduction_loc:
        merges = state.merges[model.config.reduction_loc.index(i)]
        if merges > 0:
            x, state.sizes = tome_merge(x, state.sizes, metric, merges)
    return x + block.ls2(block.mlp(block.norm2(x)))


def _block(model: ClcaModel, i: int, x: torch.Tensor, keep_rate: float) -> torch.Tensor:
    block = model.blocks[i]
    batch, n, dim = x.shape
    out, attn, _ = block.attn(block.norm1(x))
    x = x + block.ls1(out)
    if keep_rate < 1:
        left = math.ceil(keep_rate * (n - 1))
        if left != n - 1:
            scores = attn[:, :, 0, 1:].mean(dim=1)
            _, idx = torch.topk(scores, left, dim=1, largest=True, sorted=True)
            others = x[:, 1:]
            kept = torch.gather(others, 1, idx.unsqueeze(-1).expand(-1, -1, dim))
            parts = [x[:, :1], kept]
            if model.config.method == "evit":
                comp = _complement(idx, n - 1)
                dropped = torch.gather(others, 1, comp.unsqueeze(-1).expand(-1, -1, dim))
                weights = torch.gather(scores, 1, comp)
                parts.append((dropped * weights.unsqueeze(-1)).sum(dim=1, keepdim=True))
            x = torch.cat(parts, dim=1)
    return x + block.ls2(block.mlp(block.norm2(x)))


@torch.no_grad()
def literal_forward(model: ClcaModel, images: torch.Tensor) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """Logits and (tokens in, tokens out) per block, computed the official way."""
    cfg = model.config
    depth = cfg.backbone.depth
    rates = [1.0] * depth
    if cfg.method in ("evit", "topk"):
        per_loc = cfg.keep_rate * len(cfg.reduction_loc) if len(cfg.keep_rate) == 1 else cfg.keep_rate
        for loc, rate in zip(cfg.reduction_loc, per_loc):
            rates[loc] = rate
    recovery = list(cfg.reduction_loc) + ([depth - 2] if cfg.clc_recover_at_last else [])
    x = model.embed(images)
    state, initial = LiteralState(model, x), x.shape[1]
    cache, cls_list, counts = [], [], []
    pool_end = x.shape[1] - cfg.num_clr if cfg.num_clr and not cfg.clc_pool_clr else x.shape[1]
    for i in range(depth):
        if cfg.method in BEFORE_BLOCK_METHODS and i in cfg.reduction_loc:
            x = reduce_before_block(model, x, cfg.reduction_loc.index(i), state, initial)
        n_in = x.shape[1]
        x = _tome_block(model, i, x, state) if cfg.method == "tome" else _block(model, i, x, rates[i])
        counts.append((n_in, x.shape[1]))
        if cfg.clc and i in recovery:
            pool_end = x.shape[1]
            reinserted = torch.cat(cache, dim=1)
            x = torch.cat([x, reinserted], dim=1)
            state.after_recovery(reinserted.shape[1])
            cache = []
        if cfg.clc and i < recovery[-1]:
            carriers = []
            if cfg.clc_include_gap:
                start = 0 if cfg.clc_pool_cls else 1
                carriers.append(x[:, start:pool_end].mean(dim=1, keepdim=True))
            if cfg.num_clr:
                carriers.append(x[:, -cfg.num_clr :])
            cache.append(torch.cat(carriers, dim=1))
        if i in cfg.reduction_loc or i == depth - 1:
            cls_list.append(x[:, 0])
    if cfg.ifa_head:
        return model.ifa_head(torch.stack(cls_list, dim=-1)), counts
    return model.head(model.norm(x)[:, 0]), counts

"""Literal transcriptions of the official ToMe, DPC-KNN, DynamicViT, SiT and PatchMerger steps,
for tests, written from clca_reference.md section 3 and the official model files.

Everything here is dynamic on purpose, as in the official code: counts come from tensor
shapes at run time, ToMe uses argsort and scatter_add, DPC-KNN uses torch.cdist, boolean
masks, argmin and index_add_, DynamicViT uses argsort and flat index selection. Nothing is
shared with the static reducers except the weights. Two deliberate differences, both
documented in the static code: DPC-KNN adds no random noise (equal densities: the earlier
token counts as the denser), and callers run it in float64, where cdist is exact.
"""

from __future__ import annotations

import math

import torch

from clca_deploy.model.clca import ClcaModel


def compounded_counts(model: ClcaModel) -> list[int]:
    cfg = model.config
    return [int(cfg.num_patches * cfg.keep_rate[0] ** (j + 1)) for j in range(len(cfg.reduction_loc))]


class LiteralState:
    """Per-forward bookkeeping of the official models: ToMe sizes, DynamicViT policy, DPC-KNN suffix."""

    def __init__(self, model: ClcaModel, x: torch.Tensor):
        cfg = model.config
        self.sizes = None
        self.policy = torch.ones(x.shape[0], x.shape[1] - 1, 1, dtype=x.dtype)
        self.suffix = cfg.num_clr
        prev, self.merges = cfg.num_patches, []
        for count in compounded_counts(model):
            self.merges.append(prev - count)
            prev = count

    def after_recovery(self, reinserted: int) -> None:
        batch = self.policy.shape[0]
        if self.sizes is not None:
            self.sizes = torch.cat([self.sizes, torch.ones(batch, reinserted, 1, dtype=self.sizes.dtype)], dim=1)
        self.policy = torch.cat([self.policy, torch.zeros(batch, reinserted, 1, dtype=self.policy.dtype)], dim=1)
        self.suffix += reinserted


# --- ToMe (inside the block, after attention) ----------------------------------------------
def tome_attention(block, x: torch.Tensor, sizes):
    attn_mod = block.attn
    batch, n, dim = x.shape
    qkv = attn_mod.qkv(x).reshape(batch, n, 3, attn_mod.num_heads, attn_mod.head_dim).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)
    logits = (q * attn_mod.scale) @ k.transpose(-2, -1)
    if sizes is not None:
        logits = logits + sizes.log()[:, None, None, :, 0]
    out = (logits.softmax(-1) @ v).transpose(1, 2).reshape(batch, n, dim)
    return attn_mod.proj(out), k.mean(1)


def tome_merge(x: torch.Tensor, sizes, metric: torch.Tensor, r: int):
    r = min(r, (metric.shape[1] - 1) // 2)
    if r <= 0:
        return x, torch.ones_like(x[..., :1]) if sizes is None else sizes
    metric = metric / metric.norm(dim=-1, keepdim=True)
    scores = metric[:, ::2] @ metric[:, 1::2].transpose(-1, -2)
    scores[:, 0, :] = -math.inf
    best, match = scores.max(dim=-1)
    order = best.argsort(dim=-1, descending=True)[..., None]
    unmerged, merged = order[:, r:], order[:, :r]
    unmerged = unmerged.sort(dim=1)[0]
    target = match[..., None].gather(1, merged)

    def merge(t):
        src, dst = t[:, ::2], t[:, 1::2]
        c = t.shape[-1]
        kept = src.gather(1, unmerged.expand(-1, -1, c))
        moved = src.gather(1, merged.expand(-1, -1, c))
        dst = dst.scatter_add(1, target.expand(-1, -1, c), moved)
        return torch.cat([kept, dst], dim=1)

    sizes = torch.ones_like(x[..., :1]) if sizes is None else sizes
    summed, sizes = merge(x * sizes), merge(sizes)
    return summed / sizes, sizes


# --- DPC-KNN (before the block) ---------------------------------------------------------------
def dpcknn_cluster(layer, tokens: torch.Tensor, clusters: int, neighbours: int, equal_weight: bool):
    batch, n, c = tokens.shape
    dist = torch.cdist(tokens, tokens) / (c**0.5)
    nearest, _ = torch.topk(dist, k=neighbours, dim=-1, largest=False)
    density = (-(nearest**2).mean(dim=-1)).exp()
    earlier = torch.arange(n)[None, :] < torch.arange(n)[:, None]
    mask = (density[:, None, :] > density[:, :, None]) | ((density[:, None, :] == density[:, :, None]) & earlier)
    mask = mask.to(tokens.dtype)
    dist_max = dist.flatten(1).max(dim=-1)[0][:, None, None]
    parent, _ = (dist * mask + dist_max * (1 - mask)).min(dim=-1)
    _, centers = torch.topk(parent * density, k=clusters, dim=-1)
    rows = dist[torch.arange(batch)[:, None], centers]
    assignment = rows.argmin(dim=1)
    assignment[torch.arange(batch)[:, None].expand(-1, clusters).reshape(-1), centers.reshape(-1)] = (
        torch.arange(clusters)[None, :].expand(batch, -1).reshape(-1)
    )
    weight = torch.ones(batch, n, 1, dtype=tokens.dtype) if equal_weight else layer.score(tokens).exp()
    flat = (assignment + torch.arange(batch)[:, None] * clusters).reshape(-1)
    totals = torch.zeros(batch * clusters, 1, dtype=tokens.dtype).index_add_(0, flat, weight.reshape(-1, 1)) + 1e-6
    share = weight / totals[flat].reshape(batch, n, 1)
    merged = torch.zeros(batch * clusters, c, dtype=tokens.dtype).index_add_(0, flat, (tokens * share).reshape(-1, c))
    return merged.reshape(batch, clusters, c)


def dpcknn_counts(model: ClcaModel) -> list[int]:
    counts = compounded_counts(model)
    last = len(counts) - 1
    return [5 if j != last and n <= 5 else (1 if j == last and n == 0 else n) for j, n in enumerate(counts)]


# --- DynamicViT (before the block, eval) ---------------------------------------------------
def dyvit_select(predictor, x: torch.Tensor, policy: torch.Tensor, keep: int):
    spatial = x[:, 1:]
    feats = predictor.in_conv(spatial)
    half = feats.shape[-1] // 2
    pooled = (feats[..., half:] * policy).sum(dim=1, keepdim=True) / policy.sum(dim=1, keepdim=True) + 1e-6
    feats = torch.cat([feats[..., :half], pooled.expand(-1, spatial.shape[1], -1)], dim=-1)
    score = predictor.out_conv(feats)[:, :, 0]
    kept = torch.argsort(score, dim=1, descending=True)[:, :keep]
    # No live token left: all scores are NaN and the official order is torch's sort detail;
    # the static code (and so this transcription) keeps the first tokens.
    no_live = policy.sum(dim=(1, 2)) == 0
    kept[no_live] = torch.arange(keep)
    index = torch.cat([torch.zeros(x.shape[0], 1, dtype=kept.dtype), kept + 1], dim=1)
    batch, n, c = x.shape
    offset = torch.arange(batch)[:, None] * n
    x = x.reshape(batch * n, c)[(index + offset).reshape(-1)].reshape(batch, -1, c)
    flat_policy = policy.reshape(batch, -1)
    policy = flat_policy.reshape(-1)[(kept + torch.arange(batch)[:, None] * flat_policy.shape[1]).reshape(-1)]
    return x, policy.reshape(batch, -1, 1)


def dyvit_keep(model: ClcaModel, x: torch.Tensor, location: int, initial: int) -> int:
    cfg = model.config
    if cfg.clc:
        return int((x.shape[1] - 2) * cfg.keep_rate[0])
    return int((initial - 1) * cfg.keep_rate[0] ** (location + 1))


# --- SiT / PatchMerger (before the block) --------------------------------------------------
def sit_slim(layer, tokens: torch.Tensor) -> torch.Tensor:
    weight = torch.softmax(layer.weight(tokens) * layer.scale, dim=1).transpose(2, 1)
    return torch.bmm(weight, tokens)


def patchmerger_merge(layer, tokens: torch.Tensor) -> torch.Tensor:
    tokens = layer.norm(tokens)
    return torch.matmul(torch.matmul(layer.queries, tokens.transpose(-1, -2)).softmax(dim=-1), tokens)


def reduce_before_block(model: ClcaModel, x: torch.Tensor, location: int, state: LiteralState, initial: int):
    cfg = model.config
    method = cfg.method
    if method == "dyvit":
        keep = dyvit_keep(model, x, location, initial)
        x, state.policy = dyvit_select(model.score_predictor[location], x, state.policy, keep)
        return x
    layer = model.cluster_layers[location]
    if method == "dpcknn":
        end = x.shape[1] - state.suffix
        merged = dpcknn_cluster(layer, x[:, 1:end], dpcknn_counts(model)[location], cfg.k_neighbors, cfg.equal_weight)
        return torch.cat([x[:, :1], merged, x[:, end:]], dim=1)
    slim = sit_slim if method == "sit" else patchmerger_merge
    return torch.cat([x[:, :1], slim(layer, x[:, 1:])], dim=1)

"""DPC-KNN clustering (TCFormer's CTM; official ``models/dpcknn.py``), static and deterministic.

The tokens between the CLS and the suffix (CLR registers and every re-inserted cached token,
which the official code never clusters) are grouped into K clusters, each replaced by the
average of its tokens weighted by exp(score). The official steps, and how they are written here:

- **distances.** ``torch.cdist`` in fp32 uses |a|^2 + |b|^2 - 2 a.b (a GEMM) above 25 tokens.
  For near pairs that cancels catastrophically: on the golden fixture's tokens (|x|^2 ~ 7e4,
  nearest-neighbour d^2 ~ 8) it errs by up to 1% and moves densities by 2e-4 (relative),
  200x the official tie-breaking noise, so the official clustering is decided by the BLAS
  rounding of the machine it runs on; no other runtime (onnxruntime, TensorRT) reproduces
  it. Here distances come in two passes: a MatMul (on tokens centred per image, which
  changes no distance and shrinks the cancellation) ranks candidates, and every distance that
  decides something is recomputed exactly as sqrt(sum (a - b)^2) for a few candidates: the
  k + 3 nearest for the density, the 4 nearest denser tokens for the parent distance, the 3
  nearest centers for the assignment. The result is the official algorithm in exact
  arithmetic (float64 gives the same decisions), identical across runtimes up to fp32 noise;
- density: exp(-mean of the k smallest squared distances);
- **no random noise.** The official code adds U(0, 1e-6) to every density "to ensure no tokens
  have the same density" before ranking them. Here ties are broken deterministically: of two
  tokens with exactly equal density (e.g. both underflowed to 0, which happens on the
  fixtures), the one earlier in the sequence counts as the denser. That is the strict order
  the noise was meant to give, with the same result everywhere;
- parent distance (to the nearest denser token, else the largest distance of all), score =
  parent distance x density, centers = TopK(score, K), descending (equal scores: lower index
  first, as the ONNX TopK spec says);
- assignment: the nearest center (first on ties, like torch's argmin), each center forced
  into its own cluster;
- ``index_add_`` merging becomes MatMuls with the 0/1 assignment matrix [K, N]: cluster
  weights, per-token normalised weights and the weighted sums, as in ``merge_tokens``.

The token bookkeeping the official code keeps for visualisation (idx_token, agg_weight) is
dropped: it never reaches the output.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from clca_deploy.errors import ConfigError
from clca_deploy.model.backbone import BackboneSpec
from clca_deploy.model.reduction.base import (
    BEFORE_BLOCK, ReductionSite, TokenReducer, gather_tokens, one_hot_rows, single_rate_only,
)

# The official code keeps at least this many clusters before the last location ("dpcknn
# uses knn with k=5"): a fixed 5, whatever k_neighbors is.
MIN_CLUSTERS = 5
CLUSTER_WEIGHT_EPS = 1e-6
# Extra candidates re-measured exactly beyond the k nearest (density), and how many nearest
# denser tokens / nearest centers are re-measured. The MatMul ranking only has to put the true
# winner among them; its error (< 1% of a near distance on the fixtures) is far below the gaps.
DENSITY_SLACK = 3
PARENT_CANDIDATES = 4
CENTER_CANDIDATES = 3


def ranking_distances(tokens: torch.Tensor) -> torch.Tensor:
    """Approximate Euclidean distances [B, N, N] by one MatMul, good for ranking candidates.

    The tokens are centred per image first: distances do not change, the magnitudes that
    cancel in |a|^2 + |b|^2 - 2 a.b shrink (a lot for trained ViTs, whose tokens share large
    components).
    """
    centred = tokens - tokens.mean(dim=1, keepdim=True)
    squares = centred.pow(2).sum(dim=-1, keepdim=True)
    cross = centred @ centred.transpose(1, 2)
    return (squares + squares.transpose(1, 2) - 2.0 * cross).clamp_min(0.0).sqrt()


def exact_distances(tokens: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """sqrt(sum (a - b)^2) from every token to its candidates: [B, N, D], [B, N, M] -> [B, N, M]."""
    batch, count, dim = tokens.shape
    flat = candidates.reshape(batch, -1)
    others = gather_tokens(tokens, flat).reshape(batch, count, candidates.shape[-1], dim)
    differences = tokens.unsqueeze(2) - others
    return (differences * differences).sum(dim=-1).sqrt()


class DpcKnnReducer(TokenReducer):
    """CTM: keys ``cluster_layers.{j}.score.*`` (absent with ``equal_weight``)."""

    stage = BEFORE_BLOCK
    state_dict_name = "cluster_layers"

    @classmethod
    def check_keep_rates(cls, keep_rates, num_locations):
        single_rate_only("DPC-KNN", keep_rates)

    @classmethod
    def plan(cls, site: ReductionSite) -> int | None:
        clusters = site.compounded_count()
        last = site.location_index == site.num_locations - 1
        if not last and clusters <= MIN_CLUSTERS:
            clusters = MIN_CLUSTERS
        elif last and clusters == 0:
            clusters = 1
        tokens = site.tokens_in - 1 - site.suffix_tokens
        if tokens < max(clusters, site.k_neighbors):
            raise ConfigError(
                f"DPC-KNN at reduction {site.location_index} would cluster {tokens} tokens into {clusters} "
                f"clusters with {site.k_neighbors} neighbours; it needs at least as many tokens as either. "
                "Use a larger image or a higher keep rate."
            )
        return clusters

    @classmethod
    def output_length(cls, keep: int, site: ReductionSite) -> int:
        return 1 + keep + site.suffix_tokens

    @classmethod
    def extra_macs(cls, keep: int, site: ReductionSite, spec: BackboneSpec) -> int:
        n, d = site.tokens_in - 1 - site.suffix_tokens, spec.embed_dim
        score = 0 if site.equal_weight else n * d
        # torchprofile does not count cdist (so neither the ranking MatMul, 0.47 GMACs at 448 px,
        # nor the exact re-measurements are counted here); it does count the token score, the
        # masking multiplies, score = distance x density, the density mean, the noise multiply,
        # x * weight, and the official aggregation-weight bookkeeping over the original patches.
        return score + 2 * n * n + 4 * n + n * d + site.num_patches

    def __init__(self, site: ReductionSite, keep: int | None, spec: BackboneSpec):
        super().__init__(site, keep, spec)
        self.dim = spec.embed_dim
        self.neighbours = site.k_neighbors
        self.tokens = site.tokens_in - 1 - site.suffix_tokens
        self.near_candidates = min(self.tokens, self.neighbours + DENSITY_SLACK)
        self.parent_candidates = min(self.tokens, PARENT_CANDIDATES)
        self.center_candidates = min(keep, CENTER_CANDIDATES)
        if not site.equal_weight:
            self.score = nn.Linear(spec.embed_dim, 1)
        # earlier[i, j] = 1 when j comes before i: the tie-break of equal densities.
        earlier = torch.ones(self.tokens, self.tokens).tril(diagonal=-1)
        self.register_buffer("earlier", earlier, persistent=False)

    def cluster(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The [B, K, N] 0/1 assignment of tokens to clusters and the [B, K] center indices
        (official ``cluster_dpc_knn``)."""
        scale = math.sqrt(self.dim)  # the official distances are divided by sqrt(C)
        ranking = ranking_distances(tokens)
        # Density from the k nearest, measured exactly among the k + slack nearest by ranking.
        _, near = torch.topk(ranking, self.near_candidates, dim=-1, largest=False)
        nearest, _ = torch.topk(exact_distances(tokens, near) / scale, self.neighbours, dim=-1, largest=False)
        density = torch.exp(-(nearest**2).mean(dim=-1))
        others, own = density.unsqueeze(1), density.unsqueeze(2)  # [B, 1, N] (j), [B, N, 1] (i)
        denser = (others > own).to(tokens.dtype) + (others == own).to(tokens.dtype) * self.earlier
        # Tokens without a denser one get the largest distance of all (a far pair: exact enough).
        farthest = ranking.flatten(1).max(dim=-1).values[:, None, None]
        largest = farthest / scale
        # Rank the denser tokens by distance; the others sort after all of them.
        only_denser = ranking + (2.0 * farthest + 1.0) * (1.0 - denser)
        _, near_denser = torch.topk(only_denser, self.parent_candidates, dim=-1, largest=False)
        is_denser = torch.gather(denser, 2, near_denser)
        parent = exact_distances(tokens, near_denser) / scale * is_denser + largest * (1.0 - is_denser)
        parent_distance = parent.min(dim=-1).values
        _, centers = torch.topk(parent_distance * density, self.keep, dim=-1, largest=True, sorted=True)
        # Nearest center: ranked among all centers, decided exactly among the nearest few.
        to_centers = torch.gather(ranking, 2, centers.unsqueeze(1).expand(-1, self.tokens, -1))  # [B, N, K]
        _, near_centers = torch.topk(to_centers, self.center_candidates, dim=-1, largest=False)
        center_ids = torch.gather(centers.unsqueeze(1).expand(-1, self.tokens, -1), 2, near_centers)
        closest = exact_distances(tokens, center_ids).argmin(dim=-1, keepdim=True)
        nearest_center = torch.gather(near_centers, 2, closest).squeeze(-1)  # [B, N], in 0..K-1
        is_center_of = one_hot_rows(centers, self.tokens, tokens.dtype)  # [B, K, N]
        is_center = is_center_of.sum(dim=1, keepdim=True)  # [B, 1, N]
        member_of = one_hot_rows(nearest_center, self.keep, tokens.dtype).transpose(1, 2)  # [B, K, N]
        return is_center_of + (1.0 - is_center) * member_of, centers

    def forward(self, x, attn=None, keys=None, token_weights=None):
        end = 1 + self.tokens
        tokens = x[:, 1:end]
        assignment, _ = self.cluster(tokens)
        if self.site.equal_weight:
            weight = torch.ones_like(tokens[..., :1])
        else:
            weight = self.score(tokens).exp()
        cluster_weight = assignment @ weight + CLUSTER_WEIGHT_EPS  # [B, K, 1]
        normalised = weight / (assignment.transpose(1, 2) @ cluster_weight)  # each token's share
        merged = assignment @ (tokens * normalised)
        return torch.cat([x[:, :1], merged, x[:, end:]], dim=1), token_weights

"""The one interface every token reduction method implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from clca_deploy.errors import ConfigError
from clca_deploy.model.backbone import BackboneSpec

# Where a method reduces: inside the block between attention and MLP (EViT, Top-K, ToMe),
# or before the block (DPC-KNN, SiT, PatchMerger, DynamicViT).
AFTER_ATTENTION = "after_attention"
BEFORE_BLOCK = "before_block"


@dataclass(frozen=True)
class ReductionSite:
    """Everything that sizes one reduction, known before anything runs.

    The official methods size their reductions differently (a rate of the current length,
    a compounded rate of the initial patches, a rate of the current length minus two...),
    so a method gets the whole picture and picks what it needs.
    """

    location_index: int  # j: position of this block in reduction_loc
    num_locations: int
    keep_rates: tuple[float, ...]  # as configured: one rate, or one per location
    num_patches: int
    initial_tokens: int  # CLS + patches + CLR registers
    tokens_in: int  # sequence length arriving at the reduction (CLS, CLR, cache included)
    suffix_tokens: int  # CLR registers plus every cached token re-inserted so far (at the end)
    clc: bool
    # DPC-KNN's own settings (official args k_neighbors, equal_weight).
    k_neighbors: int = 5
    equal_weight: bool = False

    @property
    def rate(self) -> float:
        """This location's rate when one is given per location, else the single rate."""
        return self.keep_rates[self.location_index] if len(self.keep_rates) > 1 else self.keep_rates[0]

    def compounded_count(self) -> int:
        """``int(num_patches * kr**(j+1))``: the official target of ToMe, DPC-KNN, SiT and PatchMerger.

        Written exactly as the official code computes it (float64, truncation), so the counts agree.
        """
        return int(self.num_patches * (self.keep_rates[0] ** (self.location_index + 1)))


class TokenReducer(nn.Module):
    """Reduces a [B, N, D] sequence (CLS first) to a length fixed when the model is built.

    A subclass decides its static output in ``plan`` (pure Python, so the token schedule is
    known before anything runs) and implements ``forward`` with static shapes only: no
    data-dependent sizes, no Python branching on tensor values.

    ``forward(x, attn, keys, token_weights)`` gets the post-softmax attention [B, H, N, N]
    and the keys [B, H, N, hd] of its block (after-attention methods), and the per-token
    weights the model carries for the method (see ``reinserted_weight``); it returns the
    reduced sequence and the weights that go with it.
    """

    stage: ClassVar[str] = AFTER_ATTENTION
    # Methods with learned weights keep them where the official state dict has them: a
    # ModuleList with one entry per reduction location under this name. None: no weights.
    state_dict_name: ClassVar[str | None] = None
    # True when the weights' shapes depend on the keep rate (SiT, PatchMerger), so the same
    # weights cannot run at another rate.
    keep_rate_in_weights: ClassVar[bool] = False
    # Methods that carry one weight per token alongside the sequence (ToMe: token sizes,
    # DynamicViT: its predictor's policy) give the weight of a re-inserted cached token here.
    reinserted_weight: ClassVar[float | None] = None
    # DynamicViT's policy exists from the first block on (all ones); ToMe's sizes only after
    # the first merge.
    weights_from_start: ClassVar[bool] = False
    # ToMe's proportional attention: log(token size) is added to every attention logit.
    weights_bias_attention: ClassVar[bool] = False

    def __init__(self, site: ReductionSite, keep: int | None, spec: BackboneSpec):
        super().__init__()
        self.site = site
        self.keep = keep

    @classmethod
    def check_keep_rates(cls, keep_rates: tuple[float, ...], num_locations: int) -> None:
        """Raise ConfigError for keep rates the official method cannot use (default: all fine)."""

    @classmethod
    def plan(cls, site: ReductionSite) -> int | None:
        """What this location keeps (tokens kept, clusters, or tokens left after merging; all
        without CLS), or None when it does not reduce."""
        raise NotImplementedError

    @classmethod
    def output_length(cls, keep: int, site: ReductionSite) -> int:
        """Sequence length after reduction, CLS included, for a ``plan`` result: the CLS and
        the ``keep`` tokens, unless a method adds more (EViT's fused token, DPC-KNN's suffix)."""
        return keep + 1

    @classmethod
    def extra_macs(cls, keep: int, site: ReductionSite, spec: BackboneSpec) -> int:
        """MACs of the method's own computation, as torchprofile counts them on the official
        code (its matmuls, linears, norms and multiplications); 0 for pure selection."""
        return 0

    def forward(
        self,
        x: torch.Tensor,
        attn: torch.Tensor | None = None,
        keys: torch.Tensor | None = None,
        token_weights: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        raise NotImplementedError


class SlotReducer(TokenReducer):
    """Learned slots before the block (SiT, PatchMerger): every patch token is mixed into K slots,
    K = ``int(patches * kr^(j+1))`` fixed by the weights. Subclasses give ``slots``."""

    stage = BEFORE_BLOCK
    state_dict_name = "cluster_layers"
    keep_rate_in_weights = True
    method_label: ClassVar[str]

    @classmethod
    def check_keep_rates(cls, keep_rates, num_locations):
        single_rate_only(cls.method_label, keep_rates)

    @classmethod
    def plan(cls, site: ReductionSite) -> int | None:
        # Always runs, even at keep 1.0: the learned mixing is not the identity.
        return site.compounded_count()

    def slots(self, tokens: torch.Tensor) -> torch.Tensor:
        """[B, N, D] patch tokens -> [B, K, D] slots."""
        raise NotImplementedError

    def forward(self, x, attn=None, keys=None, token_weights=None):
        if self.keep == 0:
            # The official module yields no slots and the block runs on the CLS alone: the same
            # result, without a zero-sized MatMul in the graph.
            return x[:, :1], token_weights
        return torch.cat([x[:, :1], self.slots(x[:, 1:])], dim=1), token_weights


def single_rate_only(method: str, keep_rates: tuple[float, ...]) -> None:
    """The compounding methods take one keep rate: their official code reads a list as counts."""
    if len(keep_rates) > 1:
        raise ConfigError(
            f"{method} takes one keep rate, compounded over the locations (kr^(j+1) of the patches); "
            "the official code would read a list as token counts. Give a single rate."
        )


def gather_tokens(tokens: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``tokens[b, index[b, i]]`` for a [B, N, D] sequence and a [B, K] index."""
    return torch.gather(tokens, 1, index.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))


def one_hot_rows(index: torch.Tensor, size: int, dtype: torch.dtype) -> torch.Tensor:
    """[B, K] indices -> [B, K, size] rows of 0/1: an assignment matrix.

    Multiplying by it sums (or picks) tokens with a plain MatMul, the static, TensorRT-friendly
    stand-in for ``scatter_add`` / ``index_add_``.
    """
    positions = torch.arange(size, device=index.device)
    return (index.unsqueeze(-1) == positions).to(dtype)

"""MAC counting from the static token schedule.

Counts what ``torchprofile.profile_macs`` counts for these models (the paper's "GFLOPs"
are such MACs at batch 1): linear layers, the two attention matmuls, convolutions, and
one MAC per output element of every affine normalisation (LayerNorm, BatchNorm).
Element-wise ops, softmax, GELU and the EViT token fusion are not counted. A reduction
method's own layers (DynamicViT's predictor, SiT's and PatchMerger's assignment, ToMe's
matching, DPC-KNN's token score) are priced by the method (``TokenReducer.extra_macs``), as
torchprofile prices them in the official code: the figures are comparable with the paper's,
not a count of what the static ONNX graph executes (its assignment-matrix MatMuls, DPC-KNN's
distance MatMul, which torchprofile does not see in ``cdist``, add a little).
"""

from __future__ import annotations

from dataclasses import dataclass

from clca_deploy.model.config import PLAIN_METHOD, ClcaConfig
from clca_deploy.model.reduction import reducer_class
from clca_deploy.model.schedule import BlockTokens, initial_length, token_schedule


@dataclass(frozen=True)
class MacReport:
    """MACs at batch 1, by part, for every family (GLSim's ``embedding`` and ``blocks`` cover both passes;
    an ILA block includes its adapter; ``head`` is everything after the last block)."""

    embedding: int
    blocks: tuple[int, ...]
    head: int

    @property
    def total(self) -> int:
        return self.embedding + sum(self.blocks) + self.head

    @property
    def gmacs(self) -> float:
        return self.total / 1e9


def block_macs(step: BlockTokens, dim: int, mlp_ratio: float) -> int:
    n_attn, n_mlp = step.tokens_in, step.tokens_out
    hidden = int(dim * mlp_ratio)
    attention = 4 * n_attn * dim * dim + 2 * n_attn * n_attn * dim  # qkv + proj, q.k^T + attn.v
    mlp = 2 * n_mlp * dim * hidden
    norms = n_attn * dim + n_mlp * dim
    return attention + mlp + norms


def count_macs(config: ClcaConfig) -> MacReport:
    spec = config.backbone
    dim = spec.embed_dim
    schedule = token_schedule(config)
    embedding = config.num_patches * dim * 3 * spec.patch_size**2
    if spec.pre_norm:
        embedding += initial_length(config) * dim
    kind = None if config.method == PLAIN_METHOD else reducer_class(config.method)
    blocks = tuple(
        block_macs(step, dim, spec.mlp_ratio)
        + (kind.extra_macs(step.keep, step.site, spec) if step.keep is not None else 0)
        for step in schedule
    )
    classes = config.num_classes
    if config.ifa_head:
        layers = len(config.cls_feature_layers)
        multiplier = config.ifa_dws_conv_groups
        if multiplier:
            hidden = dim * multiplier
            head = dim * layers + hidden * layers + hidden + hidden * classes
        else:
            head = dim * layers + dim + dim * classes
    else:
        # The official code norms the whole final sequence before taking CLS.
        head = schedule[-1].tokens_next * dim + dim * classes
    return MacReport(embedding=embedding, blocks=blocks, head=head)

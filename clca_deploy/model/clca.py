"""ClcaModel: a ViT with static-rate token reduction, cross-layer cache and aggregation head."""

from __future__ import annotations

import torch
from torch import nn
from timm.layers import PatchEmbed

from clca_deploy.model.backbone import Block, norm_layer
from clca_deploy.model.cache import CrossLayerCache
from clca_deploy.model.config import PLAIN_METHOD, ClcaConfig
from clca_deploy.model.head import aggregation_head
from clca_deploy.model.reduction import BEFORE_BLOCK, TokenReducer, reducer_class
from clca_deploy.model.schedule import BlockTokens, token_schedule


class ClcaModel(nn.Module):
    """The official CLCA forward (clca_reference.md section 2), with every sequence length fixed
    by ``token_schedule()`` so that it traces to a static-shape graph.

    Parameter names equal the official state-dict keys, except the unused ``head`` of CLA
    models, which is not built.
    """

    def __init__(self, config: ClcaConfig):
        super().__init__()
        self.config = config
        spec = config.backbone
        dim = spec.embed_dim
        self.schedule: tuple[BlockTokens, ...] = token_schedule(config)
        self.class_names: tuple[str, ...] | None = None
        self.source = None  # CheckpointInfo when loaded from a file

        self.patch_embed = PatchEmbed(
            img_size=config.img_size, patch_size=spec.patch_size, in_chans=3, embed_dim=dim, bias=not spec.pre_norm
        )
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        pos_len = config.num_patches + (1 + config.num_clr if spec.pos_embed_covers_cls else 0)
        self.pos_embed = nn.Parameter(torch.randn(1, pos_len, dim) * 0.02)
        if config.num_clr:
            self.clr = nn.Parameter(torch.zeros(1, config.num_clr, dim))
        self.norm_pre = norm_layer(spec)(dim) if spec.pre_norm else nn.Identity()
        self.blocks = nn.ModuleList(Block(spec) for _ in range(spec.depth))

        self.reducer_kind = None if config.method == PLAIN_METHOD else reducer_class(config.method)
        self._reducer_at = self._build_reducers()

        if config.ifa_head:
            self.norm = nn.Identity()
            self.ifa_head = aggregation_head(
                dim, len(config.cls_feature_layers), config.ifa_dws_conv_groups, config.num_classes
            )
        else:
            self.norm = norm_layer(spec)(dim)
            self.head = nn.Linear(dim, config.num_classes)

    def _build_reducers(self) -> dict[int, TokenReducer]:
        """Block index -> reducer, for the blocks that reduce.

        Weightless methods (EViT, Top-K, ToMe) live in ``reducers``, keyed by block index.
        Methods with learned weights live where the official state dict has them (e.g.
        ``score_predictor.{j}``, ``cluster_layers.{j}``), one per location, whether or not
        that location ends up reducing at this keep rate, so that strict loading works.
        """
        kind = self.reducer_kind
        if kind is None:
            return {}
        spec = self.config.backbone
        located = [step for step in self.schedule if step.site is not None]
        if kind.state_dict_name is None:
            self.reducers = nn.ModuleDict(
                {str(step.index): kind(step.site, step.keep, spec) for step in located if step.keep is not None}
            )
            return {int(index): reducer for index, reducer in self.reducers.items()}
        modules = nn.ModuleList(kind(step.site, step.keep, spec) for step in located)
        setattr(self, kind.state_dict_name, modules)
        return {step.index: module for step, module in zip(located, modules) if step.keep is not None}

    def token_schedule(self) -> tuple[BlockTokens, ...]:
        return self.schedule

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(images)
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        extra = [self.clr.expand(x.shape[0], -1, -1)] if self.config.num_clr else []
        if self.config.backbone.pos_embed_covers_cls:
            x = torch.cat([cls, x, *extra], dim=1) + self.pos_embed
        else:  # DeiT 3: patches only get positions; the CLR gets none.
            x = torch.cat([cls, x + self.pos_embed, *extra], dim=1)
        return self.norm_pre(x)

    def forward_features(self, images: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Final token sequence and the CLS after each CLA layer."""
        config = self.config
        x = self.embed(images)
        cache = CrossLayerCache(config.clc_include_gap, config.clc_pool_cls, config.num_clr) if config.clc else None
        kind = self.reducer_kind
        # Per-token weights some methods carry along the sequence (ToMe sizes, DynamicViT policy).
        weights = torch.ones_like(x[..., :1]) if kind is not None and kind.weights_from_start else None
        cls_features = []
        for step, block in zip(self.schedule, self.blocks):
            reducer = self._reducer_at.get(step.index)
            if reducer is not None and reducer.stage == BEFORE_BLOCK:
                x, weights = reducer(x, token_weights=weights)
                reducer = None
            bias = None
            if weights is not None and kind.weights_bias_attention:
                bias = weights.log().transpose(1, 2).unsqueeze(1)  # [B, 1, 1, N]
            x, weights = block(x, reducer, weights, bias)
            if cache is not None:
                x = cache.after_block(x, step)
            if step.reinserted and weights is not None:
                reinserted = weights.new_full((weights.shape[0], step.reinserted, 1), kind.reinserted_weight)
                weights = torch.cat([weights, reinserted], dim=1)
            if step.collects_cls:
                cls_features.append(x[:, 0])
        return x, cls_features

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x, cls_features = self.forward_features(images)
        if self.config.ifa_head:
            # The official CLA head takes CLS features without a final norm.
            return self.ifa_head(torch.stack(cls_features, dim=-1))
        # LayerNorm is per token, so norming only the CLS equals norming all and taking CLS.
        return self.head(self.norm(x[:, 0]))

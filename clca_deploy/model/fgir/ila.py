"""ILA: fgir_vit with ``--adapter`` bottlenecks in its blocks and inter-layer adapters after them.

An ILAdapter (``encoder.ila.j``, or ``encoder.ila_ds.j`` when it down-samples) squeezes
the tokens to ``adapter_dim`` channels, runs the class token through its own 1x1 conv and
the patch grid through a small conv stack, expands back, and adds a residual; the
down-sampling ones convolve the patch residual without padding, so each shrinks the grid by
2 (kernel 3). BatchNorms use their running statistics (the model is always loaded in eval
mode). Names equal the official state-dict keys, ``norm1.1`` / ``adapter_conv.1.0`` included.
"""

from __future__ import annotations

import copy

import math

import torch
import torch.nn.functional as F
from torch import nn

from clca_deploy.model.fgir.config import FgirConfig, IlaSettings
from clca_deploy.model.fgir.vit import Block, Encoder, FgirVit


class _SwapLast(nn.Module):
    """[b, s, c] <-> [b, c, s], around a BatchNorm1d over the adapter's channels."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.transpose(1, 2)


class _Permute(nn.Module):
    def __init__(self, *dims: int):
        super().__init__()
        self.dims = dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(*self.dims)


def _token_norm(kind: str | None, channels: int) -> nn.Module | None:
    """norm1 / norm3 over [b, s, c]: 'bn' is Sequential(swap, BN1d, swap) (keys ``norm1.1.*``)."""
    if kind == "bn":
        return nn.Sequential(_SwapLast(), nn.BatchNorm1d(channels), _SwapLast())
    if kind == "ln":
        return nn.LayerNorm(channels)  # the official eps: torch's default 1e-5
    return None


def _grid_norm(kind: str | None, channels: int) -> nn.Module:
    """norm2 between the grouped convs, with its GELU; anything else is an Identity without GELU."""
    if kind == "bn":
        return nn.Sequential(nn.BatchNorm2d(channels), nn.GELU())
    if kind == "ln":
        return nn.Sequential(_Permute(0, 2, 3, 1), nn.LayerNorm(channels), nn.GELU(), _Permute(0, 3, 1, 2))
    return nn.Identity()


def _split_grid(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """[b, 1 + g*g, c] -> class token [b, c, 1, 1], patches [b, c, g, g] (row-major), g."""
    grid = math.isqrt(x.shape[1] - 1)
    channels = x.shape[2]
    cls = x[:, :1].reshape(-1, channels, 1, 1)
    patches = x[:, 1:].transpose(1, 2).reshape(-1, channels, grid, grid)
    return cls, patches, grid


def _join_grid(cls: torch.Tensor, patches: torch.Tensor) -> torch.Tensor:
    return torch.cat([cls.flatten(2).transpose(1, 2), patches.flatten(2).transpose(1, 2)], dim=1)


class Adapter(nn.Module):
    """The in-block bottleneck: ``up(GELU(down(x)))``; ``convpass`` adds a 3x3 conv and GELU in between."""

    def __init__(self, kind: str, dim: int, adapter_dim: int, kernel_size: int):
        super().__init__()
        self.adapter_down = nn.Linear(dim, adapter_dim)
        self.adapter_up = nn.Linear(adapter_dim, dim)
        if kind == "convpass":
            self.adapter_conv = nn.Conv2d(adapter_dim, adapter_dim, kernel_size, 1, kernel_size // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.gelu(self.adapter_down(x))
        conv = getattr(self, "adapter_conv", None)
        if conv is not None:
            cls, patches, _ = _split_grid(x)
            x = F.gelu(_join_grid(conv(cls), conv(patches)))
        return self.adapter_up(x)


class ILAdapter(nn.Module):
    """One inter-layer adapter; ``down_sampling`` selects the ``ila_ds`` variant (see module doc)."""

    def __init__(self, settings: IlaSettings, dim: int, down_sampling: bool):
        super().__init__()
        geometry = settings.geometry(down_sampling)
        self.geometry = geometry
        a, k, pad, groups = settings.adapter_dim, geometry.kernel_size, geometry.padding, settings.ila_dws_conv_groups
        self.adapter_down = nn.Linear(dim, a)
        self.adapter_up = nn.Linear(a, dim)
        for name, kind in (("norm1", settings.ila_norm1), ("norm3", settings.ila_norm3)):
            norm = _token_norm(kind, a)
            if norm is not None:
                setattr(self, name, norm)
        if settings.ila_cls_conv:
            self.adapter_cls = nn.Conv2d(a, a, 1)
        if geometry.ds_conv == "dws":
            self.ds_conv = nn.Conv2d(dim, dim, k, 1, pad, groups=dim, bias=False)
        elif geometry.ds_conv == "conv":
            self.ds_conv = nn.Conv2d(dim, dim, k, 1, pad, bias=False)
        elif geometry.ds_conv == "avg_pool":
            self.ds_conv = nn.AvgPool2d(k, 1, pad)
        dilation = geometry.dilation
        if groups > 0:
            self.adapter_conv = nn.Sequential(
                nn.Conv2d(a, a * groups, k, 1, pad, dilation=dilation, groups=a),
                _grid_norm(settings.ila_norm2, a * groups),
                nn.Conv2d(a * groups, a, 1),
            )
        else:
            self.adapter_conv = nn.Conv2d(a, a, k, 1, pad, dilation=dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x
        x = self.adapter_down(x)
        norm1 = getattr(self, "norm1", None)
        x = F.gelu(norm1(x) if norm1 is not None else x)
        cls, patches, _ = _split_grid(x)
        cls = self.adapter_cls(cls) if hasattr(self, "adapter_cls") else self.adapter_conv(cls)
        x = _join_grid(cls, self.adapter_conv(patches))
        norm3 = getattr(self, "norm3", None)
        x = self.adapter_up(F.gelu(norm3(x) if norm3 is not None else x))
        ds_conv = getattr(self, "ds_conv", None)
        if ds_conv is not None:
            res_cls, res_patches, _ = _split_grid(residual)
            residual = _join_grid(res_cls, ds_conv(res_patches))  # the class token's residual is kept as is
        return residual + x if self.geometry.residual else x

    @torch.no_grad()
    def fold_batchnorms(self) -> None:
        """Fold every BatchNorm into the layer before it (eval statistics), in place: the same function
        with fewer graph nodes. norm3 follows both branches (class token and patches), so it folds into
        the last layer of each."""
        norm1 = getattr(self, "norm1", None)
        if norm1 is not None and isinstance(norm1[1], nn.BatchNorm1d):
            _fold(self.adapter_down, norm1[1])
            del self.norm1
        if isinstance(self.adapter_conv, nn.Sequential) and isinstance(self.adapter_conv[1][0], nn.BatchNorm2d):
            _fold(self.adapter_conv[0], self.adapter_conv[1][0])
            self.adapter_conv[1][0] = nn.Identity()
        norm3 = getattr(self, "norm3", None)
        if norm3 is not None and isinstance(norm3[1], nn.BatchNorm1d):
            last = self.adapter_conv[-1] if isinstance(self.adapter_conv, nn.Sequential) else self.adapter_conv
            for layer in {id(m): m for m in (getattr(self, "adapter_cls", last), last)}.values():
                _fold(layer, norm3[1])
            del self.norm3


def _fold(layer: nn.Linear | nn.Conv2d, norm: nn.BatchNorm1d | nn.BatchNorm2d) -> None:
    """``norm(layer(x))`` as one layer: scale each output channel's weights, shift its bias."""
    scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
    layer.weight.mul_(scale.view(-1, *[1] * (layer.weight.dim() - 1)))
    bias = layer.bias if layer.bias is not None else torch.zeros_like(norm.running_mean)
    layer.bias = nn.Parameter((bias - norm.running_mean) * scale + norm.bias)


def ila_encoder(config: FgirConfig) -> Encoder:
    """The blocks (with ``--adapter`` bottlenecks if set) and the adapters after them."""
    spec, settings = config.vit, config.ila
    dim = spec.hidden_size

    def bottleneck() -> Adapter | None:
        if not settings.adapter:
            return None
        return Adapter(settings.adapter, dim, settings.adapter_dim, settings.adapter_kernel_size)

    blocks = [
        Block(
            dim, spec.num_heads, spec.intermediate_size, spec.layer_norm_eps,
            adapter_attn=bottleneck() if settings.attention_adapter else None,
            adapter_pwffn=bottleneck(), parallel=settings.adapters_in_parallel,
        )
        for _ in range(spec.num_layers)
    ]
    adapters = {}
    # One module per listed location, as the official code builds them (even unused ones).
    if settings.ila and settings.ila_locs:
        adapters["ila"] = nn.ModuleList(ILAdapter(settings, dim, False) for _ in settings.ila_locs)
    if settings.ila and settings.ila_ds_locs:
        adapters["ila_ds"] = nn.ModuleList(ILAdapter(settings, dim, True) for _ in settings.ila_ds_locs)
    return Encoder(blocks, adapters, settings.adapter_plan(spec.num_layers))


class ClsHead(nn.Module):
    """``head.head``: a Linear on the class token."""

    def __init__(self, dim: int, num_classes: int):
        super().__init__()
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x[:, 0])


class IlaModel(FgirVit):
    """The official ILA model (``fgir_vit`` ViT): images [b, 3, S, S] -> logits [b, num_classes]."""

    def __init__(self, config: FgirConfig):
        super().__init__(config, ila_encoder(config))
        self.head = ClsHead(config.vit.hidden_size, config.num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.encode(images))

    def for_inference(self) -> "IlaModel":
        """A copy for export, its adapters' BatchNorms folded into the layers before them."""
        deployed = copy.deepcopy(self).eval()
        for module in deployed.modules():
            if isinstance(module, ILAdapter):
                module.fold_batchnorms()
        return deployed

"""Classifier heads: the cross-layer aggregation head (CLA), the older IFA head, and linear."""

from __future__ import annotations

from torch import nn


def cla_head(embed_dim: int, num_layers: int, multiplier: int, num_classes: int) -> nn.Sequential:
    """CLA: BN -> depthwise Conv1d over the layer axis (x multiplier) -> BN -> GELU -> 1x1 Conv1d.

    Input [B, D, L] (the CLS of each aggregated layer), output [B, C]. Module indices match
    the official state-dict keys ``ifa_head.0.{0..4}``; ``ifa_head.1`` has no parameters.
    """
    hidden = embed_dim * multiplier
    aggregate = nn.Sequential(
        nn.BatchNorm1d(embed_dim),
        nn.Conv1d(embed_dim, hidden, kernel_size=num_layers, stride=num_layers, groups=embed_dim),
        nn.BatchNorm1d(hidden),
        nn.GELU(),
        nn.Conv1d(hidden, num_classes, kernel_size=1),
    )
    return nn.Sequential(aggregate, nn.Flatten(1))


def ifa_head(embed_dim: int, num_layers: int, num_classes: int) -> nn.Sequential:
    """The old IFA head (``ifa_dws_conv_groups=0``): Linear over layers, ReLU, LayerNorm, Linear."""
    aggregate = nn.Sequential(
        nn.Linear(num_layers, 1),
        nn.Flatten(1),
        nn.ReLU(),
        nn.LayerNorm(embed_dim),
        nn.Linear(embed_dim, num_classes),
        nn.Unflatten(1, (num_classes, 1)),
    )
    return nn.Sequential(aggregate, nn.Flatten(1))


def aggregation_head(embed_dim: int, num_layers: int, multiplier: int, num_classes: int) -> nn.Sequential:
    if multiplier:
        return cla_head(embed_dim, num_layers, multiplier, num_classes)
    return ifa_head(embed_dim, num_layers, num_classes)

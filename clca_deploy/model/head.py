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


def fold_cla_batchnorms(head: nn.Sequential) -> nn.Sequential:
    """An equivalent CLA head for inference with both BatchNorms folded into the grouped conv.

    BN before the depthwise conv is a per-channel affine map of its input, BN after it a
    per-channel affine map of its output, so both fold exactly into that conv's weight and
    bias. ``head`` itself is left untouched.
    """
    import torch

    bn_in, conv, bn_out, act, classifier = head[0]
    with torch.no_grad():
        scale_in = bn_in.weight / torch.sqrt(bn_in.running_var + bn_in.eps)
        shift_in = bn_in.bias - bn_in.running_mean * scale_in
        scale_out = bn_out.weight / torch.sqrt(bn_out.running_var + bn_out.eps)
        shift_out = bn_out.bias - bn_out.running_mean * scale_out
        multiplier = conv.out_channels // conv.in_channels
        in_channel = torch.arange(conv.out_channels) // multiplier  # output c*m+j reads input c
        weight = conv.weight * scale_in[in_channel].view(-1, 1, 1)
        bias = conv.bias + (conv.weight.sum(dim=(1, 2)) * shift_in[in_channel])
        folded = nn.Conv1d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, groups=conv.groups)
        folded.weight.copy_(weight * scale_out.view(-1, 1, 1))
        folded.bias.copy_(bias * scale_out + shift_out)
        new_classifier = nn.Conv1d(classifier.in_channels, classifier.out_channels, 1)
        new_classifier.load_state_dict(classifier.state_dict())
    return nn.Sequential(nn.Sequential(folded, nn.GELU(), new_classifier), nn.Flatten(1)).eval()

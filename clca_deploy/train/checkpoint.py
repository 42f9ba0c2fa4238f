"""Checkpoints in the official ``train.py`` format, so the official code can load them too.

``{'model', 'optimizer', 'lr_scheduler', 'epoch', 'scaler', 'args', 'ema_best'}`` with
``args`` an ``argparse.Namespace`` holding the official argument names, plus our
``class_names`` (and the RNG state for an exact resume), which the official code ignores.
Everything in it loads under ``torch.load(weights_only=True)`` with the Namespace allow-listed.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path
from typing import Any, Mapping

import torch

from clca_deploy.artifacts import atomic_output
from clca_deploy.errors import CheckpointError
from clca_deploy.model.checkpoint import read_pickled_checkpoint
from clca_deploy.model.clca import ClcaModel

# The official CLA model keeps timm's 1000-class head: unused, but in its state dict.
OFFICIAL_UNUSED_HEAD_CLASSES = 1000


def official_state_dict(model: ClcaModel) -> dict[str, torch.Tensor]:
    """The model's weights under the official keys and shapes.

    For CLA models the official state dict also holds the unused ``head`` Linear(D, 1000);
    we write zeros there (it never runs, and zeros say so to anyone who looks).
    """
    state = {k: v.detach().clone().cpu() for k, v in model.state_dict().items()}
    if model.config.ifa_head:
        dim = model.config.backbone.embed_dim
        state["head.weight"] = torch.zeros(OFFICIAL_UNUSED_HEAD_CLASSES, dim)
        state["head.bias"] = torch.zeros(OFFICIAL_UNUSED_HEAD_CLASSES)
    return state


def official_args(model: ClcaModel, training: Mapping[str, Any]) -> argparse.Namespace:
    """The ``args`` Namespace: every model setting under its official name, then training fields."""
    config = model.config
    fields = {
        "model": config.model,
        "input_size": config.img_size,
        "keep_rate": list(config.keep_rate),
        "reduction_loc": list(config.reduction_loc),
        "clc": config.clc,
        "num_clr": config.num_clr,
        "clc_include_gap": config.clc_include_gap,
        "clc_pool_cls": config.clc_pool_cls,
        "clc_pool_clr": config.clc_pool_clr,
        "clc_recover_at_last": config.clc_recover_at_last,
        "ifa_head": config.ifa_head,
        "ifa_dws_conv_groups": config.ifa_dws_conv_groups,
        "num_classes": config.num_classes,
    }
    for key, value in training.items():
        fields.setdefault(key, value)
    return argparse.Namespace(**fields)


def write_torch_file(path: str | Path, payload: Mapping[str, Any]) -> Path:
    """``torch.save`` of ``payload`` to ``path``, atomically. Serialised in memory first: torch's C++
    writer reports a full disk or quota as a RuntimeError without an errno, while a plain file write
    keeps it, so the failure is the one-line error that names the folder."""
    buffer = io.BytesIO()
    torch.save(dict(payload), buffer)
    with atomic_output(path) as tmp:
        tmp.write_bytes(buffer.getbuffer())
    return Path(path)


def save_training_checkpoint(
    path: str | Path,
    model: ClcaModel,
    *,
    epoch: int,
    training_args: Mapping[str, Any],
    optimizer: torch.optim.Optimizer | None = None,
    scheduler_state: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write the checkpoint atomically: an interrupted write leaves the previous file intact."""
    payload = {
        "model": official_state_dict(model),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "lr_scheduler": dict(scheduler_state) if scheduler_state is not None else None,
        "epoch": epoch,
        "scaler": None,
        "args": official_args(model, training_args),
        "ema_best": False,
        "class_names": list(model.class_names) if model.class_names else None,
        **(extra or {}),
    }
    return write_torch_file(path, payload)


def read_training_state(path: str | Path) -> dict[str, Any]:
    """The whole checkpoint dict, for resuming (weights_only; only Namespace allow-listed)."""
    state = read_pickled_checkpoint(Path(path))
    if not isinstance(state, dict) or state.get("optimizer") is None or "lr_scheduler" not in state:
        raise CheckpointError(
            f"{path} has no optimizer state, so it cannot be resumed; start a new run "
            "(or use it as initial weights with --init)."
        )
    return state

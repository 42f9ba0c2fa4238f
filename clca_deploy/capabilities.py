"""What this machine can run: checked without importing heavy libraries at module load."""

from __future__ import annotations

import importlib.util


def _has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def gpu_skip_reason() -> str | None:
    """None when a CUDA GPU is usable, else why not."""
    import torch

    if not torch.cuda.is_available():
        return "no CUDA GPU on this machine"
    return None


def tensorrt_skip_reason() -> str | None:
    """None when TensorRT and a GPU are usable, else why not."""
    reason = gpu_skip_reason()
    if reason:
        return reason
    if not _has_module("tensorrt"):
        return 'TensorRT is not installed (pip install "clca-deploy[trt]")'
    return None

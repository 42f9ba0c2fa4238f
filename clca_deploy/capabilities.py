"""What this machine can run, for the test markers and the optional pipeline steps; never through torch."""

from __future__ import annotations


def gpu_skip_reason(device: int = 0) -> str | None:
    """None when CUDA GPU ``device`` is usable (asked of the CUDA driver itself), else why not."""
    from clca_deploy.system.gpu import gpu_unavailable_reason

    return gpu_unavailable_reason(device)


def tensorrt_skip_reason(device: int = 0) -> str | None:
    """None when TensorRT, a CUDA binding and GPU ``device`` are usable, else why not."""
    from clca_deploy.tensorrt.toolkit import tensorrt_unavailable_reason

    return tensorrt_unavailable_reason(device)

"""Whether TensorRT can run here, checked once per command: TensorRT itself, a CUDA binding, the GPU."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any

from clca_deploy.errors import UnsupportedError
from clca_deploy.system.gpu import GpuInfo, gpu_info, gpu_unavailable_reason
from clca_deploy.tensorrt.cuda import installed_bindings
from clca_deploy.tensorrt.plan import check_tensorrt_version, parse_trt_version

def install_hint() -> str:
    """Where TensorRT and a CUDA binding come from on this machine: JetPack on a Jetson, pip elsewhere."""
    from clca_deploy.system.checks import HINTS
    from clca_deploy.system.jetson import jetson_info

    if jetson_info() is not None:
        return f"{HINTS['trt_jetson']}; CUDA binding: {HINTS['cuda_jetson']}"
    return f"{HINTS['trt']} (TensorRT and cuda-python)"


def _has_tensorrt() -> bool:
    try:
        return importlib.util.find_spec("tensorrt") is not None
    except (ImportError, ValueError):
        return False


def tensorrt_unavailable_reason(device: int = 0) -> str | None:
    """None when TensorRT, a CUDA binding and GPU ``device`` are all usable, else the first reason why not."""
    reason = gpu_unavailable_reason(device)
    if reason:
        return reason
    if not _has_tensorrt():
        return "TensorRT is not installed"
    if not installed_bindings():
        return "no CUDA Python binding is installed (cuda-python or pycuda)"
    return None


@dataclass(frozen=True)
class TensorRTToolkit:
    """The imported tensorrt module, its parsed version and the GPU it builds for and runs on."""

    trt: Any
    version: tuple[int, int, int]
    gpu: GpuInfo

    @property
    def version_string(self) -> str:
        return str(self.trt.__version__)


def load_toolkit(device: int = 0) -> TensorRTToolkit:
    """Import TensorRT for GPU ``device``, or raise UnsupportedError saying what is missing and how to get it."""
    reason = tensorrt_unavailable_reason(device)
    if reason:
        raise UnsupportedError(f"TensorRT cannot run here: {reason}; {install_hint()}.")
    try:
        import tensorrt as trt
    except Exception as exc:  # a wheel without its NVIDIA libraries fails with OSError/ImportError
        raise UnsupportedError(f"TensorRT is installed but does not import ({exc}); {install_hint()}.") from exc
    version = parse_trt_version(trt.__version__)
    check_tensorrt_version(version)
    return TensorRTToolkit(trt=trt, version=version, gpu=gpu_info(device))

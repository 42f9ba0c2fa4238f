"""Whether TensorRT can run here, checked once per command: TensorRT itself, a CUDA binding, the GPU."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from clca_deploy.errors import UnsupportedError
from clca_deploy.extras import has_module, install_line
from clca_deploy.system.gpu import GpuInfo, gpu_info, gpu_unavailable_reason
from clca_deploy.system.jetson import is_jetson
from clca_deploy.tensorrt.cuda import installed_bindings
from clca_deploy.tensorrt.plan import check_tensorrt_version, parse_trt_version

# On a Jetson, TensorRT comes with JetPack (its Python bindings are built for the system Python),
# never from pip; a CUDA binding comes from pip.
JETSON_TENSORRT_HINT = (
    "use JetPack's TensorRT: create the venv with --system-site-packages "
    "(sudo apt install nvidia-jetpack if missing); see docs/jetson.md"
)
CUDA_BINDING_HINT = 'pip install "cuda-python>=12.6.2,<13"'
JETSON_CUDA_BINDING_HINT = f"{CUDA_BINDING_HINT} (or pycuda built with nvcc)"


def install_hint() -> str:
    """Where TensorRT and a CUDA binding come from on this machine: JetPack on a Jetson, pip elsewhere."""
    if is_jetson():
        return f"{JETSON_TENSORRT_HINT}; CUDA binding: {JETSON_CUDA_BINDING_HINT}"
    return install_line("tensorrt")


def _has_tensorrt() -> bool:
    return has_module("tensorrt")


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

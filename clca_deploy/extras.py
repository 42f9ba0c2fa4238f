"""Which extra brings which optional library, and the one error a command raises when it is missing.

The core install runs exported models' metadata, preprocessing and the CLI; each runtime and the
torch side are extras (pyproject.toml, which these tables mirror), so a command checks for what it
needs before any work. Every ``pip install "clca-deploy[...]"`` line the tool prints is made here.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from clca_deploy.errors import UnsupportedError

# extra -> what it brings (pyproject.toml's optional-dependencies)
EXTRAS: dict[str, str] = {
    "cpu": "onnxruntime; on an NVIDIA GPU a GPU extra instead ([gpu-cu12] or [gpu-cu13]; [gpu] on Jetson), never both",
    "gpu": "onnxruntime-gpu alone, no CUDA libraries: for Jetson (NVIDIA's wheel installed first) or CUDA from the system",
    "gpu-cu12": "onnxruntime-gpu 1.21-1.26, built for CUDA 12, with its CUDA 12 and cuDNN libraries",
    "gpu-cu13": "onnxruntime-gpu 1.28 or newer, built for CUDA 13, with its CUDA 13 and cuDNN libraries; Python 3.11+",
    "trt": "TensorRT for CUDA 13, as [trt-cu13] (what PyPI's bare tensorrt is); cuda-bindings 13; nvidia-ml-py",
    "trt-cu12": "TensorRT for CUDA 12, NVIDIA driver r535 or newer; cuda-bindings 12; nvidia-ml-py",
    "trt-cu13": "TensorRT for CUDA 13, NVIDIA driver r580 or newer; cuda-bindings 13; nvidia-ml-py",
    "openvino": "Intel's OpenVINO runtime for x86 CPUs",
    "export": "PyTorch, timm and onnxscript",
    "train": "torchvision for the training augmentations",
    "plot": "matplotlib",
    "serve": "PyTriton and tritonclient",
}


@dataclass(frozen=True)
class CudaMajor:
    """What pip installs for one CUDA major version: its extras, their key requirements, the driver it needs.

    Every extra of a major pins cuda-bindings to that major, even [gpu-*] whose onnxruntime never imports
    it: cuda-bindings is the one distribution every CUDA stack on PyPI (TensorRT's extra, torch 2.10+)
    names by major, so pip refuses to mix majors instead of letting one cuDNN or cuda.bindings overwrite
    the other's files (the -cu12 and -cu13 builds install the same paths).
    """

    gpu: str  # the extra with onnxruntime-gpu built for this major
    trt: str  # the extra with TensorRT built for this major
    onnxruntime: str  # PyPI's onnxruntime-gpu builds for this major, with their CUDA and cuDNN wheels
    tensorrt: str
    bindings: str
    driver: str  # the oldest NVIDIA driver branch that runs this major


CUDA_MAJORS: dict[int, CudaMajor] = {
    # onnxruntime-gpu 1.19-1.26 are CUDA 12 builds (1.21 first with the [cuda,cudnn] extras); 1.27 on,
    # CUDA 13, but 1.27.0's extras name nvidia-*-cu13 wheels that never existed. cuda-bindings 12.8 is
    # the first 12.x release of that distribution; older cuda-python ships cuda/bindings itself.
    12: CudaMajor("gpu-cu12", "trt-cu12", "onnxruntime-gpu[cuda,cudnn]>=1.21,<1.27", "tensorrt-cu12>=10.3",
                  "cuda-bindings>=12.8,<13", "r535"),
    # tensorrt-cu13 10.13.2.6 and 10.13.3.9 require nvidia-cuda-runtime-cu13, a placeholder on PyPI.
    13: CudaMajor("gpu-cu13", "trt-cu13", "onnxruntime-gpu[cuda,cudnn]>=1.28", "tensorrt-cu13>=10.13.3.9.post1",
                  "cuda-bindings>=13,<14", "r580"),
}


def cuda_major_for_driver(driver_major: int | None) -> int | None:
    """The newest CUDA major with extras that a driver of CUDA ``driver_major`` runs; None when none does."""
    fitting = [major for major in CUDA_MAJORS if driver_major is not None and major <= driver_major]
    return max(fitting) if fitting else None


def gpu_install_line() -> str:
    """Where onnxruntime-gpu comes from, per CUDA major, for a message that does not know the driver."""
    options = [f"{install_command(cuda.gpu)} on a CUDA {major} driver ({cuda.driver}+)" for major, cuda in sorted(CUDA_MAJORS.items())]
    return " or ".join(options) + " (`clca-deploy doctor` says which)"


def gpu_extra(driver_major: int | None, on_jetson: bool) -> str:
    """The extra with onnxruntime-gpu for this machine: [gpu] on a Jetson (NVIDIA's wheel is installed first)
    or where the driver is unknown, else the build for the newest CUDA major the driver runs."""
    fitting = None if on_jetson else cuda_major_for_driver(driver_major)
    return CUDA_MAJORS[fitting].gpu if fitting is not None else "gpu"


def driver_requirement() -> str:
    """"r535 or newer for CUDA 12, r580 or newer for CUDA 13"."""
    return ", ".join(f"{cuda.driver} or newer for CUDA {major}" for major, cuda in sorted(CUDA_MAJORS.items()))


# import name -> the extra that installs it
MODULE_EXTRAS: dict[str, str] = {
    "torch": "export",
    "timm": "export",
    "onnxscript": "export",
    "safetensors": "export",
    "torchvision": "train",
    "onnxruntime": "cpu",
    "openvino": "openvino",
    "tensorrt": "trt",
    "matplotlib": "plot",
    "pytriton": "serve",
    "tritonclient": "serve",
}


def has_module(name: str) -> bool:
    """True if ``name`` can be imported, without importing it (a broken or missing parent package counts as no)."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def install_command(extra: str) -> str:
    """``pip install "clca-deploy[extra]"``."""
    return f'pip install "clca-deploy[{extra}]"'


def install_line(module: str, extra: str | None = None) -> str:
    """The install command for ``module`` (its extra, or ``extra``) and what that extra brings."""
    extra = extra or MODULE_EXTRAS[module]
    return f"{install_command(extra)} ({EXTRAS[extra]})"


def require(module: str, purpose: str, install: str | None = None) -> None:
    """Raise UnsupportedError naming how to install ``module`` (its extra, or ``install``) unless importable."""
    if not has_module(module):
        how = install or install_line(module)
        raise UnsupportedError(f"{purpose} needs {module}, which is not installed: {how}.")


def require_torch_stack(purpose: str) -> None:
    """torch and timm (the model code), each checked so the message names what is missing."""
    for module in ("torch", "timm"):
        require(module, purpose)

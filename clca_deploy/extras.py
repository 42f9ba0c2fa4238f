"""Which extra brings which optional library, and the one error a command raises when it is missing.

The core install runs exported models' metadata, preprocessing and the CLI; each runtime and the
torch side are extras (pyproject.toml, which these tables mirror), so a command checks for what it
needs before any work. Every ``pip install "clca-deploy[...]"`` line the tool prints is made here.
"""

from __future__ import annotations

import importlib.util

from clca_deploy.errors import UnsupportedError

# extra -> what it brings (pyproject.toml's optional-dependencies)
EXTRAS: dict[str, str] = {
    "cpu": "onnxruntime; [gpu] instead on an NVIDIA GPU machine, never both",
    "gpu": "onnxruntime-gpu, with the CUDA and TensorRT execution providers",
    "trt": "TensorRT and cuda-python",
    "openvino": "Intel's OpenVINO runtime for x86 CPUs",
    "export": "PyTorch, timm and onnxscript",
    "train": "torchvision for the training augmentations",
    "plot": "matplotlib",
    "serve": "PyTriton and tritonclient",
}

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


def install_line(module: str) -> str:
    """The install command for ``module`` and what its extra brings."""
    extra = MODULE_EXTRAS[module]
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

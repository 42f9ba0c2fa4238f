"""Which extra brings which optional library, and the one error a command raises when it is missing.

The core install runs exported models' metadata, preprocessing and the CLI; each runtime and the
torch side are extras (pyproject.toml), so a command checks for what it needs before any work.
"""

from __future__ import annotations

import importlib.util

from clca_deploy.errors import UnsupportedError

# import name -> (extra, what the extra is for)
EXTRAS: dict[str, tuple[str, str]] = {
    "torch": ("export", "PyTorch, timm and onnxscript"),
    "timm": ("export", "PyTorch, timm and onnxscript"),
    "onnxscript": ("export", "PyTorch, timm and onnxscript"),
    "safetensors": ("export", "PyTorch, timm and onnxscript"),
    "torchvision": ("train", "torchvision for the training augmentations"),
    "onnxruntime": ("cpu", "onnxruntime; [gpu] instead on an NVIDIA GPU machine, never both"),
    "openvino": ("openvino", "Intel's OpenVINO runtime for x86 CPUs"),
    "matplotlib": ("plot", "matplotlib"),
    "pytriton": ("serve", "PyTriton and tritonclient"),
    "tritonclient": ("serve", "PyTriton and tritonclient"),
}


def has_module(name: str) -> bool:
    """True if ``name`` can be imported, without importing it."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a broken or half-removed parent package
        return False


def install_line(module: str) -> str:
    extra, brings = EXTRAS[module]
    return f'pip install "clca-deploy[{extra}]" ({brings})'


def require(module: str, purpose: str) -> None:
    """Raise UnsupportedError naming the extra to install unless ``module`` is importable."""
    if not has_module(module):
        raise UnsupportedError(f"{purpose} needs {module}, which is not installed: {install_line(module)}.")


def require_torch_stack(purpose: str) -> None:
    """torch and timm (the model code), each checked so the message names what is missing."""
    for module in ("torch", "timm"):
        require(module, purpose)

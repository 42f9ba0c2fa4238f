"""The environment block of every report: library versions and the hardware measured on."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
from pathlib import Path


def cpu_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def environment() -> dict:
    """Versions of the runtimes and the CPU/GPU, gathered without importing optional libraries."""
    from clca_deploy.system.gpu import list_gpus

    info = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "clca_deploy": _version("clca-deploy"),
    }
    packages = (
        "torch", "timm", "onnx", "onnxruntime", "onnxruntime-gpu", "tensorrt", "pycuda", "cuda-python", "cuda-bindings",
        "nvidia-ml-py", "numpy",
    )
    for package in packages:
        info[package] = _version(package)
    if "torch" in sys.modules:  # only when the run used it: importing torch costs seconds and memory
        info["torch_threads"] = sys.modules["torch"].get_num_threads()
    gpus = list_gpus()  # from the CUDA driver, not torch
    info["gpu"] = gpus[0].name if gpus else None
    info["gpus"] = [gpu.to_dict() for gpu in gpus]
    return info

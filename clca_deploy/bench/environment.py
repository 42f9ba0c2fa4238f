"""The environment block of every report: library versions and the hardware measured on."""

from __future__ import annotations

import importlib.metadata
import os
import platform
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
    info = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "clca_deploy": _version("clca-deploy"),
    }
    for package in ("torch", "timm", "onnx", "onnxruntime", "onnxruntime-gpu", "tensorrt", "pycuda", "numpy"):
        info[package] = _version(package)
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        info["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        info["gpu"] = None
    return info

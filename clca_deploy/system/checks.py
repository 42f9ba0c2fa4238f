"""The rows of `clca-deploy doctor`, the facts probes share, and every install hint in one place."""

from __future__ import annotations

import importlib.metadata
import importlib.util
from dataclasses import asdict, dataclass

from clca_deploy.system.gpu import GpuInfo
from clca_deploy.system.jetson import JetsonInfo

STATUSES = ("ok", "missing", "note", "error")

# How to get each missing piece; the keys are what probes name. The extras are pyproject.toml's.
HINTS = {
    "cpu": 'pip install "clca-deploy[cpu]"',
    "gpu": 'pip install "clca-deploy[gpu]"',
    "export": 'pip install "clca-deploy[export]"',
    "trt": 'pip install "clca-deploy[trt]"',
    "serve": 'pip install "clca-deploy[serve]"',
    "plot": 'pip install "clca-deploy[plot]"',
    "core": 'pip install "clca-deploy" (a core dependency is missing or broken)',
    "openvino": 'pip install "clca-deploy[openvino]"',
    "trt_jetson": (
        "use JetPack's TensorRT: create the venv with --system-site-packages "
        "(sudo apt install nvidia-jetpack if missing); see docs/jetson.md"
    ),
    "cuda_jetson": 'pip install "cuda-python>=12.6.2,<13" (or pycuda built with nvcc)',
    "cuda_driver_12": 'pip install "cuda-python>=12.6.2,<13"',
    "ort_conflict": (
        "pip uninstall -y onnxruntime onnxruntime-gpu, then install one: "
        'pip install "clca-deploy[cpu]" or "clca-deploy[gpu]"'
    ),
    "ort_jetson": "on Jetson, onnxruntime-gpu must be a build for JetPack's CUDA, not PyPI's; see docs/jetson.md",
    "numpy_jetson": 'pip install "numpy<2" if a JetPack module fails with "compiled using NumPy 1.x"',
    "python_jetson": "create the venv from the system Python: /usr/bin/python3 -m venv --system-site-packages .venv",
    "jetpack_upgrade": "upgrade to JetPack 6.1 or newer (TensorRT 10.3); see docs/jetson.md",
    "gpu_driver": "a machine with an NVIDIA GPU and its driver (the CPU path needs neither)",
}


@dataclass(frozen=True)
class Check:
    """One row: what was checked, ok / missing / note / error, what was found, how to fix it."""

    name: str
    status: str
    detail: str
    fix: str | None = None

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Context:
    """Facts several probes need, gathered once; a failure to gather one is kept for its own row."""

    jetson: JetsonInfo | None
    gpus: tuple[GpuInfo, ...]
    gpu_reason: str | None  # why there is no usable GPU 0
    jetson_error: Exception | None = None
    gpu_error: Exception | None = None

    @property
    def on_jetson(self) -> bool:
        return self.jetson is not None

    @property
    def driver_major(self) -> int | None:
        """Major CUDA version the driver supports (12 for 12.6), None without a GPU."""
        versions = [gpu.driver_version for gpu in self.gpus if gpu.driver_version]
        return int(versions[0].split(".")[0]) if versions else None


def dist_version(distribution: str) -> str | None:
    """Installed version of a pip distribution, None when it is not installed."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def has_module(name: str) -> bool:
    """Whether ``name`` is importable, without importing it (a missing parent package counts as no)."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False

"""A `doctor` row, the machine facts probes share, and what pip says is installed.

Probes live beside what they probe (each runtime's module has its own, `doctor/probes.py` the rest);
they all return these rows and read these facts, so `system` stays the floor of machine facts.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import asdict, dataclass

from clca_deploy.system.gpu import GpuInfo
from clca_deploy.system.jetson import JetsonInfo

STATUSES = ("ok", "missing", "note", "error")


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
        return major_version(versions[0]) if versions else None


def major_version(version: str) -> int:
    """12 for "12.6", 2 for numpy's "2.2.6": the part before the first dot."""
    return int(version.split(".")[0])


def dist_version(distribution: str) -> str | None:
    """Installed version of a pip distribution, None when it is not installed."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None

"""The environment block of every report: library versions and the hardware measured on."""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

from clca_deploy.system.checks import dist_version


def cpu_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


# The instruction sets that decide which CPU kernels run: VNNI/AMX-INT8 for INT8, AVX512-BF16/AMX
# for bf16. Two CPUs with the same name string can differ here (virtual machines mask flags).
CPU_ISA_FLAGS = ("avx2", "avx_vnni", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_int8")


def cpu_isa(cpuinfo: Path = Path("/proc/cpuinfo")) -> list[str]:
    """The CPU_ISA_FLAGS this CPU reports, in that order; empty where /proc/cpuinfo is absent."""
    if not cpuinfo.exists():
        return []
    for line in cpuinfo.read_text(errors="replace").splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            return [flag for flag in CPU_ISA_FLAGS if flag in flags]
    return []


# Recorded beside each registered runtime's own distributions: the core, NVML (power) and NNCF (the
# OpenVINO comparison in benchmarks/).
OTHER_DISTRIBUTIONS = ("onnx", "nvidia-ml-py", "nncf", "numpy")


def environment() -> dict:
    """Versions of the runtimes and the CPU/GPU, gathered without importing optional libraries."""
    from clca_deploy.runtime.registry import runtime_specs
    from clca_deploy.system.gpu import list_gpus

    info = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_name(),
        "cpu_isa": cpu_isa(),
        "cpu_count": os.cpu_count(),
        "clca_deploy": dist_version("clca-deploy"),
    }
    runtime_distributions = [name for spec in runtime_specs() for name in spec.distributions]
    for package in dict.fromkeys([*runtime_distributions, *OTHER_DISTRIBUTIONS]):
        info[package] = dist_version(package)
    if "torch" in sys.modules:  # only when the run used it: importing torch costs seconds and memory
        info["torch_threads"] = sys.modules["torch"].get_num_threads()
    gpus = list_gpus()  # from the CUDA driver, not torch
    info["gpu"] = gpus[0].name if gpus else None
    info["gpus"] = [gpu.to_dict() for gpu in gpus]
    return info

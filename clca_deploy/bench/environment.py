"""The environment block of every report: library versions and the hardware measured on."""

from __future__ import annotations

import importlib
import importlib.util
import os
import platform
import re
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


# NVIDIA ships one library as several wheels named by CUDA major: tensorrt-cu12 and tensorrt-cu13 carry the
# same `tensorrt` module (with tensorrt-cu12-libs beneath them). A runtime lists them after the plain name,
# and the report keeps the plain name's key, so that `pip install tensorrt-cu12` does not record null.
_CUDA_VARIANT = re.compile(r"(?P<base>.+?)[-_.]cu\d+(?:[-_.].+)?")


def report_keys(distributions) -> dict[str, tuple[str, ...]]:
    """{report key: the distributions that may give its version, in order}; a CUDA variant folds into its plain name."""
    keys: dict[str, list[str]] = {}
    for name in distributions:
        match = _CUDA_VARIANT.fullmatch(name)
        if match and match["base"] in keys:
            keys[match["base"]].append(name)
        else:
            keys.setdefault(name, [name])
    return {key: tuple(names) for key, names in keys.items()}


def module_version(module_name: str) -> str | None:
    """``__version__`` of the module: from sys.modules when this run imported it, else imported here, guarded."""
    module = sys.modules.get(module_name)
    if module is None:
        try:
            if importlib.util.find_spec(module_name) is None:  # finding imports nothing: absent costs nothing
                return None
            module = importlib.import_module(module_name)
        except Exception:  # a broken install (TensorRT without its libraries) is as good as none here
            return None
    version = getattr(module, "__version__", None)
    return version if isinstance(version, str) and version else None


def installed_version(key: str, distributions: tuple[str, ...]) -> str | None:
    """The version of ``key``: pip metadata of its distributions first, else its module's ``__version__``.

    The module is the fallback for installs pip knows nothing of, such as TensorRT from JetPack's apt packages.
    """
    for name in distributions:
        if (version := dist_version(name)) is not None:
            return version
    return module_version(key.replace("-", "_"))


def environment() -> dict:
    """Versions of the runtimes and the CPU/GPU: pip metadata, a module imported only where pip knows nothing of it."""
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
    for key, distributions in report_keys([*runtime_distributions, *OTHER_DISTRIBUTIONS]).items():
        info[key] = installed_version(key, distributions)
    if "torch" in sys.modules:  # only when the run used it: importing torch costs seconds and memory
        info["torch_threads"] = sys.modules["torch"].get_num_threads()
    gpus = list_gpus()  # from the CUDA driver, not torch
    info["gpu"] = gpus[0].name if gpus else None
    info["gpus"] = [gpu.to_dict() for gpu in gpus]
    return info

"""`doctor`'s rows for what no runtime owns: the interpreter, the core libraries, serving and plotting,
the GPU and the Jetson. (Each runtime's module has its own probe; ``report`` puts them in one table.)

Versions come from pip metadata; nothing here imports a library.
"""

from __future__ import annotations

import platform
import sys

from clca_deploy.extras import install_command
from clca_deploy.system import checks
from clca_deploy.system import gpu as system_gpu
from clca_deploy.system.checks import Check, Context, major_version
from clca_deploy.tensorrt.plan import MIN_TENSORRT, parse_trt_version

# The Python each JetPack's Ubuntu ships (20.04, 22.04, 24.04), by L4T major: JetPack's TensorRT
# bindings are built for that interpreter only.
SYSTEM_PYTHON_FOR_L4T = {"35": "3.8", "36": "3.10", "38": "3.12"}

CORE_HINT = 'pip install "clca-deploy" (a core dependency is missing or broken)'
JETSON_NUMPY_HINT = 'pip install "numpy<2" if a JetPack module fails with "compiled using NumPy 1.x"'
JETSON_PYTHON_HINT = "create the venv from the system Python: /usr/bin/python3 -m venv --system-site-packages .venv"
JETPACK_UPGRADE_HINT = "upgrade to JetPack 6.1 or newer (TensorRT 10.3); see docs/jetson.md"
GPU_DRIVER_HINT = "a machine with an NVIDIA GPU and its driver (the CPU path needs neither)"



def probe_python(ctx: Context) -> Check:
    version = platform.python_version()
    detail = f"{version} ({sys.executable})"
    l4t = ctx.jetson.l4t if ctx.jetson else None
    system = SYSTEM_PYTHON_FOR_L4T.get(l4t.split(".")[0]) if l4t else None
    if system and ".".join(version.split(".")[:2]) != system:
        return Check(
            "Python", "note", f"{detail}; JetPack's TensorRT bindings are built for its Python {system}",
            JETSON_PYTHON_HINT,
        )
    return Check("Python", "ok", detail)


def probe_numpy(ctx: Context) -> Check:
    version = checks.dist_version("numpy")
    if version is None:
        return Check("numpy", "missing", "not installed", CORE_HINT)
    if ctx.on_jetson and major_version(version) >= 2:
        return Check(
            "numpy", "note", f"{version}; JetPack's own Python modules (OpenCV...) are built for its numpy 1.x",
            JETSON_NUMPY_HINT,
        )
    return Check("numpy", "ok", version)


def probe_onnx(ctx: Context) -> Check:
    version = checks.dist_version("onnx")
    if version is None:
        return Check("onnx", "missing", "not installed (reads and writes every .onnx file)", CORE_HINT)
    return Check("onnx", "ok", version)


def probe_pytriton(ctx: Context) -> Check:
    version = checks.dist_version("nvidia-pytriton")
    if version is None:
        return Check("PyTriton", "missing", "not installed: needed for `clca-deploy serve`", install_command("serve"))
    client = checks.dist_version("tritonclient")
    return Check("PyTriton", "ok", version + (f", tritonclient {client}" if client else ""))


def probe_matplotlib(ctx: Context) -> Check:
    version = checks.dist_version("matplotlib")
    if version is None:
        detail = "not installed: needed for the PNG plots of bench and sweep"
        return Check("matplotlib", "missing", detail, install_command("plot"))
    return Check("matplotlib", "ok", version)


def _gib(size: int) -> str:
    return f"{size / 2**30:.1f} GiB"


def probe_gpu(ctx: Context) -> list[Check]:
    if ctx.gpu_error is not None:
        raise ctx.gpu_error
    # nvidia-smi adds the kernel driver's version, and still answers when libcuda.so.1 cannot be
    # loaded; Jetson Orin has none, so it is not started there.
    smi = None if ctx.on_jetson else system_gpu.query_nvidia_smi()
    if not ctx.gpus:
        detail = ctx.gpu_reason or "no CUDA GPU on this machine"
        if smi:
            detail += f"; yet nvidia-smi lists {', '.join(gpu.name for gpu in smi)} (driver {smi[0].driver_version})"
        return [Check("GPU", "missing", detail, GPU_DRIVER_HINT)]
    rows = []
    for gpu in ctx.gpus:
        parts = [gpu.name, f"compute {gpu.compute_capability}"]
        if gpu.total_memory_bytes is not None:
            parts.append(_gib(gpu.total_memory_bytes) + (" shared with the CPU" if gpu.integrated else ""))
        driver = f"CUDA driver {gpu.driver_version}" if gpu.driver_version else "CUDA driver version unknown"
        if smi:
            driver += f" (NVIDIA {smi[0].driver_version})"
        parts.append(driver)
        rows.append(Check(f"GPU {gpu.index}" if len(ctx.gpus) > 1 else "GPU", "ok", ", ".join(parts)))
    return rows


def probe_jetson(ctx: Context) -> list[Check]:
    if ctx.jetson_error is not None:
        raise ctx.jetson_error
    info = ctx.jetson
    if info is None:
        return [Check("Jetson", "note", "not a Jetson")]
    rows = [Check("Jetson", "ok", info.model or "a Jetson (no readable /proc/device-tree/model)")]
    if info.l4t is None:
        rows.append(Check("JetPack", "note", "L4T release unknown (/etc/nv_tegra_release unreadable)"))
    else:
        jetpack = f"JetPack {info.jetpack}" if info.jetpack else "JetPack release not in this version's table"
        shipped = info.tensorrt
        if shipped and parse_trt_version(shipped)[:2] < MIN_TENSORRT:
            rows.append(
                Check(
                    "JetPack", "note",
                    f"{jetpack} (L4T {info.l4t}) ships TensorRT {shipped}, older than build-trt needs",
                    JETPACK_UPGRADE_HINT,
                )
            )
        else:
            trt = f", ships TensorRT {shipped}" if shipped else ""
            rows.append(Check("JetPack", "ok" if info.jetpack else "note", f"{jetpack} (L4T {info.l4t}){trt}"))
    if info.power_mode:
        rows.append(Check("power mode", "ok", info.power_mode))
    else:
        rows.append(Check("power mode", "note", "unknown (no /var/lib/nvpmodel/status and no nvpmodel)"))
    return rows

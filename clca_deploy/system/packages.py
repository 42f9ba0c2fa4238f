"""Doctor probes for the Python side: the interpreter and each library a pipeline stage needs.

Versions come from pip metadata where that is enough; a library is imported only where its row needs
what only the import tells (onnxruntime's providers, whether torch sees CUDA, TensorRT's version,
which JetPack installs without pip metadata).
"""

from __future__ import annotations

import platform
import sys

from clca_deploy.system.checks import HINTS, Check, Context, dist_version, has_module

# The Python each JetPack's Ubuntu ships (20.04, 22.04, 24.04), by L4T major: JetPack's TensorRT
# bindings are built for that interpreter only.
SYSTEM_PYTHON_FOR_L4T = {"35": "3.8", "36": "3.10", "38": "3.12"}

# Every one of these installs the same `onnxruntime` module; two at once overwrite each other.
ORT_DISTRIBUTIONS = ("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino", "onnxruntime-directml")


def _major(version: str) -> int:
    return int(version.split(".")[0])


def probe_python(ctx: Context) -> Check:
    version = platform.python_version()
    detail = f"{version} ({sys.executable})"
    l4t = ctx.jetson.l4t if ctx.jetson else None
    system = SYSTEM_PYTHON_FOR_L4T.get(l4t.split(".")[0]) if l4t else None
    if system and ".".join(version.split(".")[:2]) != system:
        return Check(
            "Python", "note", f"{detail}; JetPack's TensorRT bindings are built for its Python {system}",
            HINTS["python_jetson"],
        )
    return Check("Python", "ok", detail)


def probe_numpy(ctx: Context) -> Check:
    version = dist_version("numpy")
    if version is None:
        return Check("numpy", "missing", "not installed", HINTS["core"])
    if ctx.on_jetson and _major(version) >= 2:
        return Check(
            "numpy", "note", f"{version}; JetPack's own Python modules (OpenCV...) are built for its numpy 1.x",
            HINTS["numpy_jetson"],
        )
    return Check("numpy", "ok", version)


def probe_onnx(ctx: Context) -> Check:
    version = dist_version("onnx")
    if version is None:
        return Check("onnx", "missing", "not installed (reads and writes every .onnx file)", HINTS["core"])
    return Check("onnx", "ok", version)


def probe_onnxruntime(ctx: Context) -> Check:
    installed = {name: version for name in ORT_DISTRIBUTIONS if (version := dist_version(name))}
    if not installed:
        fix = HINTS["gpu"] if ctx.gpus and not ctx.on_jetson else HINTS["cpu"]
        return Check("onnxruntime", "missing", "not installed (runs .onnx files: predict, bench, calibrate)", fix)
    found = ", ".join(f"{name} {version}" for name, version in installed.items())
    if len(installed) > 1:
        return Check(
            "onnxruntime", "error", f"{found} are all installed and overwrite each other's onnxruntime module",
            HINTS["ort_conflict"],
        )
    try:
        import onnxruntime

        providers = list(onnxruntime.get_available_providers())
    except Exception as exc:  # a GPU build missing its CUDA libraries fails at import
        return Check("onnxruntime", "error", f"{found} does not import: {exc}", HINTS["ort_conflict"])
    names = ", ".join(provider.removesuffix("ExecutionProvider") for provider in providers)
    detail = f"{found}; providers: {names}"
    if ctx.gpus and "CUDAExecutionProvider" not in providers:
        fix = HINTS["ort_jetson"] if ctx.on_jetson else HINTS["gpu"]
        return Check("onnxruntime", "note", f"{detail} (no CUDA provider: .onnx files run on the CPU here)", fix)
    return Check("onnxruntime", "ok", detail)


def probe_torch(ctx: Context) -> Check:
    version = dist_version("torch")
    if version is None:
        return Check(
            "torch", "missing", "not installed: needed only for export, train and checkpoints (info, sweep, a PyTorch reference)",
            HINTS["export"],
        )
    try:
        import torch  # only here, and only when installed: it takes a second or two

        cuda = torch.cuda.is_available()
        cuda_build = torch.version.cuda
    except Exception as exc:
        return Check("torch", "error", f"{version} does not import: {exc}", HINTS["export"])
    if cuda:
        return Check("torch", "ok", f"{version}, sees CUDA (built for CUDA {cuda_build})")
    if ctx.gpus:
        what = f"a CUDA {cuda_build} build that does not start here" if cuda_build else "a CPU build"
        return Check("torch", "note", f"{version}, {what}: export works, training runs on the CPU")
    build = f"CUDA {cuda_build} build, no GPU here" if cuda_build else "CPU build"
    return Check("torch", "ok", f"{version} ({build}); needed only for export, train and checkpoints (info, sweep, a PyTorch reference)")


def probe_tensorrt(ctx: Context) -> Check:
    fix = HINTS["trt_jetson"] if ctx.on_jetson else HINTS["trt"]
    if not has_module("tensorrt"):
        shipped = ctx.jetson.tensorrt if ctx.jetson else None
        extra = f"; this JetPack ships TensorRT {shipped}" if shipped else ""
        return Check("TensorRT", "missing", f"not installed: needed for build-trt and .engine files{extra}", fix)
    try:
        import tensorrt

        version = str(tensorrt.__version__)
    except Exception as exc:  # a wheel without its NVIDIA libraries raises OSError/ImportError
        return Check("TensorRT", "error", f"installed but does not import: {exc}", fix)
    from clca_deploy.tensorrt.plan import build_mode_summary, parse_trt_version

    summary = build_mode_summary(parse_trt_version(version))
    status = "error" if summary.startswith("unsupported") else "ok"
    return Check("TensorRT", status, f"{version}: build-trt is {summary}", fix if status == "error" else None)


def probe_cuda_bindings(ctx: Context) -> Check:
    found = []
    if has_module("pycuda"):
        found.append(("pycuda", dist_version("pycuda")))
    if has_module("cuda.bindings") or has_module("cuda.cuda"):
        # Recent cuda-python is a metapackage over cuda-bindings, whose version is the one that matters.
        bindings = dist_version("cuda-bindings")
        found.append(("cuda-bindings", bindings) if bindings else ("cuda-python", dist_version("cuda-python")))
    if not found:
        fix = HINTS["cuda_jetson"] if ctx.on_jetson else HINTS["trt"]
        return Check("CUDA bindings", "missing", "neither pycuda nor cuda-python (TensorRT's host/device copies)", fix)
    detail = ", ".join(f"{name} {version or '(version unknown)'}" for name, version in found)
    driver = ctx.driver_major
    python_version = dict(found).get("cuda-bindings") or dict(found).get("cuda-python")
    if driver is not None and python_version and _major(python_version) > driver:
        # cuda-bindings N.x needs a CUDA N driver; 12.x also runs on CUDA 13 drivers, not the reverse.
        fix = HINTS["cuda_driver_12"] if driver == 12 else f'pip install "cuda-python>={driver},<{driver + 1}"'
        return Check(
            "CUDA bindings", "error",
            f"{detail}: cuda-bindings {_major(python_version)}.x needs a CUDA {_major(python_version)} driver, "
            f"this one supports CUDA {driver}", fix,
        )
    return Check("CUDA bindings", "ok", detail)


def probe_pytriton(ctx: Context) -> Check:
    version = dist_version("nvidia-pytriton")
    if version is None:
        return Check("PyTriton", "missing", "not installed: needed for `clca-deploy serve`", HINTS["serve"])
    client = dist_version("tritonclient")
    return Check("PyTriton", "ok", version + (f", tritonclient {client}" if client else ""))


def probe_matplotlib(ctx: Context) -> Check:
    version = dist_version("matplotlib")
    if version is None:
        detail = "not installed: needed for the PNG plots of bench and sweep"
        return Check("matplotlib", "missing", detail, HINTS["plot"])
    return Check("matplotlib", "ok", version)


def probe_openvino(ctx: Context) -> Check:
    version = dist_version("openvino")
    if version is None:
        detail = "not installed (optional x86 CPU runtime: predict / bench / serve --runtime openvino)"
        return Check("openvino", "note", detail, HINTS["openvino"])
    try:
        import openvino

        capabilities = list(openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    except Exception as exc:  # noqa: BLE001 - a broken install is this row's finding, not a crash
        return Check("openvino", "error", f"{version} does not start: {str(exc).splitlines()[-1]}", HINTS["openvino"])
    bf16 = "bf16 on this CPU" if "BF16" in capabilities else "no bf16 on this CPU (f32 and int8 only)"
    return Check("openvino", "ok", f"{version}, {bf16}")

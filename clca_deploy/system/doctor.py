"""`clca-deploy doctor`: one table of what this machine can run, what is missing and how to get it.

Every probe runs isolated: whatever one raises becomes its own row's "error: ..." detail, so the
report always completes. Probes that start programs (nvidia-smi, nvpmodel) do so with short timeouts.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from typing import Callable

from clca_deploy.system import gpu as system_gpu
from clca_deploy.system import jetson as system_jetson
from clca_deploy.system import packages
from clca_deploy.system.checks import HINTS, Check, Context
from clca_deploy.tensorrt.plan import MIN_TENSORRT, parse_trt_version

FORMAT = "clca_deploy.doctor/1"

ProbeResult = Check | list[Check]


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
        return [Check("GPU", "missing", detail, HINTS["gpu_driver"])]
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
                    HINTS["jetpack_upgrade"],
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


# (row name used if the probe fails, probe) in table order.
PROBES: tuple[tuple[str, Callable[[Context], ProbeResult]], ...] = (
    ("Python", packages.probe_python),
    ("numpy", packages.probe_numpy),
    ("onnx", packages.probe_onnx),
    ("onnxruntime", packages.probe_onnxruntime),
    ("torch", packages.probe_torch),
    ("TensorRT", packages.probe_tensorrt),
    ("CUDA bindings", packages.probe_cuda_bindings),
    ("GPU", probe_gpu),
    ("Jetson", probe_jetson),
    ("PyTriton", packages.probe_pytriton),
    ("matplotlib", packages.probe_matplotlib),
    ("openvino", packages.probe_openvino),
)


def gather_context() -> Context:
    """The Jetson and GPU facts, each gathered in isolation (a failure is kept for its row)."""
    jetson = jetson_error = None
    try:
        jetson = system_jetson.jetson_info()
    except Exception as exc:
        jetson_error = exc
    gpus, reason, gpu_error = (), None, None
    try:
        gpus = tuple(system_gpu.list_gpus())
        reason = system_gpu.gpu_unavailable_reason(0)
    except Exception as exc:
        gpu_error = exc
        reason = f"error: {type(exc).__name__}: {exc}"
    return Context(jetson=jetson, gpus=gpus, gpu_reason=reason, jetson_error=jetson_error, gpu_error=gpu_error)


def run_probe(name: str, probe: Callable[[Context], ProbeResult], ctx: Context) -> list[Check]:
    """The rows of one probe, or one "error" row saying what it raised."""
    try:
        result = probe(ctx)
    except Exception as exc:
        return [Check(name, "error", f"error: {type(exc).__name__}: {exc}")]
    return list(result) if isinstance(result, (list, tuple)) else [result]


@dataclass(frozen=True)
class DoctorReport:
    """The rows in table order and the machine they describe; JSON through ``to_dict``."""

    checks: tuple[Check, ...]
    platform: str
    machine: str
    jetson: dict | None
    gpus: tuple[dict, ...]

    def count(self, status: str) -> int:
        return sum(check.status == status for check in self.checks)

    def to_dict(self) -> dict:
        return {
            "format": FORMAT,
            "platform": self.platform,
            "machine": self.machine,
            "jetson": self.jetson,
            "gpus": list(self.gpus),
            "checks": [check.to_dict() for check in self.checks],
        }


def run_doctor(context: Context | None = None) -> DoctorReport:
    """Check this machine (or the facts in ``context``); never raises for what is missing or broken."""
    ctx = context if context is not None else gather_context()
    checks = tuple(row for name, probe in PROBES for row in run_probe(name, probe, ctx))
    return DoctorReport(
        checks=checks,
        platform=platform.platform(),
        machine=platform.machine(),
        jetson=ctx.jetson.to_dict() if ctx.jetson else None,
        gpus=tuple(gpu.to_dict() for gpu in ctx.gpus),
    )


def format_report(report: DoctorReport) -> str:
    """The report as an aligned text table, each fix on the line below its row."""
    width = max(len(check.name) for check in report.checks)
    lines = [f"clca-deploy doctor: {report.platform}"]
    for check in report.checks:
        lines.append(f"  {check.status:<8} {check.name:<{width}}  {check.detail}")
        if check.fix:
            lines.append(f"  {'':<8} {'':<{width}}  -> {check.fix}")
    counts = ", ".join(f"{report.count(status)} {status}" for status in ("ok", "missing", "note", "error"))
    lines.append(counts)
    return "\n".join(lines)

"""`clca-deploy doctor`: one table of what this machine can run, what is missing and how to get it.

Every probe runs isolated: whatever one raises becomes its own row's "error: ..." detail, so the
report always completes. Probes that start programs (nvidia-smi, nvpmodel) do so with short timeouts.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from typing import Callable

from clca_deploy.doctor import probes
from clca_deploy.runtime.registry import runtime_specs
from clca_deploy.system import gpu as system_gpu
from clca_deploy.system import jetson as system_jetson
from clca_deploy.system.checks import Check, Context
from clca_deploy.terminal import printable

FORMAT = "clca_deploy.doctor/1"

ProbeResult = Check | list[Check]
Probe = Callable[[Context], ProbeResult]


def probe_table() -> tuple[tuple[str, Probe], ...]:
    """(row name used if the probe fails, probe) in table order: the core, every registered runtime's
    rows in registry order, the machine, then serving and plotting."""
    runtime_rows = tuple(row for spec in runtime_specs() for row in spec.probes)
    return (
        ("Python", probes.probe_python),
        ("numpy", probes.probe_numpy),
        ("onnx", probes.probe_onnx),
        *runtime_rows,
        ("GPU", probes.probe_gpu),
        ("Jetson", probes.probe_jetson),
        ("PyTriton", probes.probe_pytriton),
        ("matplotlib", probes.probe_matplotlib),
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


def run_probe(name: str, probe: Probe, ctx: Context) -> list[Check]:
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
    checks = tuple(row for name, probe in probe_table() for row in run_probe(name, probe, ctx))
    return DoctorReport(
        checks=checks,
        platform=platform.platform(),
        machine=platform.machine(),
        jetson=ctx.jetson.to_dict() if ctx.jetson else None,
        gpus=tuple(gpu.to_dict() for gpu in ctx.gpus),
    )


def format_report(report: DoctorReport) -> str:
    """The report as an aligned text table, each fix on the line below its row."""
    # Details quote what the machine reports (a device-tree model, a driver string): escaped, one line each.
    width = max(len(check.name) for check in report.checks)
    lines = [f"clca-deploy doctor: {printable(report.platform)}"]
    for check in report.checks:
        lines.append(f"  {check.status:<8} {printable(check.name):<{width}}  {printable(check.detail)}")
        if check.fix:
            lines.append(f"  {'':<8} {'':<{width}}  -> {printable(check.fix)}")
    counts = ", ".join(f"{report.count(status)} {status}" for status in ("ok", "missing", "note", "error"))
    lines.append(counts)
    return "\n".join(lines)

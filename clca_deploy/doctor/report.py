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


STATUS_WIDTH = len("missing")  # the longest status: the names line up whichever statuses a report has


def format_report(report: DoctorReport, width: int | None = None) -> str:
    """The report as an aligned text table (rich), each fix on the line below its row, every detail and fix
    wrapped under its own column to ``width`` (None: ``terminal.output_width`` of standard output)."""
    import sys

    from rich.console import Group
    from rich.padding import Padding
    from rich.table import Table
    from rich.text import Text

    from clca_deploy.terminal import output_width, render_plain

    # Details quote what the machine reports (a device-tree model, a driver string): escaped, as Text.
    grid = Table.grid(padding=(0, 2))
    grid.add_column(min_width=STATUS_WIDTH, no_wrap=True)
    grid.add_column(no_wrap=True)
    grid.add_column(overflow="fold")
    for check in report.checks:
        grid.add_row(Text(check.status), Text(printable(check.name)), Text(printable(check.detail)))
        if check.fix:  # "-> " then the fix, wrapped under itself
            fix = Table.grid(padding=(0, 1))
            fix.add_column(no_wrap=True)
            fix.add_column(overflow="fold")
            fix.add_row("->", Text(printable(check.fix)))
            grid.add_row("", "", fix)
    counts = ", ".join(f"{report.count(status)} {status}" for status in ("ok", "missing", "note", "error"))
    view = Group(Text(f"clca-deploy doctor: {printable(report.platform)}"), Padding(grid, (0, 0, 0, 2)), Text(counts))
    return render_plain(view, width if width is not None else output_width(sys.stdout))

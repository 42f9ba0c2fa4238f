"""Running a plan: statuses made up front, a budget checked before each step, the report written after each.

Statuses: "planned" until its turn; "skipped" (the machine lacks something, or a step it needs did not
succeed) with the reason; "not started" when the budget cannot hold it, or the check was interrupted;
"running" while it runs (what a killed run leaves behind); then "ok" or "failed" ("interrupted" when
SIGTERM, a time limit's first signal, arrives while it runs). A step the budget cannot hold is passed
over, and later, cheaper steps that still fit run.
"""

from __future__ import annotations

import signal
import time
import traceback
from typing import Any, Callable

from benchmarks.gpu_check.machine import Machine
from benchmarks.gpu_check.outcome import Interrupted, Skip, StepError, one_line
from benchmarks.gpu_check.plan import Step, check_order
from benchmarks.gpu_check.report import Report


class Budget:
    """Seconds left of the run's budget, by ``clock`` (a fake one in tests)."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic):
        self.seconds, self.clock, self.started = float(seconds), clock, clock()

    def elapsed(self) -> float:
        return self.clock() - self.started

    def left(self) -> float:
        return self.seconds - self.elapsed()


def initial_records(steps: list[Step], machine: Machine) -> list[dict[str, Any]]:
    """The plan as the report first shows it: planned, or skipped with the machine's reason (dependants too)."""
    check_order(steps)
    records: dict[str, dict[str, Any]] = {}
    for step in steps:
        record = {"name": step.name, "status": "planned", "estimate_s": round(step.estimate(machine), 1)}
        reason = step.applies(machine)
        blocked = next((need for need in step.needs if records[need]["status"] == "skipped"), None)
        if reason is None and blocked is not None:
            reason = f"needs '{blocked}', skipped: {records[blocked]['reason']}"
        if reason is not None:
            record.update(status="skipped", reason=reason)
        records[step.name] = record
    return list(records.values())


def _blocked(step: Step, report: Report) -> tuple[str, str] | None:
    """(status, reason) when a step it needs did not succeed, else None."""
    for need in step.needs:
        status = report.step(need)["status"]
        if status == "not started":
            return "not started", f"needs '{need}', which was not started"
        if status != "ok":
            return "skipped", f"needs '{need}', which {'failed' if status == 'failed' else 'was ' + status}"
    return None


def _run_one(step: Step, work: Any, report: Report, echo: Callable[[str], None]) -> None:
    started = time.monotonic()
    report.update(step.name, status="running", started_at_s=report.doc["elapsed_s"])
    fields: dict[str, Any]
    try:
        fields = {"status": "ok", "result": step.run(work)}
    except Skip as exc:
        fields = {"status": "skipped", "reason": str(exc)}
    except (Interrupted, KeyboardInterrupt):
        report.update(step.name, status="interrupted", reason="the check was interrupted while it ran",
                      seconds=round(time.monotonic() - started, 1))
        raise
    except Exception as exc:  # record and go on: one run should say as much as it can
        fields = {"status": "failed", "reason": one_line(exc), "traceback": traceback.format_exc(limit=8)}
        if isinstance(exc, StepError) and exc.result:
            fields["result"] = exc.result
    fields["seconds"] = round(time.monotonic() - started, 1)
    report.update(step.name, **fields)
    reason = f": {fields['reason']}" if "reason" in fields else ""
    echo(f"[{fields['status']}] {step.name} ({fields['seconds']} s){reason}")


def _next_action(step: Step, machine: Machine, report: Report, budget: Budget) -> tuple[str, str] | None:
    """(status, reason) that keeps ``step`` from running now, or None to run it."""
    blocked = _blocked(step, report)
    if blocked:
        return blocked
    left, estimate = budget.left(), step.estimate(machine)
    if estimate > left:
        return "not started", (f"about {estimate:.0f} s needed, {max(left, 0):.0f} s of the {budget.seconds:.0f} s "
                               "budget left (raise --budget-s)")
    return None


def _on_sigterm(signum, frame) -> None:
    raise Interrupted()


def run_plan(steps: list[Step], work: Any, report: Report, budget: Budget,
             echo: Callable[[str], None] = print) -> int:
    """Run every planned step that fits the budget; 0 when none failed, 1 when one did (or the run was interrupted)."""
    machine = work.machine
    report.doc["steps"] = initial_records(steps, machine)
    report.set(status="running", elapsed_s=round(budget.elapsed(), 1))
    handles_sigterm = _main_thread()  # Python lets only the main thread install handlers
    previous = signal.signal(signal.SIGTERM, _on_sigterm) if handles_sigterm else None
    try:
        for step in steps:
            if report.step(step.name)["status"] != "planned":
                continue
            report.doc["elapsed_s"] = round(budget.elapsed(), 1)
            held = _next_action(step, machine, report, budget)
            if held:
                report.update(step.name, status=held[0], reason=held[1])
                echo(f"[{held[0]}] {step.name}: {held[1]}")
                continue
            _run_one(step, work, report, echo)
        report.set(status="finished", elapsed_s=round(budget.elapsed(), 1))
    except (Interrupted, KeyboardInterrupt):  # SIGTERM (a time limit) or Ctrl-C: say so in the file, then go
        for record in report.doc["steps"]:
            if record["status"] == "planned":
                record.update(status="not started", reason="the check was interrupted (SIGTERM or Ctrl-C)")
        report.set(status="interrupted", elapsed_s=round(budget.elapsed(), 1))
        return 1
    finally:
        if handles_sigterm:
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
    return 1 if report.failed() else 0


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()

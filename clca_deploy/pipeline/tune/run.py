"""``tune``: from a checkpoint to the most accurate deployment that meets a latency or energy budget here.

The run: the candidates this machine can run (keep rates x file precisions x runtimes), screened
cheapest first (lowest keep rate of every family first; a family over budget at one keep rate is not
tried at higher ones), each with its accuracy and agreement on the user's images; the latency curve
of each family searched for steps (a keep rate just under a step is measured too); the contenders
timed again side by side; the pick; the deployment written. Every measurement goes into a record in
the work folder as soon as it is made, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from clca_deploy.artifacts import check_output_folder, sha256_file
from clca_deploy.errors import ClcaDeployError
from clca_deploy.logs import log_info
from clca_deploy.pipeline.tune.candidates import Files, candidates, probe_machine
from clca_deploy.pipeline.tune.config import TuneConfig, keep_grid
from clca_deploy.pipeline.tune.measure import Scorer, has_power_sensor, screen, time_interleaved
from clca_deploy.pipeline.tune.model import Budget, Candidate, Measurement
from clca_deploy.pipeline.tune.record import RECORD_FILE, TuneRecord, read_record, resumable, write_record
from clca_deploy.pipeline.tune.rules import Pick, pick, ruled_out, screening_order
from clca_deploy.pipeline.tune.search import refine_steps

FINAL_SHARE = 0.25  # of --minutes kept for the final side-by-side timing and the deployment
MAX_REASON = 2000  # characters of a failure kept in the record
CONTENDER_SLACK = 1.25  # a screen within this factor of the budget is timed again: screens are short
MAX_CONTENDERS = 8


@dataclass(frozen=True)
class TuneResult:
    """Every candidate with its figures, the pick and why, and what was written."""

    settings: dict
    measurements: tuple[Measurement, ...]
    pick: Pick
    steps: tuple[dict, ...]
    notes: tuple[str, ...]
    environment: dict
    seconds: float
    deployment: dict = field(default_factory=dict)  # {"model", "triton_repository", "plot", "report"}

    def to_dict(self) -> dict:
        chosen = self.pick.chosen
        return {
            "format": "clca_deploy.tune/1", "settings": self.settings, "environment": self.environment,
            "pick": {"candidate": chosen.candidate.key if chosen else None, "reason": self.pick.reason,
                     "closest": [m.candidate.key for m in self.pick.closest]},
            "candidates": [m.to_dict() for m in self.measurements], "steps": list(self.steps),
            "notes": list(self.notes), "deployment": self.deployment, "seconds": self.seconds,
        }


@dataclass
class _Run:
    """One tuning run's state: what is measured so far, the clock, the record."""

    config: TuneConfig
    files: Files
    scorer: Scorer
    settings: dict
    measured: dict[str, Measurement]
    deadline: float
    log: Callable[[str], None]
    clock: Callable[[], float]

    def out_of_time(self) -> bool:
        return self.clock() >= self.deadline

    def save(self, measurement: Measurement) -> None:
        self.measured[measurement.candidate.key] = measurement
        write_record(self.config.workdir / RECORD_FILE, TuneRecord(self.settings, tuple(self.measured.values())))

    def measure(self, candidate: Candidate) -> Measurement:
        """Screen one candidate (its files made or reused first); a failure is a failed row, not an error."""
        tokens = self.files.tokens(candidate.keep_rate)
        try:
            path = self.files.model_file(candidate)
        except ClcaDeployError as exc:
            return Measurement(candidate, tokens, status="failed", reason=str(exc)[:MAX_REASON])
        measurement = screen(candidate, path, tokens, self.scorer, self.config.batch, self.config.budget.mj is not None)
        self.log(_progress_line(measurement, len(self.measured) + 1))
        return measurement


def _progress_line(m: Measurement, count: int) -> str:
    if m.status != "ok":
        return f"[{count}] {m.candidate.key}: {m.status}: {m.reason}"
    agreement = "-" if m.agreement is None else f"{m.agreement:.1f}%"
    return f"[{count}] {m.candidate.key}: {m.tokens} tokens, p90 {m.p90_ms:.1f} ms (screen), agreement {agreement}"


def run_tune(config: TuneConfig, log: Callable[[str], None] = log_info,
             clock: Callable[[], float] = time.monotonic) -> TuneResult:
    """Tune ``config.checkpoint`` for this machine; writes the deployment under ``config.workdir``."""
    started = clock()
    run, pool, notes = _start(config, log, clock, started)
    _screen_all(run, pool)
    steps = refine_steps(run, pool) if config.steps and not run.out_of_time() else []
    chosen = _final(run)
    from clca_deploy.bench.environment import environment
    from clca_deploy.pipeline.tune.deploy import write_deployment

    result = TuneResult(run.settings, tuple(run.measured.values()), chosen, tuple(steps), tuple(notes), environment(),
                        round(clock() - started, 1))
    return write_deployment(result, config, log)


def _start(config: TuneConfig, log, clock, started: float):
    """Checks before any work, the candidates, the record to resume from."""
    config.validate()
    if not Path(config.checkpoint).is_file():
        raise ClcaDeployError(f"checkpoint not found: {config.checkpoint}. Check the path.")
    if not Path(config.data).is_dir():
        raise ClcaDeployError(f"--data {config.data} is not a folder of images. Give the images to judge accuracy on.")
    if config.budget.mj is not None and (reason := has_power_sensor()) is not None:
        raise ClcaDeployError(f"--budget-mj needs a power sensor (tegrastats on a Jetson, NVML on a GPU): {reason}. "
                              "Use --budget-ms here.")
    check_output_folder(config.workdir, "tune folder")
    keep_rates = config.keep_rates or keep_grid(_own_keep_rate(config.checkpoint))
    pool, notes = candidates(probe_machine(), keep_rates, config.precisions, config.runtimes)
    config.workdir.mkdir(parents=True, exist_ok=True)
    settings = _settings(config, keep_rates)
    if config.calibration_data is None and "int8" in config.precisions:
        notes.append("INT8 calibrated on --data, the images accuracy is judged on: pass --calibration-data to keep them apart")
    record = read_record(config.workdir / RECORD_FILE)
    # Measurements carry over; what was pruned or cut off by the clock depends on this run's budget and time.
    measured = {key: m for key, m in resumable(record, settings).items() if m.status in ("ok", "failed")}
    if measured:
        log(f"resuming: {len(measured)} candidates measured before ({config.workdir / RECORD_FILE})")
    files = Files(Path(config.checkpoint), settings["checkpoint_sha256"], config.workdir,
                  Path(config.calibration_data or config.data), config.calibration_images, config.batch, log)
    deadline = started + config.minutes * 60 * (1 - FINAL_SHARE)
    run = _Run(config, files, Scorer.open(Path(config.checkpoint), Path(config.data), config.limit), settings,
               measured, deadline, log, clock)
    return run, pool, notes


def _own_keep_rate(checkpoint: Path) -> float:
    """The checkpoint's trained keep rate (the lowest, where it differs by location); 1.0 for a model without one."""
    from clca_deploy.model.checkpoint import load_checkpoint

    keep = getattr(load_checkpoint(checkpoint).config, "keep_rate", 1.0)
    return float(min(keep)) if isinstance(keep, (tuple, list)) else float(keep)


def _settings(config: TuneConfig, keep_rates) -> dict:
    """What the record's measurements depend on: a change to any of them measures afresh."""
    from clca_deploy.bench.environment import cpu_name
    from clca_deploy.bench.power import rails
    from clca_deploy.system.gpu import list_gpus

    return {
        "checkpoint_sha256": sha256_file(config.checkpoint), "data": str(Path(config.data).resolve()),
        "limit": config.limit, "batch": config.batch, "calibration_data": str(config.calibration_data or config.data),
        "calibration_images": config.calibration_images, "machine": {"cpu": cpu_name(), "gpus": [gpu.name for gpu in list_gpus()]},
        "power_mode": rails.jetson_power_mode(),  # a Jetson's nvpmodel mode: another mode measures afresh
        "keep_rates": list(keep_rates),
    }


def _screen_all(run: _Run, pool: list[Candidate]) -> None:
    """Every candidate, cheapest first, unless the pruning rule or the clock rules it out."""
    from clca_deploy.progress import track

    order = screening_order(pool)
    for candidate in track(order, len(order), "tune", "candidate", run.config.progress):
        if candidate.key in run.measured:
            continue
        if run.out_of_time():
            run.measured[candidate.key] = Measurement(candidate, 0, status="skipped", reason="--minutes ran out before it")
            continue
        pruned = ruled_out([m for m in run.measured.values()], [candidate], run.config.budget)
        if candidate in pruned:
            run.save(Measurement(candidate, 0, status="pruned", reason=pruned[candidate]))
            continue
        run.save(run.measure(candidate))


def _final(run: _Run) -> Pick:
    """The contenders timed again side by side (latency budgets), then the pick."""
    budget = run.config.budget
    ok = [m for m in run.measured.values() if m.status == "ok" and m.value(budget.metric) is not None]
    if budget.ms is not None and ok:
        contenders = _contenders(ok, budget.ms, run.config.min_agreement)
        run.log(f"timing {len(contenders)} contenders side by side ({run.config.iters} calls each)")
        for timed in time_interleaved(contenders, run.scorer, run.config.batch, run.config.warmup, run.config.iters):
            run.save(replace(timed, reason="timed side by side with the other contenders"))
    return pick(list(run.measured.values()), budget, run.config.min_agreement)


def _contenders(ok: list[Measurement], budget_ms: float, floor: float | None) -> list[Measurement]:
    """Those the pick could fall on, in the order it would rank them (the pick's own rule, on a budget widened by
    CONTENDER_SLACK: screens are short), at most MAX_CONTENDERS; with none, the three fastest (the closest it names)."""
    near = pick(ok, Budget(ms=budget_ms * CONTENDER_SLACK), floor).eligible
    return list(near[:MAX_CONTENDERS]) or sorted(ok, key=lambda m: m.p90_ms)[:3]

"""``sweep``: export a checkpoint at several keep rates and bench them: the accuracy-latency curve."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from clca_deploy.artifacts import sha256_file
from clca_deploy.bench.report import BenchReport
from clca_deploy.bench.run import BenchConfig, run_bench
from clca_deploy.errors import ClcaDeployError
from clca_deploy.export import ExportConfig, export_onnx
from clca_deploy.metadata import is_export_of
from clca_deploy.logs import log_info


@dataclass(frozen=True)
class SweepConfig:
    """A sweep: the checkpoint (also the reference), the keep rates, where the exports go, how to bench them.

    ``train_args`` is the JSON of train.py args of a bare state dict (``--config``); the reference
    runs with it too, through ``bench.runtime_options``.
    """

    checkpoint: Path
    keep_rates: tuple[float, ...]
    workdir: Path
    bench: BenchConfig  # models are filled in by the sweep; the reference is the checkpoint
    train_args: Path | None = None


def exported_path(workdir: Path, checkpoint: Path, keep: float) -> Path:
    """Where the sweep writes (or finds) the export of ``checkpoint`` at ``keep``."""
    return workdir / f"{checkpoint.stem}.keep{keep:g}.onnx"


def export_or_reuse(checkpoint: Path, checkpoint_sha: str, keep: float, workdir: Path, log: Callable[[str], None],
                    train_args: Path | None = None) -> Path:
    """The export of ``checkpoint`` at ``keep`` in ``workdir``: the one there if it is of this checkpoint at this
    keep rate, else made now."""
    path = exported_path(workdir, checkpoint, keep)
    # A bare state dict's settings live outside the checkpoint (--config), where the reuse check
    # (the checkpoint's hash in the export) cannot see them: its exports are always made afresh.
    if train_args is None and is_export_of(path, checkpoint_sha, keep):
        log(f"keep {keep:g}: reusing {path}")
    else:
        export_onnx(checkpoint, path, ExportConfig(keep_rate=keep, train_args=train_args), log=log)
    return path


def run_sweep(config: SweepConfig, log: Callable[[str], None] = log_info) -> BenchReport:
    """Export (or reuse) one ONNX file per keep rate, then bench them all against the checkpoint."""
    if not config.keep_rates:
        raise ClcaDeployError("give at least one keep rate, e.g. --keep 0.1 0.25 0.5 0.7 1.0.")
    for keep in config.keep_rates:
        ExportConfig(keep_rate=keep).validate()
    if not Path(config.checkpoint).is_file():
        raise ClcaDeployError(f"checkpoint not found: {config.checkpoint}. Check the path.")
    config.workdir.mkdir(parents=True, exist_ok=True)
    checkpoint_sha = sha256_file(config.checkpoint)
    models = [export_or_reuse(config.checkpoint, checkpoint_sha, keep, config.workdir, log, config.train_args)
              for keep in config.keep_rates]
    bench = replace(config.bench, models=tuple(models), reference=config.checkpoint)
    return run_bench(bench, log=log)

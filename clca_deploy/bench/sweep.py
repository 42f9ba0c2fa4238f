"""``sweep``: export a checkpoint at several keep rates and bench them: the accuracy-latency curve."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from clca_deploy.bench.report import BenchReport
from clca_deploy.bench.run import BenchConfig, run_bench
from clca_deploy.errors import ClcaDeployError


@dataclass(frozen=True)
class SweepConfig:
    checkpoint: Path
    keep_rates: tuple[float, ...]
    workdir: Path
    bench: BenchConfig  # models are filled in by the sweep; the reference is the checkpoint


def _exported_path(workdir: Path, checkpoint: Path, keep: float) -> Path:
    return workdir / f"{checkpoint.stem}.keep{keep:g}.onnx"


def run_sweep(config: SweepConfig, log: Callable[[str], None] = print) -> BenchReport:
    from clca_deploy.artifacts import sha256_file
    from clca_deploy.export import ExportConfig, export_onnx
    from clca_deploy.metadata import is_export_of

    if not config.keep_rates:
        raise ClcaDeployError("give at least one keep rate, e.g. --keep 0.1 0.25 0.5 0.7 1.0.")
    for keep in config.keep_rates:
        ExportConfig(keep_rate=keep).validate()
    if not Path(config.checkpoint).is_file():
        raise ClcaDeployError(f"checkpoint not found: {config.checkpoint}. Check the path.")
    config.workdir.mkdir(parents=True, exist_ok=True)
    checkpoint_sha = sha256_file(config.checkpoint)
    # A bare state dict's settings live outside the checkpoint (--config), where the reuse check
    # (the checkpoint's hash in the export) cannot see them: its exports are always made afresh.
    settings_file = config.bench.runtime_options.checkpoint_args
    models = []
    for keep in config.keep_rates:
        path = _exported_path(config.workdir, config.checkpoint, keep)
        if settings_file is None and is_export_of(path, checkpoint_sha, keep):
            log(f"keep {keep:g}: reusing {path}")
        else:
            export_onnx(config.checkpoint, path, ExportConfig(keep_rate=keep, checkpoint_args=settings_file), log=log)
        models.append(path)
    bench = replace(config.bench, models=tuple(models), reference=config.checkpoint)
    return run_bench(bench, log=log)

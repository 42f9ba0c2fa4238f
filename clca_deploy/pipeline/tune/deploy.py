"""What `tune` leaves behind: the chosen model file (metadata included), a Triton repository for it,
``tune.json`` (every candidate, the machine, the budget, the pick and why) and the Pareto plot."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path
from typing import Callable

from clca_deploy.artifacts import atomic_output, write_json
from clca_deploy.errors import ClcaDeployError
from clca_deploy.pipeline.tune.config import TuneConfig
from clca_deploy.pipeline.tune.measure import runtime_settings

DEPLOY_FOLDER = "deploy"
REPORT_NAME = "tune.json"
PLOT_NAME = "tune.png"


def write_deployment(result, config: TuneConfig, log: Callable[[str], None]):
    """Write the deployment of ``result.pick`` (if any), the report and the plot; returns the result with their paths."""
    deployment: dict = {"report": str(config.workdir / REPORT_NAME)}
    chosen = result.pick.chosen
    if chosen is not None:
        deployment.update(_deploy(chosen, config.workdir / DEPLOY_FOLDER, log))
    try:
        from clca_deploy.pipeline.tune.plot import plot_tune

        plot_tune(result, config.budget, config.workdir / PLOT_NAME)
        deployment["plot"] = str(config.workdir / PLOT_NAME)
    except ClcaDeployError as exc:  # matplotlib missing: the plot is the one thing left out
        deployment["plot"] = None
        deployment["plot_note"] = str(exc)
    result = replace(result, deployment=deployment)
    write_json(config.workdir / REPORT_NAME, result.to_dict())
    return result


def _deploy(chosen, folder: Path, log) -> dict:
    """The chosen file (and an engine's sidecar) copied into ``folder``, and a Triton repository beside it."""
    from clca_deploy.runtime.registry import RuntimeOptions
    from clca_deploy.serving import TritonRepoConfig, write_triton_repository

    folder.mkdir(parents=True, exist_ok=True)
    source = Path(chosen.model_path)
    model = _copy(source, folder / source.name)
    sidecar = source.with_name(source.name + ".json")
    if source.suffix == ".engine" and sidecar.is_file():
        _copy(sidecar, folder / sidecar.name)
    log(f"deployment: {model} ({chosen.candidate.key})")
    found = {"model": str(model), "candidate": chosen.candidate.to_dict(), "runtime_options": runtime_settings(chosen.candidate)}
    options = RuntimeOptions.from_values(**runtime_settings(chosen.candidate))
    config = TritonRepoConfig(runtime=chosen.candidate.runtime, runtime_options=options)
    try:
        repository = write_triton_repository(model, folder / "triton", config, overwrite=True)
        found["triton_repository"] = repository.path
    except ClcaDeployError as exc:  # e.g. a runtime stock Triton cannot run: `serve` still can
        found["triton_repository"] = None
        found["triton_note"] = str(exc)
    return found


def _copy(source: Path, target: Path) -> Path:
    with atomic_output(target) as tmp:
        shutil.copyfile(source, tmp)
    return target

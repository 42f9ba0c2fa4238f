"""`tune`: the most accurate deployment that meets a budget on this machine; cli.py registers it."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from clca_deploy.cli_views import say
from clca_deploy.cli_vocabulary import cli_log, is_stdout, json_option, json_target, show_result, split_list, split_numbers
from clca_deploy.terminal import printable


def tune(
    checkpoint: Path = typer.Argument(..., help="The trained checkpoint (also the reference for agreement)."),
    data: Path = typer.Option(..., help="Images to judge accuracy and agreement on (labelled: top-1 too)."),
    budget_ms: Optional[float] = typer.Option(None, help="Budget: p90 latency per call at --batch, in ms."),
    budget_mj: Optional[float] = typer.Option(None, help="Budget: energy per image in mJ (needs a power sensor)."),
    batch: int = typer.Option(1, "--batch", help="Images per call the deployment serves."),
    keep: list[str] = typer.Option([], "--keep", metavar="K,K", help="Keep rates (default: from the checkpoint's own to 1.0)."),
    precision: list[str] = typer.Option(["fp32,fp16,int8"], metavar="P,P", help="File precisions to try: fp32, fp16, int8."),
    runtime: list[str] = typer.Option([], "--runtime", metavar="NAME,NAME", help="Runtimes to try (default: all this machine has)."),
    minutes: float = typer.Option(10.0, help="Time limit of the search; the record lets a later run go on."),
    output: Path = typer.Option(Path("tune"), "-o", "--output", help="Work folder: files, record, tune.json, deploy/."),
    min_agreement: Optional[float] = typer.Option(99.0, help="Least top-1 agreement with the checkpoint, %."),
    calibration_data: Optional[Path] = typer.Option(None, help="INT8 calibration images (default: --data)."),
    limit: Optional[int] = typer.Option(200, help="Images scored per candidate."),
    iters: int = typer.Option(20, help="Timed calls per contender in the final side-by-side timing."),
    steps: bool = typer.Option(True, "--steps/--no-steps", help="Look for latency steps between token counts."),
    json_out: Optional[Path] = json_option("tune.json's content"),
) -> None:
    """From a checkpoint to the most accurate deployment (keep rate x precision x runtime) that meets a latency
    or energy budget here; writes OUTPUT/deploy (the model, a Triton repository), tune.json and tune.png."""
    from clca_deploy.pipeline.tune import Budget, TuneConfig, run_tune
    from clca_deploy.pipeline.tune.view import print_tune

    config = TuneConfig(
        checkpoint=checkpoint, data=data, budget=Budget(ms=budget_ms, mj=budget_mj), workdir=output, batch=batch,
        keep_rates=split_numbers(keep, float, "--keep takes numbers such as 0.1,0.5") or None, precisions=tuple(split_list(precision)),
        runtimes=tuple(split_list(runtime)) or None, minutes=minutes, min_agreement=min_agreement,
        calibration_data=calibration_data, limit=limit, iters=iters, steps=steps, progress=True,
    )
    json_target(json_out, [checkpoint, data, calibration_data])
    result = run_tune(config, log=cli_log(to_stderr=True))
    show_result(result.to_dict(), json_out, lambda: print_tune(result, config.budget), "tune")
    if result.pick.chosen is None:  # a script must see that there is nothing to deploy
        closest = ", ".join(f"{m.candidate.key} ({_figures(m)})" for m in result.pick.closest)
        typer.echo(printable(f"tune: {result.pick.reason}" + (f" Closest: {closest}." if closest else "")), err=True)
        raise typer.Exit(1)
    if not is_stdout(json_out):
        say(f"deployment  {result.deployment.get('model')}  (serve it: clca-deploy serve {result.deployment.get('model')}"
            + _runtime_flags(result.pick.chosen.candidate) + ")")


def _figures(m) -> str:
    agreement = "-" if m.agreement is None else f"{m.agreement:.1f}%"
    energy = "" if m.energy_mj_per_image is None else f", {m.energy_mj_per_image:.2f} mJ/image"
    return f"p90 {m.p90_ms:.2f} ms{energy}, agreement {agreement}"


def _runtime_flags(candidate) -> str:
    flags = f" --runtime {candidate.runtime}"
    return flags + (f" --inference-precision {candidate.inference_precision}" if candidate.inference_precision else "")


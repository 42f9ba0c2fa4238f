"""The measuring commands, `bench` and `sweep`; cli.py registers them on its app."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer

from clca_deploy.artifacts import check_output_path, refuse_overwriting_inputs
from clca_deploy.cli_options import with_runtime_options
from clca_deploy.cli_views import bench_failure, render_report
from clca_deploy.cli_vocabulary import (
    cli_log, hidden_alias, is_stdout, json_option, json_target, renamed, split_numbers, write_json_result,
)
from clca_deploy.errors import ClcaDeployError
from clca_deploy.runtime.registry import RuntimeOptions
from clca_deploy.terminal import printable


def _int_list(values: list[str]) -> tuple[int, ...]:
    return split_numbers(values, int, "--batch-sizes takes whole numbers such as 1,8")


def _bench_outputs(out: Optional[Path], plot: Optional[Path]) -> tuple[Optional[Path], Optional[Path]]:
    """The report file (None for none or standard output) and the plot, both checked before any work."""
    out_file = None if out is None or is_stdout(out) else check_output_path(out)
    if plot is None and out_file is not None:
        plot = out_file.with_suffix(".png")
    if plot is not None:
        check_output_path(plot)
        if out_file is not None and os.path.abspath(plot) == os.path.abspath(out_file):
            raise ClcaDeployError(
                f"the plot would be written over the report {printable(out_file)}; give the report a .json name "
                "or the plot its own --plot path."
            )
    return out_file, plot


@with_runtime_options(runtime_list=True)
def bench(
    data: Path = typer.Option(..., help="Images: an ImageFolder tree, a flat folder, or a CSV split root."),
    model: list[Path] = typer.Option([], "--model", help="A model to measure (.onnx, .engine, .pth); repeatable."),
    reference: Optional[Path] = typer.Option(
        None, help="The reference: the checkpoint (PyTorch), or the FP32 .onnx where PyTorch is not installed."
    ),
    batch_sizes: list[str] = typer.Option(["1,8"], metavar="N,N", help="Batch sizes to time: 1,8 or repeated."),
    warmup: int = typer.Option(3, help="Untimed warm-up calls per batch size."),
    iters: int = typer.Option(20, help="Timed calls per batch size."),
    limit: Optional[int] = typer.Option(None, help="Use at most this many images for accuracy."),
    csv: Optional[str] = typer.Option(None, help="Official CSV split (class_id,dir) inside --data."),
    image_folder: Optional[str] = typer.Option(None, help="Image folder of a CSV split, relative to --data."),
    json_out: Optional[Path] = json_option("the report (the table then goes to standard error with '-')"),
    out: Optional[Path] = hidden_alias("--out", "--json"),
    plot: Optional[Path] = typer.Option(
        None, help="Write the accuracy-latency PNG here (default: beside the --json file; none with --json -)."
    ),
    power: bool = typer.Option(
        True, "--power/--no-power", help="Board power and energy per image during the timed calls (tegrastats on Jetson, NVML)."
    ),
    runtime: Optional[str] = None,
    runtime_options: RuntimeOptions = RuntimeOptions(),
) -> None:
    """Latency and accuracy of each model beside the reference, as a table, JSON and a plot."""
    from clca_deploy.bench.run import BenchConfig, run_bench
    from clca_deploy.runtime.registry import parse_runtimes

    out = renamed(json_out, out, "--json", "--out")
    config = BenchConfig(
        models=tuple(model), data=data, reference=reference, batch_sizes=_int_list(batch_sizes), warmup=warmup,
        iters=iters, limit=limit, csv=csv, image_folder=image_folder, runtimes=parse_runtimes(runtime),
        runtime_options=runtime_options, power=power,
    )
    out_file, plot = _bench_outputs(out, plot)
    refuse_overwriting_inputs([out_file, plot], [*model, reference, data, *runtime_options.paths()])
    report = run_bench(config, log=cli_log(to_stderr=True))
    render_report(report, out, plot)
    failure = bench_failure(report)
    if failure:  # a script or CI job must see that nothing (or not everything) was measured
        typer.echo(failure, err=True)
        raise typer.Exit(1)


@with_runtime_options(only=("train_args",))
def sweep(
    checkpoint: Path = typer.Argument(..., help="The trained checkpoint (also the reference)."),
    keep: list[str] = typer.Option(..., "--keep", metavar="K,K", help="Keep rates: 0.1,0.5,1.0 or repeated."),
    data: Path = typer.Option(..., help="Images with labels for accuracy."),
    output: Optional[Path] = typer.Option(
        None, "-o", "--output", help="The folder the exported ONNX files and the report go into (default: sweep)."
    ),
    workdir: Optional[Path] = hidden_alias("--workdir", "--output"),
    batch_sizes: list[str] = typer.Option(["1"], metavar="N,N", help="Batch sizes to time: 1,8 or repeated."),
    warmup: int = typer.Option(2, help="Untimed warm-up calls per batch size."),
    iters: int = typer.Option(10, help="Timed calls per batch size."),
    limit: Optional[int] = typer.Option(None, help="Use at most this many images for accuracy."),
    json_out: Optional[Path] = json_option("the report (also written as OUTPUT/sweep.json)"),
    runtime_options: RuntimeOptions = RuntimeOptions(),
) -> None:
    """Export at several keep rates, bench them against the checkpoint, plot the accuracy-latency curve."""
    from clca_deploy.artifacts import check_output_folder
    from clca_deploy.bench.run import BenchConfig
    from clca_deploy.pipeline.sweep import SweepConfig, run_sweep

    workdir = renamed(output, workdir, "--output", "--workdir", default=Path("sweep"))
    keep_rates = _keep_rates(keep)
    # Checked before the first export, not when the report is written minutes later.
    check_output_folder(workdir, "sweep folder")
    reports = [workdir / "sweep.json", workdir / "sweep.png"]
    if workdir.is_dir():
        for path in reports:
            check_output_path(path)
    refuse_overwriting_inputs(reports, [checkpoint, data, *runtime_options.paths()])
    json_target(json_out, [checkpoint, data, *reports])
    bench_config = BenchConfig(
        models=(), data=data, batch_sizes=_int_list(batch_sizes), warmup=warmup, iters=iters, limit=limit,
        runtime_options=runtime_options,
    )
    sweep_config = SweepConfig(checkpoint, keep_rates, workdir, bench_config, runtime_options.values.get("train_args"))
    report = run_sweep(sweep_config, log=cli_log(to_stderr=True))
    render_report(report, workdir / "sweep.json", workdir / "sweep.png")
    if json_out is not None:
        write_json_result(report.to_dict(), json_out)


def _keep_rates(values: list[str]) -> tuple[float, ...]:
    return split_numbers(values, float, "--keep takes keep rates such as 0.1,0.5")

"""The ``clca-deploy`` command line: one thin command per pipeline stage."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from clca_deploy.artifacts import check_output_path, refuse_overwriting_inputs
from clca_deploy.cli_bench import bench, sweep
from clca_deploy.cli_precision import build_trt, calibrate
from clca_deploy import cli_options as opt
from clca_deploy.cli_options import with_runtime_options
from clca_deploy.cli_views import print_deployed, print_predictions, print_summary, say
from clca_deploy.errors import ClcaDeployError
from clca_deploy.runtime.registry import RuntimeOptions
from clca_deploy.terminal import printable

app = typer.Typer(
    help="Deploy CLCA token-reduction ViTs: load, export to ONNX, quantize, build TensorRT engines, benchmark.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _show_version(value: bool) -> None:
    if value:
        from clca_deploy import __version__

        typer.echo(f"clca-deploy {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_show_version, is_eager=True, help="Print the version."),
) -> None:
    """Deploy CLCA token-reduction ViTs."""


@app.command()
def info(
    checkpoint: Path = typer.Argument(..., help="A checkpoint (.pth, .safetensors), an exported .onnx or an engine."),
    model: Optional[str] = typer.Option(None, help="Official model string, for files without args."),
    img_size: Optional[int] = typer.Option(None, "--img-size", help="Input size, for files without args."),
    num_classes: Optional[int] = typer.Option(None, help="Number of classes, for files without args."),
    keep: Optional[float] = typer.Option(None, help="Keep rate to report instead of the checkpoint's."),
    train_args: Optional[Path] = typer.Option(
        None, "--config", help="JSON of the checkpoint's train.py args, for a bare state dict (options above win)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of text."),
) -> None:
    """What a model file holds: a checkpoint's settings, token schedule, parameters and GMACs, or an export's metadata."""
    from clca_deploy.runtime.describe import is_deployed_file, describe_model_file

    if is_deployed_file(checkpoint):
        described = describe_model_file(checkpoint)
        if as_json:
            typer.echo(json.dumps(described.to_dict(), indent=2))
        else:
            print_deployed(described)
        return
    from clca_deploy.model.checkpoint import read_train_args
    from clca_deploy.model.summary import summarize_checkpoint

    settings = read_train_args(train_args) if train_args is not None else {}
    settings |= {
        key: value
        for key, value in (("model", model), ("input_size", img_size), ("num_classes", num_classes), ("keep_rate", keep))
        if value is not None
    }
    summary = summarize_checkpoint(checkpoint, **settings)
    if as_json:
        typer.echo(json.dumps(summary.to_dict(), indent=2))
    else:
        print_summary(summary)


@app.command()
def export(
    checkpoint: Path = typer.Argument(..., help="A train.py checkpoint (.pth), state dict or .safetensors."),
    output: Path = typer.Option(..., "-o", "--output", help="Where to write the .onnx file."),
    keep: Optional[float] = typer.Option(None, help="Static keep rate (default: the checkpoint's)."),
    img_size: Optional[int] = typer.Option(None, "--img-size", help="Input size (default: the checkpoint's)."),
    opset: int = typer.Option(18, help="ONNX opset, 17..20."),
    batch: Optional[int] = typer.Option(None, help="Fix the batch size (default: dynamic)."),
    data: Optional[Path] = typer.Option(None, help="Images for the parity check (default: synthetic)."),
    simplify: bool = typer.Option(False, help="Simplify the graph with onnxslim (verified again)."),
    tolerance: float = typer.Option(1e-3, help="Max abs logit error against PyTorch."),
    train_args: Optional[Path] = typer.Option(
        None, "--config", help="JSON of the checkpoint's train.py args, for a bare state dict."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Export a checkpoint to an ONNX graph with a fixed token schedule, verified against PyTorch."""
    from clca_deploy.export import ExportConfig, export_onnx

    config = ExportConfig(
        keep_rate=keep, img_size=img_size, opset=opset, batch=batch, simplify=simplify, tolerance=tolerance, data=data,
        train_args=train_args,
    )
    result = export_onnx(checkpoint, output, config, log=(lambda _: None) if as_json else say)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
        return
    for note in result.notes:
        say(f"note: {note}")
    schedule = " ".join(f"{a}->{b}" if a != b else str(a) for a, b in result.token_schedule)
    say(f"tokens per block: {schedule}")
    say(f"wrote {result.path} ({result.size_bytes / 1e6:.1f} MB, batch {result.batch}, sha256 {result.sha256[:16]}...)")


app.command()(calibrate)
app.command("build-trt")(build_trt)


@app.command()
@with_runtime_options()
def predict(
    model: Path = typer.Argument(..., help="A checkpoint, an exported .onnx file or an engine."),
    images: list[Path] = typer.Argument(..., help="Image files or folders (searched recursively)."),
    top_k: int = typer.Option(5, "--top-k", help="How many classes to show per image."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of text."),
    runtime: Optional[str] = None,
    runtime_options: RuntimeOptions = RuntimeOptions(),
) -> None:
    """Classify leaf images; unreadable files are skipped and named."""
    from clca_deploy.runtime import open_backend, predict_images

    with open_backend(model, runtime, runtime_options) as backend:
        run = predict_images(backend, images, top_k=top_k, progress=not as_json)
    print_predictions(run, as_json)


@app.command("triton-repo")
@with_runtime_options(triton_only=True)
def triton_repo(
    model: Path = typer.Argument(..., help="An exported .onnx file, or an engine from `clca-deploy build-trt`."),
    output: Path = typer.Option(..., "-o", "--output", help="The model repository folder to write."),
    name: str = typer.Option("clca", help="Model name clients call; the inner models add _preprocess etc."),
    max_batch: Optional[int] = typer.Option(None, "--max-batch", help="Largest batch Triton forms (default 16, or the engine's largest)."),
    instances: int = typer.Option(1, help="Classifier instances per GPU (or on the CPU)."),
    preprocess_instances: int = typer.Option(2, "--preprocess-instances", help="Image-decoding instances (CPU)."),
    device: Optional[str] = typer.Option(
        None, help="Where Triton runs the classifier: gpu or cpu (default: the runtime's own first choice)."
    ),
    top_k: int = typer.Option(5, "--top-k", help="Classes in each answer."),
    overwrite: bool = typer.Option(False, help="Replace OUTPUT if it is a repository this command wrote before."),
    max_image_megapixels: Optional[float] = opt.MAX_IMAGE_MEGAPIXELS,
    max_request_megapixels: Optional[float] = opt.MAX_REQUEST_MEGAPIXELS,
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    runtime: Optional[str] = None,
    runtime_options: RuntimeOptions = RuntimeOptions(),
) -> None:
    """A Triton model repository: encoded images in, class ids, names and scores out (dynamic batching)."""
    from clca_deploy.serving import TritonRepoConfig, write_triton_repository

    config = TritonRepoConfig(
        name=name, max_batch=max_batch, instances=instances, preprocess_instances=preprocess_instances,
        device=device, top_k=top_k, runtime=runtime, runtime_options=runtime_options,
        **opt.pixel_budgets(max_image_megapixels, max_request_megapixels),
    )
    result = write_triton_repository(model, output, config, overwrite=overwrite)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
        return
    say(f"wrote {result.path}: {', '.join(result.models)} ({result.classifier_format} classifier, max batch {result.max_batch})")
    say(f"clients call '{result.model}' with encoded images (IMAGE, BYTES [1]) and get CLASS_ID, CLASS_NAME, SCORE (top {result.top_k})")


@app.command()
@with_runtime_options()  # the classifier runs this tool's runtime: every option of it applies
def serve(
    model: Path = typer.Argument(..., help="An exported .onnx file, or an engine from `clca-deploy build-trt`."),
    port: int = typer.Option(8000, help="HTTP port; gRPC and metrics listen on the next two."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on (0.0.0.0 for every interface)."),
    max_batch: Optional[int] = typer.Option(None, "--max-batch", help="Largest batch Triton forms (default 16)."),
    instances: int = typer.Option(1, help="Classifier instances."),
    name: str = typer.Option("clca", help="Model name clients call."),
    top_k: int = typer.Option(5, "--top-k", help="Classes in each answer."),
    verbose: bool = typer.Option(False, help="Show the Triton server's own log."),
    max_image_megapixels: Optional[float] = opt.MAX_IMAGE_MEGAPIXELS,
    max_request_megapixels: Optional[float] = opt.MAX_REQUEST_MEGAPIXELS,
    runtime: Optional[str] = None,
    runtime_options: RuntimeOptions = RuntimeOptions(),
) -> None:
    """A local Triton Inference Server (through PyTriton) with dynamic batching, until Ctrl-C (or until the
    server stops on its own: then one line and exit code 1)."""
    from clca_deploy.serving import ServeConfig, serve as run_server

    config = ServeConfig(
        port=port, host=host, max_batch=max_batch, instances=instances, top_k=top_k, name=name, verbose=verbose,
        runtime=runtime, runtime_options=runtime_options, **opt.pixel_budgets(max_image_megapixels, max_request_megapixels),
    )
    run_server(model, config, log=say)


app.command()(bench)
app.command()(sweep)


@app.command()
def train(
    data: Path = typer.Argument(..., help="Leaf images: a root with train/ (and test/), or an ImageFolder train split."),
    output: Path = typer.Option(..., "-o", "--output", help="Checkpoint to write (official train.py format)."),
    model: str = typer.Option(
        "evit_vit_tiny_patch16_224",
        help="CLCA: <method>_<timm ViT name>; ILA / GLSim: ila_<size> / glsim_<size>, size vit_t16, vit_s16, vit_b16, ...",
    ),
    keep: float = typer.Option(0.1, help="Keep rate at each reduction location (CLCA)."),
    img_size: Optional[int] = typer.Option(None, "--img-size", help="Input size (default: the model name's; ILA/GLSim 224)."),
    epochs: Optional[int] = typer.Option(None, help="Number of epochs."),
    minutes: Optional[float] = typer.Option(None, help="Time budget instead of --epochs: epochs are fitted to it."),
    test: Optional[Path] = typer.Option(None, help="Test split (default: test/ or val/ beside train/)."),
    batch_size: int = typer.Option(32, "--batch-size", help="Images per step (the official default is 32)."),
    lr: Optional[float] = typer.Option(None, help="Peak learning rate (default 1e-4 with --pretrained, else 1e-3)."),
    augment: str = typer.Option("weak", help="weak (official: crop+flip), medium (+TrivialAugment), strong (+rotations)."),
    pretrained: bool = typer.Option(False, help="Start from timm's pretrained backbone (needs the Hugging Face Hub)."),
    init: Optional[Path] = typer.Option(
        None, help="Start from this checkpoint: CLCA from CLCA; ILA/GLSim from a CLCA backbone (mapped) or ILA/GLSim."
    ),
    init_train_args: Optional[Path] = typer.Option(
        None, "--init-config", help="JSON of the --init checkpoint's train.py args, for a bare state dict."
    ),
    freeze_backbone: bool = typer.Option(
        False, "--freeze-backbone", help="ILA/GLSim: train only adapters, head (and aggregator) as the official recipe."
    ),
    plain: bool = typer.Option(False, help="Train the plain method: no cross-layer cache, linear head."),
    precision: str = typer.Option("auto", help="auto, fp32, bf16 (CPU with AMX/AVX512-BF16) or fp16 (CUDA)."),
    seed: int = typer.Option(1, help="Random seed."),
    resume: bool = typer.Option(False, help="Continue the run saved at -o."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the run's summary as JSON here."),
) -> None:
    """Train or fine-tune a CLCA, ILA or GLSim model; writes a checkpoint the official code can load too."""
    from clca_deploy.model.checkpoint import read_train_args
    from clca_deploy.train import TrainConfig, train as run_training

    if epochs is None and minutes is None:
        epochs = 30
    config = TrainConfig(
        model=model, keep_rate=keep, img_size=img_size, epochs=epochs, minutes=minutes, batch_size=batch_size, lr=lr,
        augment=augment, pretrained=pretrained, freeze_backbone=freeze_backbone, clca=not plain, precision=precision,
        seed=seed,
    )
    if json_out is not None:
        check_output_path(json_out)
        if json_out.resolve() == output.resolve():
            raise ClcaDeployError(f"--json {json_out} is the checkpoint -o {output}; give the summary its own file.")
        refuse_overwriting_inputs([json_out], [output, init, init_train_args, data, test])
    if init_train_args is not None and init is None:
        raise ClcaDeployError("--init-config gives the settings of an --init checkpoint; pass --init CKPT too.")
    result = run_training(
        data, output, config, test=test, resume=resume, init=init,
        init_train_args=read_train_args(init_train_args) if init_train_args is not None else None, log=say,
    )
    if json_out is not None:
        from clca_deploy.artifacts import write_json

        write_json(json_out, result.to_dict())
        say(f"wrote {json_out}")


@app.command()
def demo(
    workdir: Path = typer.Option(Path("clca-demo"), help="Where every artefact goes; a second run reuses them."),
    data: Optional[Path] = typer.Option(None, help="Your own leaves: a root with train/ and test/ ImageFolder splits."),
    epochs: int = typer.Option(30, help="Training epochs of the tiny CLCA model."),
    img_size: int = typer.Option(112, "--img-size", help="Input size of the tiny model."),
    keep: float = typer.Option(0.1, help="Static keep rate of the export."),
) -> None:
    """The whole pipeline on this machine: data, training, export, INT8, benchmark against PyTorch."""
    from clca_deploy.bench.table import print_table
    from clca_deploy.pipeline.demo import DemoConfig, run_demo

    config = DemoConfig(workdir=workdir, data=data, epochs=epochs, img_size=img_size, keep_rate=keep)
    result, report = run_demo(config, log=say)
    print_table(report)
    say(f"report  {result.bench_json}")
    if result.bench_plot:
        say(f"plot    {result.bench_plot}")
    say(f"done in {result.seconds:.0f} s")


@app.command()
def doctor(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
    """What this machine can run (runtimes, TensorRT, GPU, Jetson), what is missing and how to install it."""
    from clca_deploy.doctor.report import format_report, run_doctor

    report = run_doctor()
    typer.echo(json.dumps(report.to_dict(), indent=2) if as_json else format_report(report))


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    # Python's default shows the warning's source file and line: two lines a user cannot act on.
    return f"warning: {printable(message)}\n"


def main() -> None:
    """Console entry point: errors become one line on stderr and the error's exit code (2 for bad input,
    1 for a server that stopped while serving); warnings are one line each."""
    import warnings

    from clca_deploy.system.home import keep_missing_home_absent

    keep_missing_home_absent()  # before any library is imported
    warnings.formatwarning = _one_line_warning
    try:
        app()
    except ClcaDeployError as exc:
        typer.echo(f"error: {printable(exc)}", err=True)  # one line, whatever the message quotes
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()

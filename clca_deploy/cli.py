"""The ``clca-deploy`` command line: one thin command per pipeline stage."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Literal, Optional

import typer

from clca_deploy.cli_bench import bench, sweep
from clca_deploy.cli_cache import cache
from clca_deploy.cli_precision import build_trt, calibrate
from clca_deploy.cli_tune import tune
from clca_deploy import cli_options as opt
from clca_deploy.cli_options import with_runtime_options
from clca_deploy.cli_views import print_deployed, print_predictions, print_summary, say
from clca_deploy.cli_vocabulary import (
    VocabularyGroup, add_verbosity, cli_log, hidden_alias, is_verbose, json_option, json_target, is_stdout,
    parse_device, renamed, show_result,
)
from clca_deploy.errors import ClcaDeployError
from clca_deploy.runtime.registry import RuntimeOptions
from clca_deploy.terminal import printable

app = typer.Typer(
    cls=VocabularyGroup,
    help="Deploy CLCA token-reduction ViTs: load, export to ONNX, quantize, build TensorRT engines, benchmark.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion for bash, zsh, fish, PowerShell
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
    json_out: Optional[Path] = json_option("the description"),
) -> None:
    """What a model file holds: a checkpoint's settings, token schedule, parameters and GMACs, or an export's metadata."""
    from clca_deploy.runtime.describe import is_deployed_file, describe_model_file

    json_target(json_out, [checkpoint, train_args])
    if is_deployed_file(checkpoint):
        described = describe_model_file(checkpoint)
        show_result(described.to_dict(), json_out, lambda: print_deployed(described), "model-file")
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
    show_result(summary.to_dict(), json_out, lambda: print_summary(summary), "checkpoint")


@app.command()
def export(
    checkpoint: Path = typer.Argument(..., help="A train.py checkpoint (.pth), state dict or .safetensors."),
    output: Path = typer.Option(..., "-o", "--output", help="Where to write the .onnx file."),
    keep: Optional[float] = typer.Option(None, help="Static keep rate (default: the checkpoint's)."),
    img_size: Optional[int] = typer.Option(None, "--img-size", help="Input size (default: the checkpoint's)."),
    opset: int = typer.Option(18, help="ONNX opset, 17..20."),
    batch: Optional[int] = typer.Option(None, help="Fix the batch size (default: dynamic)."),
    data: Optional[Path] = typer.Option(
        None, help="Images for the parity check (default: synthetic); an ImageFolder's class folders also name the "
        "classes of a checkpoint without names.",
    ),
    class_names: Optional[Path] = typer.Option(
        None, "--class-names", help="Class names to write into the file: one per line, or a JSON list, in class order "
        "(default: the checkpoint's; official checkpoints have none).",
    ),
    simplify: bool = typer.Option(False, help="Simplify the graph with onnxslim (verified again)."),
    tolerance: float = typer.Option(1e-3, help="Max abs logit error against PyTorch."),
    train_args: Optional[Path] = typer.Option(
        None, "--config", help="JSON of the checkpoint's train.py args, for a bare state dict."
    ),
    json_out: Optional[Path] = json_option(),
) -> None:
    """Export a checkpoint to an ONNX graph with a fixed token schedule, verified against PyTorch."""
    from clca_deploy.export import ExportConfig, export_onnx

    config = ExportConfig(
        keep_rate=keep, img_size=img_size, opset=opset, batch=batch, simplify=simplify, tolerance=tolerance, data=data,
        train_args=train_args, class_names=class_names,
    )
    json_target(json_out, [checkpoint, output, data, train_args, class_names])
    result = export_onnx(checkpoint, output, config, log=cli_log(is_stdout(json_out)))
    show_result(result.to_dict(), json_out, lambda: _print_export(result), "export")


def _print_export(result) -> None:
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
    json_out: Optional[Path] = json_option("the predictions"),
    runtime: Optional[str] = None,
    runtime_options: RuntimeOptions = RuntimeOptions(),
) -> None:
    """Classify leaf images; unreadable files are skipped and named."""
    from clca_deploy.runtime import open_backend, predict_images

    json_target(json_out, [model, *images, *runtime_options.paths()])
    with open_backend(model, runtime, runtime_options) as backend:
        run = predict_images(backend, images, top_k=top_k, progress=json_out is None)
    show_result(run.to_dict(), json_out, lambda: print_predictions(run), "predictions")


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
        None, parser=parse_device, metavar="cpu|cuda|cuda:N",
        help="Where Triton runs the classifier: cpu, cuda (every GPU) or cuda:N (default: the runtime's own first choice).",
    ),
    top_k: int = typer.Option(5, "--top-k", help="Classes in each answer."),
    overwrite: bool = typer.Option(False, help="Replace OUTPUT if it is a repository this command wrote before."),
    max_image_megapixels: Optional[float] = opt.MAX_IMAGE_MEGAPIXELS,
    max_request_megapixels: Optional[float] = opt.MAX_REQUEST_MEGAPIXELS,
    json_out: Optional[Path] = json_option(),
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
    json_target(json_out, [model, output, *runtime_options.paths()])
    result = write_triton_repository(model, output, config, overwrite=overwrite)
    show_result(result.to_dict(), json_out, lambda: _print_repository(result), "triton-repo")


def _print_repository(result) -> None:
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
    max_image_megapixels: Optional[float] = opt.MAX_IMAGE_MEGAPIXELS,
    max_request_megapixels: Optional[float] = opt.MAX_REQUEST_MEGAPIXELS,
    runtime: Optional[str] = None,
    runtime_options: RuntimeOptions = RuntimeOptions(),
) -> None:
    """A local Triton Inference Server (through PyTriton) with dynamic batching, until Ctrl-C (or until the
    server stops on its own: then one line and exit code 1). -v also shows the Triton server's own log."""
    from clca_deploy.serving import ServeConfig, serve as run_server

    config = ServeConfig(
        port=port, host=host, max_batch=max_batch, instances=instances, top_k=top_k, name=name, verbose=is_verbose(),
        runtime=runtime, runtime_options=runtime_options, **opt.pixel_budgets(max_image_megapixels, max_request_megapixels),
    )
    run_server(model, config, log=cli_log())


app.command()(bench)
app.command()(sweep)
app.command()(tune)


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
    batch: Optional[int] = typer.Option(None, "--batch", help="Images per step (default 32, the official default)."),
    batch_size: Optional[int] = hidden_alias("--batch-size", "--batch"),
    lr: Optional[float] = typer.Option(None, help="Peak learning rate (default 1e-4 with --pretrained, else 1e-3)."),
    augment: Literal["weak", "medium", "strong"] = typer.Option(
        "weak", help="weak (official: crop+flip), medium (+TrivialAugment), strong (+rotations)."
    ),
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
    precision: Literal["auto", "fp32", "bf16", "fp16"] = typer.Option(
        "auto", help="auto, fp32, bf16 (CPU with AMX/AVX512-BF16) or fp16 (CUDA)."
    ),
    seed: int = typer.Option(1, help="Random seed."),
    resume: bool = typer.Option(False, help="Continue the run saved at -o."),
    json_out: Optional[Path] = json_option("the run's summary"),
) -> None:
    """Train or fine-tune a CLCA, ILA or GLSim model; writes a checkpoint the official code can load too."""
    from clca_deploy.model.checkpoint import read_train_args
    from clca_deploy.train import TrainConfig, train as run_training

    if epochs is None and minutes is None:
        epochs = 30
    config = TrainConfig(
        model=model, keep_rate=keep, img_size=img_size, epochs=epochs, minutes=minutes, lr=lr,
        batch_size=renamed(batch, batch_size, "--batch", "--batch-size", default=32),
        augment=augment, pretrained=pretrained, freeze_backbone=freeze_backbone, clca=not plain, precision=precision,
        seed=seed,
    )
    json_target(json_out, [output, init, init_train_args, data, test])
    if init_train_args is not None and init is None:
        raise ClcaDeployError("--init-config gives the settings of an --init checkpoint; pass --init CKPT too.")
    init_args = read_train_args(init_train_args) if init_train_args is not None else None
    result = run_training(
        data, output, config, test=test, resume=resume, init=init, init_train_args=init_args,
        log=cli_log(is_stdout(json_out)),
    )
    show_result(result.to_dict(), json_out, lambda: json_out is None or say(f"wrote {json_out}"), "train")


@app.command()
def demo(
    output: Optional[Path] = typer.Option(
        None, "-o", "--output", help="The folder every artefact goes into (default clca-demo); a second run reuses them."
    ),
    workdir: Optional[Path] = hidden_alias("--workdir", "--output"),
    data: Optional[Path] = typer.Option(None, help="Your own leaves: a root with train/ and test/ ImageFolder splits."),
    epochs: int = typer.Option(30, help="Training epochs of the tiny CLCA model."),
    img_size: int = typer.Option(112, "--img-size", help="Input size of the tiny model."),
    keep: float = typer.Option(0.1, help="Static keep rate of the export."),
) -> None:
    """The whole pipeline on this machine: data, training, export, INT8, benchmark against PyTorch."""
    from clca_deploy.bench.table import print_table
    from clca_deploy.pipeline.demo import DemoConfig, run_demo

    workdir = renamed(output, workdir, "--output", "--workdir", default=Path("clca-demo"))
    config = DemoConfig(workdir=workdir, data=data, epochs=epochs, img_size=img_size, keep_rate=keep)
    result, report = run_demo(config, log=cli_log())
    print_table(report)
    say(f"report  {result.bench_json}")
    if result.bench_plot:
        say(f"plot    {result.bench_plot}")
    say(f"done in {result.seconds:.0f} s")


@app.command()
def doctor(json_out: Optional[Path] = json_option("the report")) -> None:
    """What this machine can run (runtimes, TensorRT, GPU, Jetson), what is missing and how to install it."""
    from clca_deploy.doctor.report import format_report, run_doctor

    json_target(json_out)
    report = run_doctor()
    show_result(report.to_dict(), json_out, lambda: typer.echo(format_report(report)), "doctor")


app.command()(cache)


add_verbosity(app)  # last: every command registered above gets -q/-v


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

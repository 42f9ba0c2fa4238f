"""The precision commands, `calibrate` and `build-trt`; cli.py registers them on its app."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

import typer

from clca_deploy.cli_views import say
from clca_deploy.cli_vocabulary import cli_log, json_option, json_target, is_stdout, show_result
from clca_deploy.runtime.options import CUDA_DEVICE_METAVAR, parse_cuda_device
from clca_deploy.errors import ClcaDeployError


def calibrate(
    model: Path = typer.Argument(..., help="An FP32 .onnx file from `clca-deploy export`."),
    data: Optional[Path] = typer.Option(None, help="Leaf images for INT8 calibration (ImageFolder, CSV root or flat)."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Default: MODEL.int8.onnx (or .fp16.onnx)."),
    num_images: int = typer.Option(256, help="Calibration images (a few hundred; below 64 warns)."),
    method: Literal["minmax", "entropy", "percentile"] = typer.Option(
        "minmax", help="Activation ranges: minmax (default), entropy or percentile (these two hold every activation in memory)."
    ),
    fp16: bool = typer.Option(False, "--fp16", help="Write an FP16 model instead of INT8 (needs no data)."),
    csv: Optional[str] = typer.Option(None, help="Official CSV split (class_id,dir) inside --data."),
    image_folder: Optional[str] = typer.Option(None, help="Image folder of a CSV split, relative to --data."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Decode the images even if a cached set exists."),
    target_agreement: Optional[float] = typer.Option(
        None, help="Search the fastest INT8 placement whose top-1 agrees with FP32 on at least this % of held-out "
        "calibration images; writes MODEL.int8.placement.json beside the output.",
    ),
    held_out_images: Optional[int] = typer.Option(
        None, help="Images the search measures agreement on: held out of --data (default: a quarter, at least 16), "
        "or read from --held-out-data (default: up to 512).",
    ),
    held_out_data: Optional[Path] = typer.Option(
        None, help="Judge the search on these images (a validation split the model never trained on: a trained model "
        "is surer of its training images, so they overstate agreement).",
    ),
    placement: Optional[Path] = typer.Option(
        None, help="Reuse the float set of a placement report (from --target-agreement): the same images give the same file."
    ),
    openvino: bool = typer.Option(
        False, "--openvino", help="Also write MODEL.int8.openvino.onnx: the same calibration in the layout OpenVINO runs "
        "fastest (only --runtime openvino reads it).",
    ),
    json_out: Optional[Path] = json_option(),
) -> None:
    """Explicit Q/DQ INT8 (calibrated on leaf images) or FP16 ONNX, as TensorRT 10 and 11 build them."""
    from clca_deploy.calibration import CalibrationConfig, calibrated_path, quantize_int8, to_fp16

    output = output or calibrated_path(model, "fp16" if fp16 else "int8")
    json_target(json_out, [model, output, data, held_out_data, placement])
    log = cli_log(is_stdout(json_out))
    if fp16:
        if openvino or any(option is not None for option in (target_agreement, placement, held_out_images, held_out_data)):
            raise ClcaDeployError("--target-agreement, --held-out-*, --placement and --openvino are for INT8; drop --fp16.")
        result = to_fp16(model, output, log=log)
    else:
        if data is None:
            raise ClcaDeployError("INT8 needs calibration images: pass --data DIR (or use --fp16).")
        config = CalibrationConfig(
            data=data, num_images=num_images, method=method, csv=csv, image_folder=image_folder, use_cache=not no_cache,
            target_agreement=target_agreement, held_out_images=held_out_images, held_out_data=held_out_data,
            placement=placement, openvino=openvino,
        )
        result = quantize_int8(model, output, config, log=log)
    show_result(result.to_dict(), json_out, lambda: _print_calibration(result), "calibrate")


def _print_calibration(result) -> None:
    if result.precision == "int8":
        say(f"quantized {result.quantized_nodes} GEMM/conv nodes; kept in float: {len(result.kept_float)} more ({result.placement} placement)")
    say(f"wrote {result.path} ({result.precision})")
    if result.precision == "int8" and result.openvino_path:
        say(f"wrote {result.openvino_path} (int8, OpenVINO's form: --runtime openvino)")
    if result.precision == "int8" and result.placement_report:
        say(f"wrote {result.placement_report} ({result.held_out_agreement:.2f}% agreement on {result.judged_images} held-out images)")


def build_trt(
    model: Path = typer.Argument(..., help="An .onnx file (FP32, or FP16 / INT8 from `clca-deploy calibrate`)."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Default: MODEL.<precision>.engine."),
    fp16: bool = typer.Option(False, "--fp16", help="FP16 engine (an FP32 ONNX is converted first)."),
    int8: bool = typer.Option(False, "--int8", help="INT8 engine (an FP32 ONNX is calibrated on --data first)."),
    data: Optional[Path] = typer.Option(None, help="Calibration images for --int8."),
    num_images: int = typer.Option(256, help="Calibration images for --int8."),
    batch: Optional[str] = typer.Option(None, help="Batch range MIN,OPT,MAX (dynamic-batch ONNX; default 1,8,32)."),
    workspace: float = typer.Option(2.0, help="Builder workspace in GiB."),
    timing_cache: Optional[Path] = typer.Option(None, help="Timing cache file, read and updated."),
    device: int = typer.Option(0, parser=parse_cuda_device, metavar=CUDA_DEVICE_METAVAR, help="GPU to build for."),
    weak_typing: bool = typer.Option(
        False, "--weak-typing", help="TensorRT 10 only: builder flags choose kernels' precision instead of the ONNX's types."
    ),
    optimization_level: Optional[int] = typer.Option(
        None, "--optimization-level",
        help="Builder optimisation level 0..5: lower builds faster, higher searches longer for faster kernels (default 3).",
    ),
    dla_core: Optional[int] = typer.Option(
        None, "--dla-core", help="Jetson only: run the layers DLA can on this DLA core, the rest on the GPU (fp16/int8).",
    ),
    json_out: Optional[Path] = json_option(),
) -> None:
    """Build a TensorRT engine plus its sidecar JSON; the precision comes from the ONNX file."""
    from clca_deploy.pipeline.build_trt import build_trt as build
    from clca_deploy.tensorrt.build import EngineConfig
    from clca_deploy.tensorrt.plan import parse_batch_profile

    if fp16 and int8:
        raise ClcaDeployError("choose one of --fp16 and --int8.")
    config = EngineConfig(
        precision="int8" if int8 else "fp16" if fp16 else None, batch=parse_batch_profile(batch) if batch else None,
        workspace_gib=workspace, timing_cache=timing_cache, device=device, weak_typing=weak_typing,
        optimization_level=optimization_level, dla_core=dla_core,
    )
    json_target(json_out, [model, output, data, timing_cache])
    result = build(model, output, config, data=data, num_images=num_images, log=cli_log(is_stdout(json_out)))
    show_result(result.to_dict(), json_out, lambda: _print_build(result), "engine-build")


def _print_build(result) -> None:
    for note in result.notes:
        say(f"note: {note}")
    typing = "strongly typed" if result.strongly_typed else f"weakly typed, flags {', '.join(result.builder_flags) or 'none'}"
    where = f", DLA core {result.dla_core}" if result.dla_core is not None else ""
    say(f"wrote {result.path} and {result.sidecar} ({result.precision}, {typing}{where}, TensorRT {result.tensorrt_version})")

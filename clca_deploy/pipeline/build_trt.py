"""``build-trt`` in one call: make the ONNX file the requested precision needs, then build the engine.

Read once along the way: the config is checked and every output is checked here, at the entry; the
ONNX file is read once (``metadata.read_onnx_file``: metadata, input, hash) and handed to the build,
so besides TensorRT's own parse nothing reads it again. A file converted first (INT8, FP16) is the one
read and built instead.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Callable

from clca_deploy.artifacts import check_output_path, refuse_overwriting_inputs
from clca_deploy.errors import ClcaDeployError
from clca_deploy.metadata import OnnxFile, read_onnx_file
from clca_deploy.tensorrt.build import RUNTIME_NAME, EngineConfig, EngineResult, build_from_file, check_engine_outputs
from clca_deploy.tensorrt.plan import PRECISIONS
from clca_deploy.tensorrt.sidecar import sidecar_path
from clca_deploy.tensorrt.toolkit import load_toolkit
from clca_deploy.logs import log_info


def model_stem(onnx_path: Path) -> str:
    """``model.int8.onnx`` -> ``model``: the name without the ONNX suffix and the precision calibrate adds."""
    stem = onnx_path.name.removesuffix(".onnx")
    for precision in PRECISIONS:
        stem = stem.removesuffix(f".{precision}")
    return stem


def default_engine_path(onnx_path: Path, precision: str) -> Path:
    """``model.onnx`` or ``model.int8.onnx`` -> ``model.<precision>.engine``, beside it."""
    return onnx_path.with_name(f"{model_stem(onnx_path)}.{precision}.engine")


def _converted_path(onnx_path: Path, onnx_precision: str, config: EngineConfig) -> Path | None:
    """The FP16 / INT8 ONNX file written before the build, or None when the input is built as it is."""
    # Weak typing builds FP16 from the FP32 file with the builder flag; INT8 always needs Q/DQ.
    needs_conversion = onnx_precision == "fp32" and (
        config.precision == "int8" or (config.precision == "fp16" and not config.weak_typing)
    )
    return onnx_path.with_name(f"{model_stem(onnx_path)}.{config.precision}.onnx") if needs_conversion else None


def _check_outputs(onnx_path: Path, output: Path, converted: Path | None, config: EngineConfig, data: Path | None) -> None:
    """Every file this build writes, checked before TensorRT is loaded and before calibration (minutes)."""
    check_engine_outputs(output, config)
    if converted is not None:
        check_output_path(converted)
    written = [output, sidecar_path(output)] + ([converted] if converted is not None else [])
    # The timing cache is read and rewritten, so it may be itself, but no other input or output.
    refuse_overwriting_inputs(written, [onnx_path, data, config.timing_cache])
    refuse_overwriting_inputs([config.timing_cache], [onnx_path, data])


def _convert(onnx: OnnxFile, converted: Path, config: EngineConfig, data: Path | None, num_images: int,
             log: Callable[[str], None]) -> OnnxFile:
    """Calibrate (INT8) or convert (FP16) the FP32 file into ``converted``, and read that file once."""
    if config.precision == "int8":
        from clca_deploy.calibration import CalibrationConfig, quantize_int8

        path = quantize_int8(onnx.path, converted, CalibrationConfig(data=data, num_images=num_images), log=log).path
    else:
        from clca_deploy.calibration import to_fp16

        path = to_fp16(onnx.path, converted, log=log).path
    log(f"building from {path}")
    return read_onnx_file(path)


def build_trt(
    onnx_path: str | Path, output: str | Path | None, config: EngineConfig, data: Path | None = None,
    num_images: int = 256, log: Callable[[str], None] = log_info,
) -> EngineResult:
    """FP32 ONNX + ``--int8 --data`` calibrates first, ``--fp16`` converts first; precision lives in the ONNX.

    ``config.precision`` None builds the file's own precision.
    """
    config.validate()
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise ClcaDeployError(f"ONNX file not found: {onnx_path}. Export one with `clca-deploy export`.")
    onnx = read_onnx_file(onnx_path)
    onnx.info.refuse_other_runtime(RUNTIME_NAME, str(onnx_path))
    config = replace(config, precision=config.precision or onnx.info.precision)
    output = Path(output) if output else default_engine_path(onnx_path, config.precision)
    converted = _converted_path(onnx_path, onnx.info.precision, config)
    if converted is not None and config.precision == "int8" and data is None:
        raise ClcaDeployError("--int8 from an FP32 ONNX needs calibration images: pass --data DIR.")
    _check_outputs(onnx_path, output, converted, config, data)
    toolkit = load_toolkit(config.device)  # once, before any work: calibration takes minutes
    config.check_options(toolkit.version, config.precision)  # --optimization-level, --dla-core: also before converting
    if converted is not None:
        onnx = _convert(onnx, converted, config, data, num_images, log)
    return build_from_file(onnx, output, config, toolkit, log)

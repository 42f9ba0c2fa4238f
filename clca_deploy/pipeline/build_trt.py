"""``build-trt`` in one call: make the ONNX file the requested precision needs, then build the engine."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from clca_deploy.artifacts import check_output_path, refuse_overwriting_inputs
from clca_deploy.errors import ClcaDeployError
from clca_deploy.tensorrt.build import EngineConfig, EngineResult, build_engine
from clca_deploy.tensorrt.plan import PRECISIONS
from clca_deploy.tensorrt.sidecar import sidecar_path
from clca_deploy.tensorrt.toolkit import load_toolkit


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
    written = [output, sidecar_path(output)] + ([converted] if converted is not None else [])
    for path in written + ([config.timing_cache] if config.timing_cache is not None else []):
        check_output_path(path)
    # The timing cache is read and rewritten, so it may be itself, but no other input or output.
    refuse_overwriting_inputs(written, [onnx_path, data, config.timing_cache])
    refuse_overwriting_inputs([config.timing_cache], [onnx_path, data])


def build_trt(
    onnx_path: str | Path, output: str | Path | None, config: EngineConfig, data: Path | None = None,
    num_images: int = 256, log: Callable[[str], None] = print,
) -> EngineResult:
    """FP32 ONNX + ``--int8 --data`` calibrates first, ``--fp16`` converts first; precision lives in the ONNX."""
    from clca_deploy.metadata import read_onnx_metadata

    config.validate()
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise ClcaDeployError(f"ONNX file not found: {onnx_path}. Export one with `clca-deploy export`.")
    output = Path(output) if output else default_engine_path(onnx_path, config.precision)
    converted = _converted_path(onnx_path, read_onnx_metadata(onnx_path).precision, config)
    if converted is not None and config.precision == "int8" and data is None:
        raise ClcaDeployError("--int8 from an FP32 ONNX needs calibration images: pass --data DIR.")
    _check_outputs(onnx_path, output, converted, config, data)  # build_engine checks them again itself
    toolkit = load_toolkit(config.device)  # once, before any work: calibration takes minutes
    if converted is not None:
        if config.precision == "int8":
            from clca_deploy.calibration import CalibrationConfig, quantize_int8

            calibration = CalibrationConfig(data=data, num_images=num_images)
            onnx_path = Path(quantize_int8(onnx_path, converted, calibration, log=log).path)
        else:
            from clca_deploy.calibration import to_fp16

            onnx_path = Path(to_fp16(onnx_path, converted, log=log).path)
        log(f"building from {onnx_path}")
    return build_engine(onnx_path, output, config, log=log, toolkit=toolkit)

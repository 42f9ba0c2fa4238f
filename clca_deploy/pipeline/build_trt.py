"""``build-trt`` in one call: make the ONNX file the requested precision needs, then build the engine."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from clca_deploy.artifacts import check_output_path
from clca_deploy.errors import ClcaDeployError
from clca_deploy.tensorrt.build import EngineConfig, EngineResult, build_engine
from clca_deploy.tensorrt.plan import PRECISIONS
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


def build_trt(
    onnx_path: str | Path, output: str | Path | None, config: EngineConfig, data: Path | None = None,
    num_images: int = 256, log: Callable[[str], None] = print,
) -> EngineResult:
    """FP32 ONNX + ``--int8 --data`` calibrates first, ``--fp16`` converts first; precision lives in the ONNX."""
    from clca_deploy.metadata import read_onnx_metadata

    config.validate()
    toolkit = load_toolkit(config.device)  # once, before any work: calibration takes minutes
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise ClcaDeployError(f"ONNX file not found: {onnx_path}. Export one with `clca-deploy export`.")
    # Checked before calibration, which takes minutes; build_engine checks them again itself.
    output = check_output_path(output if output else default_engine_path(onnx_path, config.precision))
    if config.timing_cache is not None:
        check_output_path(config.timing_cache)
    stem = model_stem(onnx_path)
    precision = read_onnx_metadata(onnx_path).precision
    # Weak typing builds FP16 from the FP32 file with the builder flag; INT8 always needs Q/DQ.
    needs_conversion = precision == "fp32" and (
        config.precision == "int8" or (config.precision == "fp16" and not config.weak_typing)
    )
    if needs_conversion:
        if config.precision == "int8":
            from clca_deploy.calibration import CalibrationConfig, quantize_int8

            if data is None:
                raise ClcaDeployError("--int8 from an FP32 ONNX needs calibration images: pass --data DIR.")
            calibration = CalibrationConfig(data=data, num_images=num_images)
            onnx_path = Path(quantize_int8(onnx_path, onnx_path.with_name(f"{stem}.int8.onnx"), calibration, log=log).path)
        else:
            from clca_deploy.calibration import to_fp16

            onnx_path = Path(to_fp16(onnx_path, onnx_path.with_name(f"{stem}.fp16.onnx"), log=log).path)
        log(f"building from {onnx_path}")
    return build_engine(onnx_path, output, config, log=log, toolkit=toolkit)

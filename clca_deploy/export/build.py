"""``build-trt`` in one call: make the ONNX file the requested precision needs, then build the engine."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from clca_deploy.errors import ClcaDeployError
from clca_deploy.export.tensorrt import EngineConfig, EngineResult, build_engine, require_tensorrt


def build_trt(
    onnx_path: str | Path, output: str | Path | None, config: EngineConfig, data: Path | None = None,
    num_images: int = 256, log: Callable[[str], None] = print,
) -> EngineResult:
    """FP32 ONNX + ``--int8 --data`` calibrates first, ``--fp16`` converts first; precision lives in the ONNX."""
    from clca_deploy.export.metadata import read_onnx_metadata

    require_tensorrt()  # before any work: calibration takes minutes
    onnx_path = Path(onnx_path)
    stem = onnx_path.name.removesuffix(".onnx")
    output = Path(output) if output else onnx_path.with_name(f"{stem}.{config.precision}.engine")
    precision = read_onnx_metadata(onnx_path).precision
    if config.precision != precision and precision == "fp32":
        if config.precision == "int8":
            from clca_deploy.calibration import CalibrationConfig, quantize_int8

            if data is None:
                raise ClcaDeployError("--int8 from an FP32 ONNX needs calibration images: pass --data DIR.")
            quantized = onnx_path.with_name(f"{stem}.int8.onnx")
            onnx_path = Path(quantize_int8(onnx_path, quantized, CalibrationConfig(data=data, num_images=num_images), log=log).path)
        else:
            from clca_deploy.calibration import to_fp16

            onnx_path = Path(to_fp16(onnx_path, onnx_path.with_name(f"{stem}.fp16.onnx"), log=log).path)
        log(f"building from {onnx_path}")
    return build_engine(onnx_path, output, config, log=log)

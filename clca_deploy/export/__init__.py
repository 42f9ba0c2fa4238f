"""Export stages: torch -> ONNX (onnx.py) and ONNX -> TensorRT engine (tensorrt.py, build.py)."""

from clca_deploy.export.metadata import OnnxModelInfo, read_onnx_metadata
from clca_deploy.export.onnx import ExportConfig, ExportResult, export_onnx
from clca_deploy.export.verify import ExportVerificationError, ParityResult

__all__ = [
    "ExportConfig",
    "ExportResult",
    "ExportVerificationError",
    "OnnxModelInfo",
    "ParityResult",
    "export_onnx",
    "read_onnx_metadata",
]

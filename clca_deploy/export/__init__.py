"""Export stage: torch -> ONNX with a static token schedule, metadata and a parity check (needs the export extra)."""

from clca_deploy.export.onnx import ExportConfig, ExportResult, export_onnx
from clca_deploy.export.verify import ExportVerificationError, ParityResult

__all__ = ["ExportConfig", "ExportResult", "ExportVerificationError", "ParityResult", "export_onnx"]

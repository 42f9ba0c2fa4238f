"""Reduced precision: calibration images, explicit Q/DQ INT8 and FP16 ONNX files."""

from clca_deploy.calibration.cache import CalibrationCacheWarning
from clca_deploy.calibration.fp16 import Fp16Result, to_fp16
from clca_deploy.calibration.config import METHODS, CalibrationConfig, calibrated_path
from clca_deploy.calibration.int8 import QuantizeResult, quantize_int8
from clca_deploy.calibration.qdq import check_qdq_conventions

__all__ = [
    "METHODS", "CalibrationCacheWarning", "CalibrationConfig", "Fp16Result", "QuantizeResult", "calibrated_path", "check_qdq_conventions", "quantize_int8", "to_fp16",
]

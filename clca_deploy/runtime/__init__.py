"""Runtimes behind one protocol: torch (the reference), onnxruntime, openvino, tensorrt."""

from clca_deploy.runtime.base import (
    BACKENDS,
    Backend,
    InputSpec,
    ModelDescription,
    RuntimeOptions,
    backend_for_path,
    open_backend,
    parse_runtimes,
    runtimes_for_path,
)
from clca_deploy.runtime.predictor import Prediction, PredictionRun, infer, predict_images

__all__ = [
    "BACKENDS",
    "Backend",
    "InputSpec",
    "ModelDescription",
    "Prediction",
    "PredictionRun",
    "RuntimeOptions",
    "backend_for_path",
    "infer",
    "open_backend",
    "parse_runtimes",
    "predict_images",
    "runtimes_for_path",
]

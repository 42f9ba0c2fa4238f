"""Runtimes behind one protocol: torch (the reference), onnxruntime, tensorrt."""

from clca_deploy.runtime.base import (
    BACKENDS,
    Backend,
    InputSpec,
    ModelDescription,
    backend_for_path,
    backend_options,
    open_backend,
)
from clca_deploy.runtime.predictor import Prediction, PredictionRun, infer, predict_images

__all__ = [
    "BACKENDS",
    "Backend",
    "InputSpec",
    "ModelDescription",
    "Prediction",
    "PredictionRun",
    "backend_for_path",
    "backend_options",
    "infer",
    "open_backend",
    "predict_images",
]

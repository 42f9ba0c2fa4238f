"""Runtimes behind one protocol, each declared once in ``registry``: torch (the reference), onnxruntime, openvino, tensorrt."""

from clca_deploy.runtime.base import Backend, BackendBase, InputSpec, ModelDescription, RuntimeSpec
from clca_deploy.runtime.predictor import Prediction, PredictionRun, infer, predict_images
from clca_deploy.runtime.registry import (
    RuntimeOptions,
    backend_for_path,
    open_backend,
    parse_runtimes,
    register_runtime,
    runtime_spec,
    runtimes_for_path,
)

__all__ = [
    "Backend",
    "BackendBase",
    "InputSpec",
    "ModelDescription",
    "Prediction",
    "PredictionRun",
    "RuntimeOptions",
    "RuntimeSpec",
    "backend_for_path",
    "infer",
    "open_backend",
    "parse_runtimes",
    "predict_images",
    "register_runtime",
    "runtime_spec",
    "runtimes_for_path",
]

"""The Backend protocol, what a backend says about its model, and the name -> factory registry."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol, runtime_checkable

import numpy as np

from clca_deploy.errors import ClcaDeployError


@dataclass(frozen=True)
class InputSpec:
    """The input a backend takes: NCHW float32; ``batch`` is None when any batch size works."""

    name: str
    img_size: int
    batch: int | None = None

    @property
    def shape(self) -> tuple[int | None, int, int, int]:
        return (self.batch, 3, self.img_size, self.img_size)


@dataclass(frozen=True)
class ModelDescription:
    """What a runtime needs besides the weights: preprocessing and class names."""

    model: str
    keep_rate: tuple[float, ...]
    num_classes: int
    preprocess: dict[str, Any]  # PreprocessConfig.to_dict()
    class_names: tuple[str, ...] | None = None
    precision: str = "fp32"
    extra: dict[str, Any] = field(default_factory=dict)

    def class_name(self, index: int) -> str:
        return self.class_names[index] if self.class_names else f"class {index}"


@runtime_checkable
class Backend(Protocol):
    """One loaded model on one runtime. ``__call__`` returns host logits after the device is done."""

    name: str
    input_spec: InputSpec
    description: ModelDescription

    def __call__(self, batch: np.ndarray) -> np.ndarray: ...

    def __enter__(self) -> "Backend": ...

    def __exit__(self, *exc: object) -> None: ...


# name -> "module:factory", imported on use so that optional runtimes cost nothing until asked for.
BACKENDS: dict[str, str] = {
    "torch": "clca_deploy.runtime.torch_backend:TorchBackend",
    "onnxruntime": "clca_deploy.runtime.onnxruntime_backend:OnnxRuntimeBackend",
    "tensorrt": "clca_deploy.runtime.tensorrt_backend:TensorRTBackend",
}

SUFFIX_BACKENDS = {
    ".pth": "torch", ".pt": "torch", ".bin": "torch", ".safetensors": "torch",
    ".onnx": "onnxruntime",
    ".engine": "tensorrt", ".plan": "tensorrt",
}


def backend_for_path(path: str | Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in SUFFIX_BACKENDS:
        raise ClcaDeployError(
            f"cannot tell which runtime runs {path}: expected a checkpoint (.pth, .pt, .safetensors), "
            "an ONNX file (.onnx) or a TensorRT engine (.engine, .plan)."
        )
    return SUFFIX_BACKENDS[suffix]


def backend_factory(name: str) -> Callable[..., Backend]:
    if name not in BACKENDS:
        raise ClcaDeployError(f"unknown backend '{name}'; choose one of {', '.join(BACKENDS)}.")
    module_name, _, attribute = BACKENDS[name].partition(":")
    return getattr(importlib.import_module(module_name), attribute)


def backend_options(kind: str, provider: str = "cpu", device: int = 0) -> dict[str, Any]:
    """The options each backend takes from the command line: an onnxruntime provider, an engine's GPU."""
    if kind == "onnxruntime":
        return {"provider": provider}
    if kind == "tensorrt":
        return {"device": device}
    return {}


def open_backend(path: str | Path, backend: str | None = None, **options: Any) -> Backend:
    """Open a model file on the runtime its type calls for (or ``backend``), e.g. ``open_backend("m.onnx")``."""
    path = Path(path)
    if not path.exists():
        raise ClcaDeployError(f"model file not found: {path}. Check the path.")
    return backend_factory(backend or backend_for_path(path))(path, **options)


def check_batch(batch: np.ndarray, spec: InputSpec) -> np.ndarray:
    """The batch as contiguous float32 NCHW, or a clear error naming the expected shape."""
    if batch.ndim != 4 or batch.shape[1:] != (3, spec.img_size, spec.img_size):
        raise ClcaDeployError(f"expected a batch of shape (N, 3, {spec.img_size}, {spec.img_size}), got {batch.shape}.")
    if spec.batch is not None and batch.shape[0] != spec.batch:
        raise ClcaDeployError(f"this model was exported for batch {spec.batch}; got a batch of {batch.shape[0]}.")
    return np.ascontiguousarray(batch, dtype=np.float32)

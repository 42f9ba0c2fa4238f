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
    "openvino": "clca_deploy.runtime.openvino_backend:OpenVinoBackend",
    "tensorrt": "clca_deploy.runtime.tensorrt_backend:TensorRTBackend",
}

# file suffix -> the runtimes that can open it, the default first.
SUFFIX_RUNTIMES: dict[str, tuple[str, ...]] = {
    ".pth": ("torch",), ".pt": ("torch",), ".bin": ("torch",), ".safetensors": ("torch",),
    ".onnx": ("onnxruntime", "openvino"),
    ".engine": ("tensorrt",), ".plan": ("tensorrt",),
}


def runtimes_for_path(path: str | Path) -> tuple[str, ...]:
    """The runtimes that can open ``path``, its default first; an error for a file no runtime reads."""
    suffix = Path(path).suffix.lower()
    if suffix not in SUFFIX_RUNTIMES:
        raise ClcaDeployError(
            f"cannot tell which runtime runs {path}: expected a checkpoint (.pth, .pt, .safetensors), "
            "an ONNX file (.onnx) or a TensorRT engine (.engine, .plan)."
        )
    return SUFFIX_RUNTIMES[suffix]


def backend_for_path(path: str | Path, runtime: str | None = None) -> str:
    """The runtime that opens ``path``: ``runtime`` if given and able to, else the file type's default."""
    able = runtimes_for_path(path)
    if runtime is None:
        return able[0]
    if runtime not in BACKENDS:
        raise ClcaDeployError(f"unknown runtime '{runtime}'; choose one of {', '.join(BACKENDS)}.")
    if runtime not in able:
        raise ClcaDeployError(
            f"{runtime} cannot open {Path(path).name}; {Path(path).suffix} files run on {' or '.join(able)}."
        )
    return runtime


def parse_runtimes(text: str | None) -> tuple[str, ...] | None:
    """A comma-separated runtime list such as "onnxruntime,openvino"; None (each file's default) if empty."""
    if not text:
        return None
    names = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    unknown = [name for name in names if name not in BACKENDS]
    if unknown:
        raise ClcaDeployError(f"unknown runtime {', '.join(unknown)}; choose from {', '.join(BACKENDS)}.")
    return names or None


def backend_factory(name: str) -> Callable[..., Backend]:
    if name not in BACKENDS:
        raise ClcaDeployError(f"unknown backend '{name}'; choose one of {', '.join(BACKENDS)}.")
    module_name, _, attribute = BACKENDS[name].partition(":")
    return getattr(importlib.import_module(module_name), attribute)


INFERENCE_PRECISIONS = ("f32", "bf16")
PERFORMANCE_HINTS = ("latency", "throughput")


@dataclass(frozen=True)
class RuntimeOptions:
    """Command-line settings of the runtimes; each backend takes only its own (``for_backend``)."""

    provider: str = "cpu"  # onnxruntime execution provider
    device: int = 0  # CUDA device of a TensorRT engine
    threads: int | None = None  # CPU threads of onnxruntime and OpenVINO (None: the runtime's default)
    inference_precision: str = "f32"  # OpenVINO float precision: f32, or bf16 where the CPU has it
    performance_hint: str = "latency"  # OpenVINO: latency or throughput
    cache_dir: Path | None = None  # OpenVINO compiled-model cache
    checkpoint_args: Path | None = None  # PyTorch: JSON of train.py args, for a bare state dict

    def validate(self) -> None:
        """Refuse values a runtime would reject, before any model is opened."""
        if self.inference_precision not in INFERENCE_PRECISIONS:
            raise ClcaDeployError(
                f"unknown inference precision '{self.inference_precision}'; use {' or '.join(INFERENCE_PRECISIONS)}."
            )
        if self.performance_hint not in PERFORMANCE_HINTS:
            raise ClcaDeployError(
                f"unknown performance hint '{self.performance_hint}'; use {' or '.join(PERFORMANCE_HINTS)}."
            )
        if self.threads is not None and self.threads < 1:
            raise ClcaDeployError(f"--threads must be a positive integer, got {self.threads}.")
        if self.device < 0:
            raise ClcaDeployError(f"--device must be a CUDA device index (0, 1, ...), got {self.device}.")
        if self.checkpoint_args is not None and not Path(self.checkpoint_args).is_file():
            raise ClcaDeployError(
                f"--config {self.checkpoint_args} not found; give a JSON file of the checkpoint's train.py args."
            )

    def for_backend(self, kind: str) -> dict[str, Any]:
        if kind == "onnxruntime":
            return {"provider": self.provider, "threads": self.threads}
        if kind == "openvino":
            return {
                "inference_precision": self.inference_precision, "performance_hint": self.performance_hint,
                "threads": self.threads, "cache_dir": self.cache_dir,
            }
        if kind == "tensorrt":
            return {"device": self.device}
        if kind == "torch" and self.checkpoint_args is not None:
            return {"settings_file": self.checkpoint_args}
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

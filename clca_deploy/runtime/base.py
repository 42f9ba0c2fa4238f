"""The Backend protocol, what a backend says about its model, and what a runtime declares to the registry."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Protocol, runtime_checkable

import numpy as np

from clca_deploy.errors import ClcaDeployError
from clca_deploy.extras import require

if TYPE_CHECKING:
    from clca_deploy.system.checks import Check, Context

# What other stages know how to read (Triton's spec of a classifier, `info`): a runtime names the
# format of the files it opens with one of these, or a new one that no stage reads yet.
CHECKPOINT = "checkpoint"
ONNX_FILE = "ONNX file"
TENSORRT_ENGINE = "TensorRT engine"


@dataclass(frozen=True)
class InputSpec:
    """The input a backend takes: NCHW float32; ``batch`` is None when any batch size works."""

    name: str
    img_size: int
    batch: int | None = None

    @property
    def shape(self) -> tuple[int | None, int, int, int]:
        """(batch or None, 3, size, size)."""
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
        """The name of class ``index``, or "class N" where the model carries no names."""
        return self.class_names[index] if self.class_names else f"class {index}"


@runtime_checkable
class Backend(Protocol):
    """One loaded model on one runtime. ``__call__`` returns host logits after the device is done."""

    name: str
    input_spec: InputSpec
    description: ModelDescription
    providers: tuple[str, ...]  # what runs it, in the runtime's words ("CPUExecutionProvider", "TensorRT 10.3 on Orin")
    device_index: int | None  # the CUDA device it runs on, None on the CPU: power meters read this
    inference_precision: str | None  # float precision it computes in, where that is not the file's (OpenVINO bf16)
    device_label: str  # where it runs, for labels and logs: "CPU", "CUDA:0", "TensorRT-EP CUDA:0"

    def __call__(self, batch: np.ndarray) -> np.ndarray: ...

    def __enter__(self) -> "Backend": ...

    def __exit__(self, *exc: object) -> None: ...


class BackendBase:
    """The defaults most backends share: runs on the CPU in the file's precision; ``with`` calls ``close()``.

    A new backend subclasses this, sets ``name``, ``input_spec``, ``description`` and ``providers`` in
    ``__init__(path, options)``, implements ``__call__`` (check the batch with :func:`check_batch`,
    return float32 logits on the host) and ``close`` (free what it holds; safe to call twice).
    """

    name: str
    input_spec: InputSpec
    description: ModelDescription
    providers: tuple[str, ...] = ()
    device_index: int | None = None
    inference_precision: str | None = None

    @property
    def device_label(self) -> str:
        """Where it runs, as bench rows and logs name it: "CPU", or "CUDA:N" for ``device_index`` N."""
        return "CPU" if self.device_index is None else f"CUDA:{self.device_index}"

    def close(self) -> None:
        """Release the runtime's resources."""

    def __enter__(self) -> "BackendBase":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_batch(batch: np.ndarray, spec: InputSpec) -> np.ndarray:
    """The batch as contiguous float32 NCHW, or a clear error naming the expected shape."""
    if batch.ndim != 4 or batch.shape[1:] != (3, spec.img_size, spec.img_size):
        raise ClcaDeployError(f"expected a batch of shape (N, 3, {spec.img_size}, {spec.img_size}), got {batch.shape}.")
    if spec.batch is not None and batch.shape[0] != spec.batch:
        raise ClcaDeployError(f"this model was exported for batch {spec.batch}; got a batch of {batch.shape[0]}.")
    return np.ascontiguousarray(batch, dtype=np.float32)


@dataclass(frozen=True)
class TritonClassifier:
    """How a stock Triton server runs a runtime's files: the config fields that pick Triton's backend.

    ``parameters`` turns the runtime's options (those whose ``cli_option`` says ``triton=True``) into
    the backend's own parameters; ``companions`` names files to copy beside the model file.
    """

    config: Mapping[str, str]  # e.g. {"platform": "onnxruntime_onnx"} or {"backend": "openvino", ...}
    model_file: str  # the file's name in the model's version folder
    devices: tuple[str, ...] = ("gpu", "cpu")  # where Triton may run it, the default first
    wrong_device: str = ""  # the error for any other device
    parameters: Callable[[Any], dict[str, str]] | None = None
    companions: Callable[[Path], dict[str, Path]] | None = None  # classifier-folder name -> source file

    @property
    def format(self) -> str:
        """What Triton loads, named by the model file's suffix: "onnx", "plan"."""
        return Path(self.model_file).suffix.lstrip(".")


@dataclass(frozen=True)
class RuntimeSpec:
    """Everything the tool knows about one runtime, declared in its backend module as ``RUNTIME``.

    ``runtime.registry`` lists every spec once; the commands' ``--runtime`` and runtime options, the
    file-suffix defaults, `doctor`'s rows, report environments and Triton configs all read it. To add a
    runtime, copy a backend module (``openvino_backend.py`` is the smallest full one), then add its
    ``RUNTIME`` to ``registry.BUILT_IN``. The first runtime listed for a suffix is that file type's default.
    """

    name: str
    backend: Callable[[Path, Any], Backend]  # called as backend(path, options)
    options: type  # frozen dataclass of its settings; ``cli_option`` fields are command-line options
    suffixes: tuple[str, ...]  # lower-case file suffixes it opens, ".onnx"
    file_format: str  # CHECKPOINT, ONNX_FILE, TENSORRT_ENGINE, or a format of its own
    summary: str  # a few words for --runtime's help ("x86 CPUs")
    requires: tuple[str, ...] = ()  # modules it imports; a missing one is named with its install line
    install: str | None = None  # how to get ``requires`` where extras.py does not list them
    # Its `doctor` rows: (row name if the probe itself fails, probe), each run in isolation.
    probes: tuple[tuple[str, Callable[["Context"], "Check | list[Check]"]], ...] = ()
    distributions: tuple[str, ...] = ()  # pip distributions whose versions reports record
    triton: TritonClassifier | None = None  # None: stock Triton cannot serve it (`serve` still can)

    def require(self, purpose: str) -> None:
        """Raise UnsupportedError naming the install line unless every module it needs is importable."""
        for module in self.requires:
            require(module, purpose, install=self.install)

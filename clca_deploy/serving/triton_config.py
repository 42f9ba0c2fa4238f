"""The four Triton models of a CLCA repository and their ``config.pbtxt``, as pure functions.

Clients call the ensemble ``<name>`` with encoded image bytes and get the top-k class ids,
names and scores. Inside it: ``<name>_preprocess`` (Python backend, this project's eval
preprocessing) -> ``<name>_classifier`` (the model file on the Triton backend its runtime's registry
entry names, or this tool's runtime in a Python model under `serve`) -> ``<name>_postprocess``
(Python backend, softmax and top-k as `clca-deploy predict` computes them).
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clca_deploy.data.images import DEFAULT_MAX_PIXELS, PIXEL_LIMIT_CEILING
from clca_deploy.errors import ClcaDeployError, ConfigError
from clca_deploy.metadata import MAX_BATCH
from clca_deploy.runtime.base import RuntimeSpec, TritonClassifier
from clca_deploy.runtime.options import cli_options, option_values
from clca_deploy.runtime.registry import RuntimeOptions, backend_for_path, command_line_options, runtime_spec
from clca_deploy.serving.pbtxt import Enum
from clca_deploy.serving.spec import ClassifierSpec
from clca_deploy.tensorrt.plan import BatchProfile, profile_option, profile_reaching

DEFAULT_MAX_BATCH = 16
# Decode work one request may ask for, summed over its images' declared sizes: four of the largest
# images (or 16 images of 10 MP), about 3 s of one core's decoding, so a request cannot hold a
# preprocessing instance (and every request queued behind it) much longer than that.
DEFAULT_MAX_REQUEST_PIXELS = 4 * DEFAULT_MAX_PIXELS
# Ceilings of the settings: beyond them a value is a typo, not a plan (every instance is a process). The
# batch stops where exports and engines stop (metadata.MAX_BATCH).
MAX_INSTANCES = 64
MAX_QUEUE_DELAY_US = 10_000_000
# Tensor names clients and the inner models see; the classifier keeps the names of its file.
IMAGE, PIXELS, LOGITS = "IMAGE", "PIXELS", "LOGITS"
CLASS_ID, CLASS_NAME, SCORE = "CLASS_ID", "CLASS_NAME", "SCORE"
LABELS_FILE = "labels.txt"
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
_DEVICE = re.compile(r"cpu|gpu|cuda(:\d{1,3})?")


@dataclass(frozen=True)
class TritonRepoConfig:
    """How the repository serves the model. ``max_batch`` None: 16, or less if an engine takes less."""

    name: str = "clca"
    max_batch: int | None = None
    instances: int = 1
    preprocess_instances: int = 2
    # Where Triton runs the classifier: cpu, cuda (every GPU; gpu is the old spelling) or cuda:N (GPU N).
    # None: the runtime's first choice.
    device: str | None = None
    top_k: int = 5
    max_queue_delay_us: int = 1000
    # The classifier's runtime: None for the file's own (the first its suffix lists in the registry).
    runtime: str | None = None
    runtime_options: RuntimeOptions = RuntimeOptions()
    # Pixel budgets of the preprocessing model, checked from the images' headers before any decoding.
    max_image_megapixels: float = DEFAULT_MAX_PIXELS / 1e6
    max_request_megapixels: float = DEFAULT_MAX_REQUEST_PIXELS / 1e6

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise ConfigError(f"model name {self.name!r} must start with a letter and hold only letters, digits, _ and - (64 at most).")
        for field, value, ceiling in (("max batch", self.max_batch, MAX_BATCH), ("instances", self.instances, MAX_INSTANCES),
                                      ("preprocess instances", self.preprocess_instances, MAX_INSTANCES),
                                      ("top-k", self.top_k, None)):
            if value is not None and (not _is_int(value) or value < 1 or (ceiling is not None and value > ceiling)):
                within = f"1..{ceiling}" if ceiling else "a whole number of at least 1"
                raise ConfigError(f"{field} must be {within}, got {value!r}.")
        if self.device is not None and (not isinstance(self.device, str) or not _DEVICE.fullmatch(self.device)):
            raise ConfigError(f"device must be cpu, cuda (every GPU) or cuda:N, got {self.device!r}.")
        if self.runtime is not None:
            runtime_spec(self.runtime)
        if not _is_int(self.max_queue_delay_us) or not 0 <= self.max_queue_delay_us <= MAX_QUEUE_DELAY_US:
            raise ConfigError(f"the queue delay must be 0..{MAX_QUEUE_DELAY_US} microseconds, got {self.max_queue_delay_us!r}.")
        _check_pixel_budgets(self.max_image_megapixels, self.max_request_megapixels)

    @property
    def max_image_pixels(self) -> int:
        return round(self.max_image_megapixels * 1e6)

    @property
    def max_request_pixels(self) -> int:
        return round(self.max_request_megapixels * 1e6)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_pixel_budgets(image: object, request: object) -> None:
    ceiling = PIXEL_LIMIT_CEILING / 1e6
    for option, value in (("--max-image-megapixels", image), ("--max-request-megapixels", request)):
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value <= 0:
            raise ConfigError(f"{option} must be a number of megapixels above 0, got {value!r}.")
    if image > ceiling:
        raise ConfigError(f"--max-image-megapixels must be at most {ceiling:.1f} (Pillow refuses larger images anyway), got {image!r}.")
    if request < image:
        raise ConfigError(
            f"--max-request-megapixels ({request!r}) is below --max-image-megapixels ({image!r}): a request with one "
            "image of the allowed size would be refused. Raise it, or lower the per-image limit."
        )


@dataclass(frozen=True)
class ServedRuntime:
    """The runtime that runs a repository's classifier, and on which device Triton places it."""

    spec: RuntimeSpec
    device: str  # gpu or cpu: the kind of the classifier's instances
    options: object  # the runtime's own options dataclass
    triton: TritonClassifier | None  # how stock Triton runs it; None under `serve` (this tool's runtime runs it)
    # The one CUDA device of the instances (instance_group gpus), where the runtime decides it: `serve`'s
    # classifier runs where its runtime opened the model. None: Triton puts GPU instances on every GPU.
    gpu: int | None = None

    def placed(self, gpu: int | None) -> "ServedRuntime":
        """This runtime's instances on CUDA device ``gpu`` (KIND_GPU), or on the CPU where ``gpu`` is None."""
        return dataclasses.replace(self, device="cpu" if gpu is None else "gpu", gpu=gpu)


def served_runtime(model_path: str | Path, config: TritonRepoConfig, stock_triton: bool = True) -> ServedRuntime:
    """The classifier's runtime for ``model_path`` (by suffix; nothing is read), refused before any work if
    stock Triton cannot run it there. Without ``stock_triton`` (`serve`'s Python model) any runtime runs it,
    on the CPU until :meth:`ServedRuntime.placed` puts it where its runtime opened the model."""
    spec = runtime_spec(backend_for_path(model_path, config.runtime))
    _check_options_apply(spec, config.runtime_options, Path(model_path).name)
    options = config.runtime_options.of(spec.name)
    if not stock_triton:
        return ServedRuntime(spec, "cpu", options, None)
    if spec.triton is None:
        raise ConfigError(
            f"stock Triton has no backend for the {spec.name} runtime; serve {Path(model_path).name} with "
            f"`clca-deploy serve --runtime {spec.name}`, or choose another --runtime for triton-repo."
        )
    kind, _, index = (config.device or spec.triton.devices[0]).partition(":")
    kind = "cpu" if kind == "cpu" else "gpu"
    if kind not in spec.triton.devices:
        raise ConfigError(spec.triton.wrong_device or f"{spec.name} runs the classifier only on {' or '.join(spec.triton.devices)}.")
    return ServedRuntime(spec, kind, options, spec.triton, gpu=int(index) if index else None)


def _check_options_apply(spec: RuntimeSpec, given: RuntimeOptions, file_name: str) -> None:
    """Refuse a runtime option set to anything but its default that the one runtime serving the file does not take:
    dropped, it would leave `serve x.engine --provider cuda` (or a --device the runtime lacks) silently unheeded."""
    takes = {option.name for option in cli_options(spec.options)}
    known = {option.name: option for option in command_line_options()}
    foreign = [f"{known[name].flag.flag} {value}" for name, value in given.values.items()
               if name not in takes and value != known[name].default]
    if foreign:
        raise ConfigError(
            f"the {spec.name} runtime, which runs {file_name}, takes no {', '.join(foreign)}; leave it out, or choose "
            "a --runtime that takes it."
        )


@dataclass(frozen=True)
class ModelNames:
    ensemble: str
    preprocess: str
    classifier: str
    postprocess: str

    @classmethod
    def for_name(cls, name: str) -> "ModelNames":
        return cls(name, f"{name}_preprocess", f"{name}_classifier", f"{name}_postprocess")


def resolve_max_batch(spec: ClassifierSpec, requested: int | None) -> int:
    """The batch Triton may form: as asked, within what the model file accepts."""
    if spec.max_batch is not None and (not _is_int(spec.max_batch) or spec.max_batch < 1):
        # An engine's profile comes from its sidecar, a file like any other: never a max_batch_size of -5.
        raise ClcaDeployError(
            f"{spec.path.name} says its largest batch is {spec.max_batch!r}; the sidecar is damaged: rebuild the engine "
            "with `clca-deploy build-trt`."
        )
    _check_batches_from_one(spec)
    if requested is None:
        return DEFAULT_MAX_BATCH if spec.max_batch is None else min(DEFAULT_MAX_BATCH, spec.max_batch)
    if spec.max_batch is not None and requested > spec.max_batch:
        raise ConfigError(
            f"--max-batch {requested} exceeds the largest batch {spec.path.name} was built for ({spec.max_batch}); "
            f"lower it, or rebuild the engine with `clca-deploy {profile_option(profile_reaching(requested))}`."
        )
    return requested


def _check_batches_from_one(spec: ClassifierSpec) -> None:
    """Refuse an engine whose profile starts above batch 1. Triton's dynamic batcher has no minimum batch size
    (preferred_batch_size is a wish, max_queue_delay sends whatever has arrived): one image alone is a batch of
    1, which TensorRT's Triton backend refuses and `serve`'s classifier could only pad. Padding would hide the
    cost of every small batch, so neither `triton-repo` nor `serve` takes such an engine."""
    profile = spec.batch_profile
    if profile is None or profile.min == 1:
        return
    fixed = BatchProfile(1, profile.opt, profile.max)
    raise ClcaDeployError(
        f"{spec.path.name} was built for batches of {profile.min}..{profile.max}, but Triton batches requests from 1 "
        f"(it has no minimum batch size), so smaller batches would fail; rebuild it with `clca-deploy {profile_option(fixed)}`."
    )


def _tensor(name: str, data_type: str, dims: tuple[int, ...] | list[int], **extra: Any) -> dict[str, Any]:
    return {"name": name, "data_type": Enum(data_type), "dims": list(dims), **extra}


def _parameters(values: dict[str, str]) -> list[dict[str, Any]]:
    return [{"key": key, "value": {"string_value": value}} for key, value in values.items()]


def _instances(count: int, kind: str, gpu: int | None = None) -> list[dict[str, Any]]:
    group: dict[str, Any] = {"count": count, "kind": Enum(kind)}
    if gpu is not None:
        group["gpus"] = [gpu]
    return [group]


def classifier_config(spec: ClassifierSpec, names: ModelNames, served: ServedRuntime, config: TritonRepoConfig,
                      max_batch: int) -> dict[str, Any]:
    """The classifier as a stock Triton model (the fields its runtime's registry entry gives), or, under
    `serve` (``served.triton`` None), as a Python-backend model running this tool's runtime on the file in place."""
    stock = served.triton
    message: dict[str, Any] = {"name": names.classifier}
    if stock is None:
        message["backend"] = "python"
    else:
        message.update(stock.config)
    message["max_batch_size"] = max_batch
    message["input"] = [_tensor(spec.input.name, spec.input.data_type, spec.input.dims)]
    message["output"] = [_tensor(spec.output.name, spec.output.data_type, spec.output.dims, label_filename=LABELS_FILE)]
    message["dynamic_batching"] = {"max_queue_delay_microseconds": config.max_queue_delay_us}
    message["instance_group"] = _instances(config.instances, "KIND_CPU" if served.device == "cpu" else "KIND_GPU", served.gpu)
    if stock is None:
        options = json.dumps(option_values(served.options), sort_keys=True)
        parameters = {"model_path": str(spec.path.resolve()), "runtime": served.spec.name, "runtime_options": options}
        message["parameters"] = _parameters(parameters)
    elif stock.parameters is not None:
        message["parameters"] = _parameters(stock.parameters(served.options))
    return message


def preprocess_config(spec: ClassifierSpec, names: ModelNames, config: TritonRepoConfig, max_batch: int) -> dict[str, Any]:
    return {
        "name": names.preprocess,
        "backend": "python",
        "max_batch_size": max_batch,
        "input": [_tensor(IMAGE, "TYPE_STRING", [1])],
        "output": [_tensor(PIXELS, spec.input.data_type, spec.input.dims)],
        "instance_group": _instances(config.preprocess_instances, "KIND_CPU"),
        "parameters": _parameters({
            "preprocess": json.dumps(spec.info.preprocess, sort_keys=True),
            "max_pixels": str(config.max_image_pixels),
            "max_request_pixels": str(config.max_request_pixels),
        }),
    }


def top_k_for(spec: ClassifierSpec, config: TritonRepoConfig) -> int:
    return min(config.top_k, spec.num_classes)


def postprocess_config(spec: ClassifierSpec, names: ModelNames, config: TritonRepoConfig, max_batch: int) -> dict[str, Any]:
    k = top_k_for(spec, config)
    return {
        "name": names.postprocess,
        "backend": "python",
        "max_batch_size": max_batch,
        "input": [_tensor(LOGITS, spec.output.data_type, spec.output.dims)],
        "output": [_tensor(CLASS_ID, "TYPE_INT64", [k]), _tensor(CLASS_NAME, "TYPE_STRING", [k]), _tensor(SCORE, "TYPE_FP32", [k])],
        "instance_group": _instances(1, "KIND_CPU"),
        "parameters": _parameters({"top_k": str(k), "class_names": json.dumps(list(spec.class_names))}),
    }


def ensemble_config(spec: ClassifierSpec, names: ModelNames, config: TritonRepoConfig, max_batch: int) -> dict[str, Any]:
    k = top_k_for(spec, config)

    def step(model: str, inputs: dict[str, str], outputs: dict[str, str]) -> dict[str, Any]:
        return {
            "model_name": model,
            "model_version": -1,
            "input_map": [{"key": key, "value": value} for key, value in inputs.items()],
            "output_map": [{"key": key, "value": value} for key, value in outputs.items()],
        }

    return {
        "name": names.ensemble,
        "platform": "ensemble",
        "max_batch_size": max_batch,
        "input": [_tensor(IMAGE, "TYPE_STRING", [1])],
        "output": [_tensor(CLASS_ID, "TYPE_INT64", [k]), _tensor(CLASS_NAME, "TYPE_STRING", [k]), _tensor(SCORE, "TYPE_FP32", [k])],
        "ensemble_scheduling": {"step": [
            step(names.preprocess, {IMAGE: IMAGE}, {PIXELS: "pixels"}),
            step(names.classifier, {spec.input.name: "pixels"}, {spec.output.name: "logits"}),
            step(names.postprocess, {LOGITS: "logits"}, {name: name for name in (CLASS_ID, CLASS_NAME, SCORE)}),
        ]},
    }

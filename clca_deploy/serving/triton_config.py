"""The four Triton models of a CLCA repository and their ``config.pbtxt``, as pure functions.

Clients call the ensemble ``<name>`` with encoded image bytes and get the top-k class ids,
names and scores. Inside it: ``<name>_preprocess`` (Python backend, this project's eval
preprocessing) -> ``<name>_classifier`` (the ONNX file on onnxruntime or OpenVINO, or the TensorRT engine) -> ``<name>_postprocess``
(Python backend, softmax and top-k as `clca-deploy predict` computes them).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from clca_deploy.data.images import DEFAULT_MAX_PIXELS
from clca_deploy.errors import ConfigError
from clca_deploy.runtime.base import BACKENDS, RuntimeOptions, backend_for_path
from clca_deploy.serving.pbtxt import Enum
from clca_deploy.serving.spec import ClassifierSpec
from clca_deploy.tensorrt.plan import profile_option, profile_reaching

DEFAULT_MAX_BATCH = 16
# Tensor names clients and the inner models see; the classifier keeps the names of its file.
IMAGE, PIXELS, LOGITS = "IMAGE", "PIXELS", "LOGITS"
CLASS_ID, CLASS_NAME, SCORE = "CLASS_ID", "CLASS_NAME", "SCORE"
LABELS_FILE = "labels.txt"
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")


@dataclass(frozen=True)
class TritonRepoConfig:
    """How the repository serves the model. ``max_batch`` None: 16, or less if an engine takes less."""

    name: str = "clca"
    max_batch: int | None = None
    instances: int = 1
    preprocess_instances: int = 2
    device: str = "gpu"  # where Triton runs the classifier: gpu, or cpu (ONNX only)
    top_k: int = 5
    max_queue_delay_us: int = 1000
    # The classifier's runtime: None for the file's own (onnxruntime for .onnx, tensorrt for engines),
    # or openvino for an .onnx on the CPU (Triton's OpenVINO backend; our runtime under `serve`).
    runtime: str | None = None
    threads: int | None = None  # CPU threads of onnxruntime / OpenVINO (None: the runtime's default)
    inference_precision: str = "f32"  # OpenVINO: f32, or bf16 where the CPU has it

    def runtime_options(self) -> RuntimeOptions:
        """The classifier's runtime settings, as `predict` and `bench` take them."""
        return RuntimeOptions(threads=self.threads, inference_precision=self.inference_precision)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise ConfigError(f"model name {self.name!r} must start with a letter and hold only letters, digits, _ and - (64 at most).")
        for field, value in (("max batch", self.max_batch), ("instances", self.instances),
                             ("preprocess instances", self.preprocess_instances), ("top-k", self.top_k)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ConfigError(f"{field} must be a whole number of at least 1, got {value!r}.")
        if self.device not in ("gpu", "cpu"):
            raise ConfigError(f"device must be gpu or cpu, got {self.device!r}.")
        self.runtime_options().validate()
        if self.runtime is not None and self.runtime not in BACKENDS:
            raise ConfigError(f"unknown runtime {self.runtime!r}; choose one of {', '.join(BACKENDS)}.")
        if self.runtime == "openvino" and self.device != "cpu":
            raise ConfigError("OpenVINO runs the classifier on the CPU: pass --device cpu with --runtime openvino.")
        if not isinstance(self.max_queue_delay_us, int) or self.max_queue_delay_us < 0:
            raise ConfigError(f"the queue delay must be a whole number of microseconds >= 0, got {self.max_queue_delay_us!r}.")


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
    if requested is None:
        return DEFAULT_MAX_BATCH if spec.max_batch is None else min(DEFAULT_MAX_BATCH, spec.max_batch)
    if spec.max_batch is not None and requested > spec.max_batch:
        raise ConfigError(
            f"--max-batch {requested} exceeds the largest batch {spec.path.name} was built for ({spec.max_batch}); "
            f"lower it, or rebuild the engine with `clca-deploy {profile_option(profile_reaching(requested))}`."
        )
    return requested


def _tensor(name: str, data_type: str, dims: tuple[int, ...] | list[int], **extra: Any) -> dict[str, Any]:
    return {"name": name, "data_type": Enum(data_type), "dims": list(dims), **extra}


def _parameters(values: dict[str, str]) -> list[dict[str, Any]]:
    return [{"key": key, "value": {"string_value": value}} for key, value in values.items()]


def _instances(count: int, kind: str) -> list[dict[str, Any]]:
    return [{"count": count, "kind": Enum(kind)}]


def classifier_config(spec: ClassifierSpec, names: ModelNames, config: TritonRepoConfig, max_batch: int,
                      runtime_model: str | None = None) -> dict[str, Any]:
    """The classifier as a stock Triton model (onnxruntime, openvino or tensorrt_plan), or, given
    ``runtime_model`` (a model file path), as a Python-backend model running this tool's runtime."""
    runtime = backend_for_path(spec.path, config.runtime)  # an error if that runtime cannot open the file
    message: dict[str, Any] = {"name": names.classifier}
    if runtime_model is not None:
        message["backend"] = "python"
    elif runtime == "openvino":
        message["backend"] = "openvino"
        message["default_model_filename"] = "model.onnx"  # the backend reads ONNX when told the file name
    elif runtime == "onnxruntime":
        message["platform"] = "onnxruntime_onnx"
    else:
        if config.device == "cpu":
            raise ConfigError("a TensorRT engine runs only on a GPU; use --device gpu, or serve the ONNX file on CPU.")
        message["platform"] = "tensorrt_plan"
    message["max_batch_size"] = max_batch
    message["input"] = [_tensor(spec.input.name, spec.input.data_type, spec.input.dims)]
    message["output"] = [_tensor(spec.output.name, spec.output.data_type, spec.output.dims, label_filename=LABELS_FILE)]
    message["dynamic_batching"] = {"max_queue_delay_microseconds": config.max_queue_delay_us}
    kind = "KIND_CPU" if runtime_model is not None or config.device == "cpu" else "KIND_GPU"
    message["instance_group"] = _instances(config.instances, kind)
    if runtime_model is not None:
        options = {"threads": config.threads, "inference_precision": config.inference_precision}
        message["parameters"] = _parameters(
            {"model_path": runtime_model, "runtime": runtime, "runtime_options": json.dumps(options, sort_keys=True)}
        )
    elif runtime == "openvino":
        message["parameters"] = _parameters(_openvino_parameters(config))
    return message


def _openvino_parameters(config: TritonRepoConfig) -> dict[str, str]:
    """The OpenVINO backend's own keys (its README): one stream per instance, for latency."""
    parameters = {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1"}
    if config.threads:
        parameters["INFERENCE_NUM_THREADS"] = str(config.threads)
    if config.inference_precision == "bf16":
        parameters["HINT_BF16"] = "YES"
    return parameters


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
            "max_pixels": str(DEFAULT_MAX_PIXELS),
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

"""OpenVINO backend: Intel's runtime on x86 CPUs (Intel and AMD alike) for the same ONNX files.

It reads FP32 and INT8 (explicit Q/DQ) exports as they are; the Q/DQ pairs become OpenVINO's
own low-precision kernels. Float work runs in ``inference_precision``: f32 by default so the
logits stay those of the file, bf16 on request where the CPU has it (AVX-512 BF16 / AMX), which
rounds activations and weights of the float parts to bfloat16.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clca_deploy.errors import ClcaDeployError, UnsupportedError
from clca_deploy.extras import install_command
from clca_deploy.runtime.base import (
    ONNX_FILE,
    BackendBase,
    InputSpec,
    ModelDescription,
    RuntimeSpec,
    TritonClassifier,
    check_batch,
)
from clca_deploy.runtime.options import as_path, check_choice, check_threads, cli_option, threads_option
from clca_deploy.system import checks
from clca_deploy.system.checks import Check, Context

INFERENCE_PRECISIONS = ("f32", "bf16")
PERFORMANCE_HINTS = ("latency", "throughput")


@dataclass(frozen=True)
class OpenVinoOptions:
    """OpenVINO's settings: float precision, performance hint, CPU threads, compiled-model cache."""

    inference_precision: str = cli_option(
        "f32", "--inference-precision", "OpenVINO: f32, or bf16 where the CPU has it (faster, rounds float work).",
        triton=True, choices=INFERENCE_PRECISIONS,
    )
    performance_hint: str = cli_option(
        "latency", "--performance-hint", "OpenVINO: latency or throughput.", choices=PERFORMANCE_HINTS
    )
    threads: int | None = threads_option()
    cache_dir: Path | None = cli_option(
        None, "--openvino-cache", "OpenVINO: folder for compiled models, so later starts skip compiling."
    )

    def __post_init__(self) -> None:
        check_choice(self.inference_precision, INFERENCE_PRECISIONS, "inference precision")
        check_choice(self.performance_hint, PERFORMANCE_HINTS, "performance hint")
        check_threads(self.threads)
        as_path(self, "cache_dir")


def compile_properties(options: OpenVinoOptions) -> dict[str, object]:
    """The CPU plugin properties for these options (OpenVINO's documented string keys)."""
    properties: dict[str, object] = {
        "INFERENCE_PRECISION_HINT": options.inference_precision,
        "PERFORMANCE_HINT": options.performance_hint.upper(),
    }
    if options.threads:
        properties["INFERENCE_NUM_THREADS"] = options.threads
    if options.cache_dir is not None:
        properties["CACHE_DIR"] = str(options.cache_dir)
    return properties


def check_cpu_supports(inference_precision: str, capabilities: list[str]) -> None:
    """bf16 was asked for explicitly: refuse it on a CPU without bf16 instead of silently running f32."""
    if inference_precision == "bf16" and "BF16" not in capabilities:
        raise UnsupportedError(
            "this CPU has no bf16 support (OpenVINO lists only " + ", ".join(capabilities)
            + "); use --inference-precision f32."
        )


class OpenVinoBackend(BackendBase):
    """An ONNX file compiled for the CPU by OpenVINO; ``inference_precision`` is what the plugin settled on."""

    name = "openvino"

    def __init__(self, path: str | Path, options: OpenVinoOptions = OpenVinoOptions()):
        RUNTIME.require("the openvino runtime")
        import openvino as ov

        from clca_deploy.metadata import read_onnx_metadata

        info = read_onnx_metadata(path)
        info.refuse_other_runtime(self.name, str(path))
        core = ov.Core()
        check_cpu_supports(options.inference_precision, list(core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")))
        if options.cache_dir is not None:
            options.cache_dir.mkdir(parents=True, exist_ok=True)
        properties = compile_properties(options)
        try:
            # From the path rather than a read model: with CACHE_DIR set, a cached blob skips reading the ONNX.
            self._compiled = core.compile_model(str(path), "CPU", properties)
        except RuntimeError as exc:  # OpenVINO raises RuntimeError with a multi-line trace
            raise ClcaDeployError(f"OpenVINO cannot load {path}: {_last_line(str(exc))}") from exc
        model_input = self._compiled.inputs[0]
        first_dim = model_input.get_partial_shape()[0]
        fixed = first_dim.get_length() if first_dim.is_static else None
        self.input_spec = InputSpec(name=model_input.get_any_name(), img_size=info.img_size, batch=fixed)
        # What the plugin settled on (an ov.Type such as f32 or bf16), not merely what was asked for.
        self.inference_precision = self._compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        self.description = ModelDescription(
            model=info.model, keep_rate=info.keep_rate, num_classes=info.num_classes, preprocess=info.preprocess,
            class_names=info.class_names, precision=info.precision,
            extra={
                "token_schedule": info.token_schedule, "openvino_version": ov.__version__,
                "inference_precision": self.inference_precision, "performance_hint": options.performance_hint,
            },
        )
        self.providers = (f"OpenVINO {ov.__version__} CPU ({self.inference_precision}, {options.performance_hint})",)
        # One infer request, used by one call at a time: requests are not thread-safe, and the Triton
        # Python model may call from several threads.
        self._request = self._compiled.create_infer_request()
        self._lock = threading.Lock()

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        batch = check_batch(batch, self.input_spec)
        with self._lock:
            self._request.infer({0: batch})
            return np.array(self._request.get_output_tensor(0).data, dtype=np.float32, copy=True)

    def close(self) -> None:
        self._request = None
        self._compiled = None


def _last_line(message: str) -> str:
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    return lines[-1] if lines else "unknown error"


def probe(ctx: Context) -> Check:
    """`doctor`'s openvino row: installed or not (it is optional), whether it starts, whether the CPU has bf16."""
    version = checks.dist_version("openvino")
    if version is None:
        detail = "not installed (optional x86 CPU runtime: predict / bench / serve --runtime openvino)"
        return Check("openvino", "note", detail, install_command("openvino"))
    try:
        import openvino

        capabilities = list(openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    except Exception as exc:  # noqa: BLE001 - a broken install is this row's finding, not a crash
        detail = f"{version} does not start: {str(exc).splitlines()[-1]}"
        return Check("openvino", "error", detail, install_command("openvino"))
    bf16 = "bf16 on this CPU" if "BF16" in capabilities else "no bf16 on this CPU (f32 and int8 only)"
    return Check("openvino", "ok", f"{version}, {bf16}")


def triton_parameters(options: OpenVinoOptions) -> dict[str, str]:
    """The OpenVINO Triton backend's own keys (its README): one stream per instance, for latency; batches
    padded up to max_batch_size."""
    # The backend fixes the model's batch at max_batch_size (ov::set_batch) and, without ENABLE_BATCH_PADDING,
    # fails every batch the dynamic batcher forms below it: one image alone would never get an answer.
    parameters = {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1", "ENABLE_BATCH_PADDING": "YES"}
    if options.threads:
        parameters["INFERENCE_NUM_THREADS"] = str(options.threads)
    if options.inference_precision == "bf16":
        parameters["HINT_BF16"] = "YES"
    return parameters


RUNTIME = RuntimeSpec(
    name="openvino",
    backend=OpenVinoBackend,
    options=OpenVinoOptions,
    suffixes=(".onnx",),
    file_format=ONNX_FILE,
    summary="x86 CPUs",
    requires=("openvino",),
    probes=(("openvino", probe),),
    distributions=("openvino",),
    triton=TritonClassifier(
        # The backend reads ONNX when told the file name.
        config={"backend": "openvino", "default_model_filename": "model.onnx"}, model_file="model.onnx",
        devices=("cpu",), wrong_device="OpenVINO runs the classifier on the CPU: pass --device cpu with --runtime openvino.",
        parameters=triton_parameters,
    ),
)

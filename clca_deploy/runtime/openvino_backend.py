"""OpenVINO backend: Intel's runtime on x86 CPUs (Intel and AMD alike) for the same ONNX files.

It reads FP32 and INT8 (explicit Q/DQ) exports as they are; the Q/DQ pairs become OpenVINO's
own low-precision kernels. Float work runs in ``inference_precision``: f32 by default so the
logits stay those of the file, bf16 on request where the CPU has it (AVX-512 BF16 / AMX), which
rounds activations and weights of the float parts to bfloat16.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from clca_deploy.errors import ClcaDeployError, UnsupportedError
from clca_deploy.runtime.base import InputSpec, ModelDescription, RuntimeOptions, check_batch


def compile_properties(
    inference_precision: str, performance_hint: str, threads: int | None, cache_dir: Path | None
) -> dict[str, object]:
    """The CPU plugin properties for these options (OpenVINO's documented string keys)."""
    properties: dict[str, object] = {
        "INFERENCE_PRECISION_HINT": inference_precision,
        "PERFORMANCE_HINT": performance_hint.upper(),
    }
    if threads:
        properties["INFERENCE_NUM_THREADS"] = threads
    if cache_dir is not None:
        properties["CACHE_DIR"] = str(cache_dir)
    return properties


def check_cpu_supports(inference_precision: str, capabilities: list[str]) -> None:
    """bf16 was asked for explicitly: refuse it on a CPU without bf16 instead of silently running f32."""
    if inference_precision == "bf16" and "BF16" not in capabilities:
        raise UnsupportedError(
            "this CPU has no bf16 support (OpenVINO lists only " + ", ".join(capabilities)
            + "); use --inference-precision f32."
        )


class OpenVinoBackend:
    name = "openvino"

    def __init__(
        self, path: str | Path, inference_precision: str = "f32", performance_hint: str = "latency",
        threads: int | None = None, cache_dir: str | Path | None = None,
    ):
        from clca_deploy.extras import require

        RuntimeOptions(inference_precision=inference_precision, performance_hint=performance_hint, threads=threads).validate()
        require("openvino", "the openvino runtime")
        import openvino as ov

        from clca_deploy.metadata import read_onnx_metadata

        info = read_onnx_metadata(path)
        core = ov.Core()
        check_cpu_supports(inference_precision, list(core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")))
        cache = Path(cache_dir) if cache_dir is not None else None
        if cache is not None:
            cache.mkdir(parents=True, exist_ok=True)
        properties = compile_properties(inference_precision, performance_hint, threads, cache)
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
                "inference_precision": self.inference_precision, "performance_hint": performance_hint,
            },
        )
        self.providers = (f"OpenVINO {ov.__version__} CPU ({self.inference_precision}, {performance_hint})",)
        # One infer request, used by one call at a time: requests are not thread-safe, and the Triton
        # Python model may call from several threads.
        self._request = self._compiled.create_infer_request()
        self._lock = threading.Lock()

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        batch = check_batch(batch, self.input_spec)
        with self._lock:
            self._request.infer({0: batch})
            return np.array(self._request.get_output_tensor(0).data, dtype=np.float32, copy=True)

    def __enter__(self) -> "OpenVinoBackend":
        return self

    def __exit__(self, *exc: object) -> None:
        self._request = None
        self._compiled = None


def _last_line(message: str) -> str:
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    return lines[-1] if lines else "unknown error"

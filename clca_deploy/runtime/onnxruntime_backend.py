"""onnxruntime backend: CPU, or the CUDA / TensorRT execution providers of onnxruntime-gpu."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from clca_deploy.errors import ClcaDeployError
from clca_deploy.runtime.base import InputSpec, ModelDescription, check_batch

PROVIDER_NAMES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}


def choose_providers(requested: str, available: list[str]) -> list[str]:
    """Execution providers for a request: 'auto' takes the best available; an explicit one must exist."""
    if requested == "auto":
        chosen = [PROVIDER_NAMES[p] for p in ("tensorrt", "cuda") if PROVIDER_NAMES[p] in available]
        return chosen + ["CPUExecutionProvider"]
    if requested not in PROVIDER_NAMES:
        raise ClcaDeployError(f"unknown onnxruntime provider '{requested}'; use auto, cpu, cuda or tensorrt.")
    wanted = PROVIDER_NAMES[requested]
    if wanted not in available:
        raise ClcaDeployError(
            f"onnxruntime here has no {wanted} (it has {', '.join(available)}); "
            'install the GPU build with pip install "clca-deploy[gpu]", or use --provider cpu.'
        )
    # CPU stays as the fallback for the few nodes a GPU provider may decline.
    return [wanted] + (["CPUExecutionProvider"] if wanted != "CPUExecutionProvider" else [])


class OnnxRuntimeBackend:
    name = "onnxruntime"

    def __init__(self, path: str | Path, provider: str = "cpu", threads: int | None = None):
        from clca_deploy.extras import require

        require("onnxruntime", "running an ONNX file")
        import onnxruntime as ort

        from clca_deploy.metadata import read_onnx_metadata

        info = read_onnx_metadata(path)
        options = ort.SessionOptions()
        options.log_severity_level = 3
        if threads:
            options.intra_op_num_threads = threads
        providers = choose_providers(provider, ort.get_available_providers())
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise ClcaDeployError(f"onnxruntime cannot load {path}: {str(exc).splitlines()[0]}") from exc
        model_input = self.session.get_inputs()[0]
        fixed = model_input.shape[0] if isinstance(model_input.shape[0], int) else None
        self.input_spec = InputSpec(name=model_input.name, img_size=info.img_size, batch=fixed)
        self.description = ModelDescription(
            model=info.model,
            keep_rate=info.keep_rate,
            num_classes=info.num_classes,
            preprocess=info.preprocess,
            class_names=info.class_names,
            precision=info.precision,
            extra={"token_schedule": info.token_schedule},
        )
        self.providers = tuple(self.session.get_providers())

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        batch = check_batch(batch, self.input_spec)
        return self.session.run(None, {self.input_spec.name: batch})[0]

    def __enter__(self) -> "OnnxRuntimeBackend":
        return self

    def __exit__(self, *exc: object) -> None:
        self.session = None

"""onnxruntime backend: CPU, or the CUDA / TensorRT execution providers of onnxruntime-gpu."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clca_deploy.errors import ClcaDeployError
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
from clca_deploy.runtime.options import check_threads, cli_option, threads_option
from clca_deploy.system import checks
from clca_deploy.system.checks import Check, Context

PROVIDER_NAMES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}
GPU_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider")
# Every one of these installs the same `onnxruntime` module; two at once overwrite each other.
DISTRIBUTIONS = ("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino", "onnxruntime-directml")
CONFLICT_HINT = (
    "pip uninstall -y onnxruntime onnxruntime-gpu, then install one: "
    'pip install "clca-deploy[cpu]" or "clca-deploy[gpu]"'
)
JETSON_HINT = "on Jetson, onnxruntime-gpu must be a build for JetPack's CUDA, not PyPI's; see docs/jetson.md"


@dataclass(frozen=True)
class OnnxRuntimeOptions:
    """onnxruntime's settings: the execution provider and the CPU threads."""

    provider: str = cli_option("cpu", "--provider", "onnxruntime execution provider: auto, cpu, cuda, tensorrt.")
    threads: int | None = threads_option()

    def __post_init__(self) -> None:
        check_threads(self.threads)


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
            f"install the GPU build with {install_command('gpu')}, or use --provider cpu."
        )
    # CPU stays as the fallback for the few nodes a GPU provider may decline.
    return [wanted] + (["CPUExecutionProvider"] if wanted != "CPUExecutionProvider" else [])


def provider_device(session, providers: tuple[str, ...]) -> int | None:
    """The CUDA device a session's GPU provider runs on, or None when it runs on the CPU."""
    gpu = [provider for provider in providers if provider in GPU_PROVIDERS]
    if not gpu:
        return None
    try:
        return int(session.get_provider_options()[gpu[0]].get("device_id", 0))
    except Exception:  # an onnxruntime without provider options: its default device
        return 0


class OnnxRuntimeBackend(BackendBase):
    """An ONNX file from `clca-deploy export` or `calibrate` in an onnxruntime InferenceSession.

    The session's providers are what actually runs (a CUDA request that fell back to the CPU shows here).
    """

    name = "onnxruntime"

    def __init__(self, path: str | Path, options: OnnxRuntimeOptions = OnnxRuntimeOptions()):
        RUNTIME.require("running an ONNX file")
        import onnxruntime as ort

        from clca_deploy.metadata import read_onnx_metadata

        info = read_onnx_metadata(path)
        session_options = ort.SessionOptions()
        session_options.log_severity_level = 3
        if options.threads:
            session_options.intra_op_num_threads = options.threads
        providers = choose_providers(options.provider, ort.get_available_providers())
        try:
            self.session = ort.InferenceSession(str(path), session_options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise ClcaDeployError(f"onnxruntime cannot load {path}: {str(exc).splitlines()[0]}") from exc
        model_input = self.session.get_inputs()[0]
        fixed = model_input.shape[0] if isinstance(model_input.shape[0], int) else None
        self.input_spec = InputSpec(name=model_input.name, img_size=info.img_size, batch=fixed)
        self.description = ModelDescription(
            model=info.model, keep_rate=info.keep_rate, num_classes=info.num_classes, preprocess=info.preprocess,
            class_names=info.class_names, precision=info.precision, extra={"token_schedule": info.token_schedule},
        )
        self.providers = tuple(self.session.get_providers())
        self.device_index = provider_device(self.session, self.providers)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        batch = check_batch(batch, self.input_spec)
        return self.session.run(None, {self.input_spec.name: batch})[0]

    def close(self) -> None:
        self.session = None


def probe(ctx: Context) -> Check:
    """`doctor`'s onnxruntime row: which build is installed, whether it imports, whether it sees the GPU."""
    installed = {name: version for name in DISTRIBUTIONS if (version := checks.dist_version(name))}
    if not installed:
        fix = install_command("gpu" if ctx.gpus and not ctx.on_jetson else "cpu")
        return Check("onnxruntime", "missing", "not installed (runs .onnx files: predict, bench, calibrate)", fix)
    found = ", ".join(f"{name} {version}" for name, version in installed.items())
    if len(installed) > 1:
        return Check(
            "onnxruntime", "error", f"{found} are all installed and overwrite each other's onnxruntime module", CONFLICT_HINT,
        )
    try:
        import onnxruntime

        providers = list(onnxruntime.get_available_providers())
    except Exception as exc:  # a GPU build missing its CUDA libraries fails at import
        return Check("onnxruntime", "error", f"{found} does not import: {exc}", CONFLICT_HINT)
    names = ", ".join(provider.removesuffix("ExecutionProvider") for provider in providers)
    detail = f"{found}; providers: {names}"
    if ctx.gpus and "CUDAExecutionProvider" not in providers:
        fix = JETSON_HINT if ctx.on_jetson else install_command("gpu")
        return Check("onnxruntime", "note", f"{detail} (no CUDA provider: .onnx files run on the CPU here)", fix)
    return Check("onnxruntime", "ok", detail)


RUNTIME = RuntimeSpec(
    name="onnxruntime",
    backend=OnnxRuntimeBackend,
    options=OnnxRuntimeOptions,
    suffixes=(".onnx",),
    file_format=ONNX_FILE,
    summary="the default for .onnx; CPU, or CUDA with onnxruntime-gpu",
    requires=("onnxruntime",),
    probes=(("onnxruntime", probe),),
    distributions=("onnxruntime", "onnxruntime-gpu"),
    triton=TritonClassifier(config={"platform": "onnxruntime_onnx"}, model_file="model.onnx"),
)

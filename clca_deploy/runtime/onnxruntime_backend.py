"""onnxruntime backend: CPU, or the CUDA / TensorRT execution providers of onnxruntime-gpu."""

from __future__ import annotations

import contextlib
import importlib
import io
import logging
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from clca_deploy.errors import ClcaDeployError
from clca_deploy.extras import CUDA_MAJORS, cuda_major_for_driver, gpu_extra, gpu_install_line, install_command
from clca_deploy.logs import logger
from clca_deploy.runtime.base import (
    ONNX_FILE,
    BackendBase,
    InputSpec,
    ModelDescription,
    RuntimeSpec,
    TritonClassifier,
    check_batch,
)
from clca_deploy.runtime.options import check_device, check_threads, cli_option, device_option, threads_option
from clca_deploy.system import checks
from clca_deploy.system.checks import Check, Context, major_version
from clca_deploy.terminal import printable

PROVIDER_NAMES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}
GPU_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider")
CUDA, CPU = PROVIDER_NAMES["cuda"], PROVIDER_NAMES["cpu"]
# Every one of these installs the same `onnxruntime` module; two at once overwrite each other.
DISTRIBUTIONS = ("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino", "onnxruntime-directml")
CONFLICT_HINT = (
    "pip uninstall -y onnxruntime onnxruntime-gpu, then install one: "
    'pip install "clca-deploy[cpu]" or "clca-deploy[gpu]"'
)
JETSON_HINT = "on Jetson, onnxruntime-gpu must be a build for JetPack's CUDA, not PyPI's; see docs/jetson.md"


class ProviderFallbackError(ClcaDeployError):
    """A GPU execution provider asked for by name that the session did not get (it fell back to the CPU), or
    one that failed while running (onnxruntime would have retried on the CPU).

    Not an UnsupportedError on purpose: bench marks this row "failed" (a broken GPU install), not "skipped".
    """


@dataclass(frozen=True)
class OnnxRuntimeOptions:
    """onnxruntime's settings: the execution provider and the CPU threads.

    The default provider, ``auto``, is the GPU (CUDA) where onnxruntime-gpu has CUDA and the GPU works, else
    the CPU; each session logs which it got and why. The TensorRT provider runs only when named: it builds
    TensorRT engines while the session opens (minutes; again for each new batch size).
    """

    provider: Literal["auto", "cpu", "cuda", "tensorrt"] = cli_option(
        "auto", "--provider",
        "onnxruntime execution provider: auto (CUDA where onnxruntime-gpu and the GPU work, else the CPU; "
        "logged), cpu, cuda, or tensorrt (onnxruntime's TensorRT provider, only when named).",
    )
    threads: int | None = threads_option()
    device: int = device_option()  # the CUDA device of the cuda and tensorrt providers (and of auto)

    def __post_init__(self) -> None:
        if self.provider != "auto" and self.provider not in PROVIDER_NAMES:
            raise ClcaDeployError(f"unknown onnxruntime provider '{self.provider}'; use auto, cpu, cuda or tensorrt.")
        check_threads(self.threads)
        check_device(self.device)


def gpu_problem(device: int) -> str | None:
    """Why CUDA device ``device`` cannot run a session (no driver, no such device), None when it can."""
    from clca_deploy.system.gpu import gpu_unavailable_reason

    try:
        return gpu_unavailable_reason(device)
    except Exception as exc:  # a broken driver is a reason to stay on the CPU, not a crash
        return f"the GPU check failed ({type(exc).__name__}: {exc})"


def auto_choice(available: list[str], problem: str | None) -> tuple[list[str], str]:
    """``--provider auto``: (providers, why) for what onnxruntime offers and the GPU's ``problem`` (None: it works)."""
    if CUDA not in available:
        return [CPU], "this onnxruntime has no CUDA provider; the GPU build is onnxruntime-gpu"
    if problem is not None:
        return [CPU], f"onnxruntime-gpu is installed but {problem}"
    return [CUDA, CPU], "onnxruntime-gpu has CUDA and the GPU works; --provider cpu for the CPU"


def choose_providers(requested: str, available: list[str], problem: str | None = None) -> list[str]:
    """Execution providers for a request: 'auto' as ``auto_choice`` says; an explicit one must exist."""
    if requested == "auto":
        return auto_choice(available, problem)[0]
    if requested not in PROVIDER_NAMES:
        raise ClcaDeployError(f"unknown onnxruntime provider '{requested}'; use auto, cpu, cuda or tensorrt.")
    wanted = PROVIDER_NAMES[requested]
    if wanted not in available:
        raise ClcaDeployError(
            f"onnxruntime here has no {wanted} (it has {', '.join(available)}); "
            f"install the GPU build, {gpu_install_line()}, or use --provider cpu."
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


def build_cuda_version() -> str | None:
    """The CUDA version the installed onnxruntime was built for ("13.0"); None for CPU builds, GPU ones before 1.21."""
    try:
        info = importlib.import_module("onnxruntime.capi.build_and_package_info")
    except Exception:  # a broken install says so in its own row; here it only means "unknown"
        return None
    version = getattr(info, "cuda_version", None)
    return version if isinstance(version, str) and re.fullmatch(r"\d+(\.\d+)*", version) else None



def _first_line(exc: Exception) -> str:
    """An exception as one line: onnxruntime's messages run over several, and some are empty."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def cuda_libraries_fix(ort_version: str, cuda_version: str | None, on_jetson: bool) -> str:
    """Where the CUDA and cuDNN libraries of the installed onnxruntime-gpu build come from."""
    if on_jetson:
        return JETSON_HINT
    if cuda_version is None:  # before 1.21 the wheel has no [cuda,cudnn] extras
        return f"put the CUDA and cuDNN libraries onnxruntime-gpu {ort_version} was built for on LD_LIBRARY_PATH"
    major = major_version(cuda_version)
    return f'pip install "onnxruntime-gpu[cuda,cudnn]=={ort_version}" (its CUDA {major} and cuDNN 9 libraries)'


def _load_reason(printed: str) -> str:
    """onnxruntime's own words on what did not load, from what it printed (on stdout) while opening the session."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", printed)
    lines = [line.strip() for line in text.splitlines() if line.strip().startswith(("Failed to load", "EP Error"))]
    return "; ".join(lines[:3])


def on_device(providers: list[str], device: int) -> list:
    """The providers as InferenceSession takes them, the GPU ones with their CUDA device."""
    return [(name, {"device_id": device}) if name in GPU_PROVIDERS else name for name in providers]


def open_session(ort, model, session_options, providers: list[str], device: int = 0):
    """An InferenceSession, plus what onnxruntime printed while opening it (kept off our stdout: --json).

    For a GPU provider, onnxruntime-gpu's preload_dlls (1.21+) first loads the CUDA and cuDNN libraries of
    pip's nvidia-* packages, which the loader would not find on its own; what failed to load is the reason
    a provider is missing. Once open, the session's own retry on the CPU after a GPU failure is turned off.
    """
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        if any(provider in GPU_PROVIDERS for provider in providers) and hasattr(ort, "preload_dlls"):
            try:
                ort.preload_dlls()
            except Exception as exc:  # a failed preload is one more reason, not the error itself
                print(f"Failed to load the CUDA libraries: {exc}")
        session = ort.InferenceSession(model, session_options, providers=on_device(providers, device))
    if hasattr(session, "disable_fallback"):  # run() would otherwise retry on the CPU and say so on stdout
        session.disable_fallback()
    return session, printed.getvalue()


def fallback_message(ort, missing: list[str], got: tuple[str, ...], printed: str) -> str:
    """One line: which providers the session did not get, what it got, the likely cause and the fix."""
    from clca_deploy.system.jetson import is_jetson

    cuda_version = build_cuda_version()
    version = str(getattr(ort, "__version__", "?"))
    if cuda_version:
        major = major_version(cuda_version)
        cause = (
            f"its CUDA {major}.x and cuDNN 9 libraries are missing or of another major, "
            f"or the driver is older than CUDA {major}"
        )
    else:
        cause = "its CUDA and cuDNN libraries are missing or of another major, or the driver is too old"
    if "TensorrtExecutionProvider" in missing:
        cause += "; the TensorRT provider also needs TensorRT 10's libnvinfer.so.10 on LD_LIBRARY_PATH"
    reason = _load_reason(printed)
    return (
        f"onnxruntime {version} offers {', '.join(missing)} but the session got only {', '.join(got)}: "
        f"{cause}{f' ({reason})' if reason else ''}; {cuda_libraries_fix(version, cuda_version, is_jetson())}, "
        "and check with `clca-deploy doctor`"
    )


def check_providers(ort, requested: str, asked: list[str], got: tuple[str, ...], printed: str) -> None:
    """Never a silent CPU run: a provider asked for by name that the session lacks is an error; 'auto' warns
    when it asked for a GPU and runs on the CPU, and its providers say what it got."""
    missing = [provider for provider in asked if provider in GPU_PROVIDERS and provider not in got]
    if requested != "auto" and missing:
        raise ProviderFallbackError(f"--provider {requested}: {fallback_message(ort, missing, got, printed)}.")
    if requested == "auto" and missing and not any(provider in GPU_PROVIDERS for provider in got):
        warnings.warn(f"--provider auto runs on the CPU: {fallback_message(ort, missing, got, printed)}.", stacklevel=3)


class OnnxRuntimeBackend(BackendBase):
    """An ONNX file from `clca-deploy export` or `calibrate` in an onnxruntime InferenceSession.

    The session's providers are what actually runs: a provider asked for by name that fell back to the CPU
    is an error, and 'auto' records what it got.
    """

    name = "onnxruntime"

    def __init__(self, path: str | Path, options: OnnxRuntimeOptions = OnnxRuntimeOptions()):
        RUNTIME.require("running an ONNX file")
        import onnxruntime as ort

        from clca_deploy.metadata import read_onnx_metadata

        info = read_onnx_metadata(path)
        info.refuse_other_runtime(self.name, str(path))
        session_options = ort.SessionOptions()
        session_options.log_severity_level = 3
        if options.threads:
            session_options.intra_op_num_threads = options.threads
        providers, why = self._providers(ort, options)
        try:
            self.session, printed = open_session(ort, str(path), session_options, providers, options.device)
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise ClcaDeployError(f"onnxruntime cannot load {path}: {_first_line(exc)}") from exc
        self.providers = tuple(self.session.get_providers())
        check_providers(ort, options.provider, providers, self.providers, printed)
        model_input = self.session.get_inputs()[0]
        fixed = model_input.shape[0] if isinstance(model_input.shape[0], int) else None
        self.input_spec = InputSpec(name=model_input.name, img_size=info.img_size, batch=fixed)
        self.description = ModelDescription(
            model=info.model, keep_rate=info.keep_rate, num_classes=info.num_classes, preprocess=info.preprocess,
            class_names=info.class_names, precision=info.precision, extra={"token_schedule": info.token_schedule},
        )
        self.device_index = provider_device(self.session, self.providers)
        if why is not None and self.providers[:1] == tuple(providers[:1]):  # a fallback has warned already
            # Said where it is news: a GPU build's choice; a CPU build's in -v only.
            level = logging.INFO if CUDA in ort.get_available_providers() else logging.DEBUG
            logger.log(level, printable(f"{Path(path).name}: onnxruntime on {self.device_label} (--provider auto: {why})"))

    @staticmethod
    def _providers(ort, options: OnnxRuntimeOptions) -> tuple[list[str], str | None]:
        """The providers to ask for, and for 'auto' why (the GPU is checked only where onnxruntime has CUDA)."""
        available = list(ort.get_available_providers())
        if options.provider != "auto":
            return choose_providers(options.provider, available), None
        return auto_choice(available, gpu_problem(options.device) if CUDA in available else None)

    @property
    def device_label(self) -> str:
        """"CPU", "CUDA:N", or "TensorRT-EP CUDA:N" where onnxruntime's TensorRT provider runs the model."""
        if self.providers[:1] == ("TensorrtExecutionProvider",):
            return f"TensorRT-EP CUDA:{self.device_index}"
        return super().device_label

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        batch = check_batch(batch, self.input_spec)
        try:
            return self.session.run(None, {self.input_spec.name: batch})[0]
        except Exception as exc:
            gpu = [provider for provider in self.providers if provider in GPU_PROVIDERS]
            if not gpu:
                raise
            # The session's CPU retry is off (it would time the CPU under a GPU label): a failed row instead.
            raise ProviderFallbackError(f"onnxruntime's {gpu[0]} failed while running: {_first_line(exc)}") from exc

    def close(self) -> None:
        self.session = None


def probe(ctx: Context) -> Check:
    """`doctor`'s onnxruntime row: which build, whether it imports, and on a GPU whether a CUDA session runs there."""
    installed = {name: version for name in DISTRIBUTIONS if (version := checks.dist_version(name))}
    if not installed:
        fix = install_command(gpu_extra(ctx.driver_major, ctx.on_jetson) if ctx.gpus else "cpu")
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
        fix = JETSON_HINT if ctx.on_jetson else install_command(gpu_extra(ctx.driver_major, False))
        return Check("onnxruntime", "note", f"{detail} (no CUDA provider: .onnx files run on the CPU here)", fix)
    if not ctx.gpus:
        return Check("onnxruntime", "ok", detail)
    # The provider list says only that the CUDA provider is built in; whether its libraries load, a session tells.
    return _cuda_check(onnxruntime, ctx, detail)


def driver_fix(cuda_version: str, driver: int, on_jetson: bool) -> str:
    """The install that fits a driver older than the onnxruntime-gpu build's CUDA major (extras.CUDA_MAJORS)."""
    if on_jetson:
        return JETSON_HINT
    build = major_version(cuda_version)
    newer_driver = f"a driver for CUDA {build}" + (f" ({CUDA_MAJORS[build].driver} or newer)" if build in CUDA_MAJORS else "")
    fitting = cuda_major_for_driver(driver)
    if fitting is not None:
        return f"{install_command(CUDA_MAJORS[fitting].gpu)} (onnxruntime-gpu built for CUDA {fitting}), or {newer_driver}"
    return f"install {newer_driver}"


def _cuda_check(ort, ctx: Context, detail: str) -> Check:
    cuda_version = build_cuda_version()
    driver = ctx.driver_major
    if cuda_version and driver is not None and major_version(cuda_version) > driver:
        return Check(
            "onnxruntime", "error",
            f"{detail}; built for CUDA {cuda_version}, but the driver supports CUDA {driver}: "
            "the CUDA provider cannot start",
            driver_fix(cuda_version, driver, ctx.on_jetson),
        )
    failure = cuda_session_failure(ort)
    if failure:
        version = str(getattr(ort, "__version__", "?"))
        needs = f"CUDA {major_version(cuda_version)}.x and cuDNN 9" if cuda_version else "CUDA and cuDNN"
        return Check(
            "onnxruntime", "error",
            f"{detail}; the CUDA provider does not load ({failure}): "
            f"its {needs} libraries are missing or of another major",
            cuda_libraries_fix(version, cuda_version, ctx.on_jetson),
        )
    return Check("onnxruntime", "ok", f"{detail}; a CUDA session runs on GPU {ctx.gpus[0].index}")


def _tiny_model() -> bytes:
    """A one-node ONNX graph (Relu), in an opset and IR version every supported onnxruntime reads."""
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "doctor",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8).SerializeToString()


def cuda_session_failure(ort) -> str | None:
    """Why a tiny session with the CUDA provider does not run on the GPU, None when it does."""
    session_options = ort.SessionOptions()
    session_options.log_severity_level = 3
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    try:
        session, printed = open_session(ort, _tiny_model(), session_options, providers)
    except Exception as exc:
        return f"a CUDA session cannot be created: {_first_line(exc)}"
    got = list(session.get_providers())
    if "CUDAExecutionProvider" not in got:
        reason = _load_reason(printed)
        return f"a CUDA session fell back to {', '.join(got)}" + (f": {reason}" if reason else "")
    try:
        session.run(None, {"x": np.ones((1, 4), dtype=np.float32)})
    except Exception as exc:  # loads but cannot run here: a GPU the build has no kernels for, a busy GPU...
        return f"a CUDA session cannot run: {_first_line(exc)}"
    return None


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

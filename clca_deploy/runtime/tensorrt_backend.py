"""TensorRT engine backend: a plan built by `clca-deploy build-trt`, checked against its sidecar before loading, or
one built elsewhere (trtexec, Polygraphy) with the ONNX file it came from (``--engine-source``), checked against
that file once loaded (tensorrt/foreign.py).

Host buffers are page-locked and copies go through one CUDA stream, which works the same on discrete
GPUs and on Jetson's shared memory. CUDA work runs in the device's primary context (the one the CUDA
runtime, TensorRT and torch share), made current only for the duration of each call. One call runs
at a time: the execution context, the stream and the buffers are shared, and the Triton Python model
may call from several threads.
"""

from __future__ import annotations

import hashlib
import re
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clca_deploy import extras
from clca_deploy.errors import ClcaDeployError, UnsupportedError
from clca_deploy.extras import CUDA_MAJORS, cuda_major_for_driver, driver_requirement, install_command
from clca_deploy.runtime.base import (
    TENSORRT_ENGINE,
    BackendBase,
    InputSpec,
    ModelDescription,
    RuntimeSpec,
    TritonClassifier,
    check_batch,
)
from clca_deploy.runtime.options import as_path, check_device, cli_option, device_option
from clca_deploy.system import checks
from clca_deploy.system.checks import Check, Context, major_version
from clca_deploy.metadata import OnnxModelInfo
from clca_deploy.tensorrt.plan import (
    MAX_DLA_CORE, BatchProfile, build_mode_summary, check_dla_cores, parse_trt_version, profile_option, profile_reaching,
)
from clca_deploy.tensorrt.sidecar import BUILD_HINT, EngineSidecar, check_sidecar_matches, load_sidecar, sidecar_path
from clca_deploy.tensorrt.toolkit import (
    JETSON_CUDA_BINDING_HINT,
    JETSON_TENSORRT_HINT,
    TENSORRT_DISTRIBUTIONS,
    TensorRTToolkit,
    cuda_problem,
    installed_tensorrt_wheels,
    trt_extra,
)


@dataclass(frozen=True)
class TensorRTOptions:
    """TensorRT's settings: the GPU, the source ONNX of an engine built elsewhere, a DLA core, and (for tests and
    the API) which CUDA binding copies the data."""

    device: int = device_option()
    engine_source: Path | None = cli_option(
        None, "--engine-source",
        "TensorRT: the ONNX file an engine without a clca-deploy sidecar (trtexec, Polygraphy) was built from; it gives "
        "the preprocessing and class names, and the engine's I/O is checked against it.",
    )
    dla_core: int | None = cli_option(
        None, "--dla-core", "TensorRT: the DLA core a DLA engine runs on (default: the one its sidecar records)."
    )
    cuda_binding: str | None = None  # "pycuda" or "cuda-python"; None: whichever is installed

    def __post_init__(self) -> None:
        check_device(self.device)
        as_path(self, "engine_source")
        core = self.dla_core
        if core is not None and (isinstance(core, bool) or not isinstance(core, int) or not 0 <= core <= MAX_DLA_CORE):
            raise ClcaDeployError(f"--dla-core must be a DLA core index (0, 1), got {core}.")


@dataclass(frozen=True)
class _Facts:
    """What the backend runs an engine with, from its sidecar or from its checked --engine-source."""

    info: OnnxModelInfo
    profile: BatchProfile
    precision: str
    extra: dict


def _read_files(path: Path, engine_source: Path | None):
    """(sidecar or None, source or None): every file the engine comes with, read and checked before TensorRT."""
    from clca_deploy.tensorrt.foreign import check_source_matches_sidecar, missing_sidecar, read_engine_source

    source = read_engine_source(engine_source) if engine_source is not None else None
    if not sidecar_path(path).exists():
        if source is None:
            raise missing_sidecar(path)
        return None, source
    sidecar = load_sidecar(path)  # checked whole: file problems are errors on any machine
    if source is not None:
        check_source_matches_sidecar(source, sidecar, path)
    return sidecar, None


def _sidecar_facts(sidecar: EngineSidecar, warning: str | None) -> _Facts:
    extra = {
        "builder_flags": list(sidecar.builder_flags), "strongly_typed": sidecar.strongly_typed,
        "optimization_level": sidecar.optimization_level, "warnings": [warning] if warning else [],
    }
    return _Facts(sidecar.info, sidecar.profile, sidecar.precision, extra)


def _load_toolkit(path: Path, sidecar: EngineSidecar | None, device: int) -> TensorRTToolkit:
    from clca_deploy.tensorrt.toolkit import load_toolkit

    try:
        return load_toolkit(device)
    except UnsupportedError as exc:
        built = f" (built for TensorRT {sidecar.tensorrt_version} on {sidecar.gpu_name})" if sidecar is not None else ""
        raise UnsupportedError(f"cannot run {path.name}{built}: {exc}") from exc


def _foreign_facts(engine) -> _Facts:
    """An engine built elsewhere: its precision is unknown (trtexec --best may run any layer in fp16 or int8)."""
    extra = {"engine_source": str(engine.source.path), "onnx_precision": engine.info.precision, "warnings": []}
    return _Facts(engine.info, engine.profile, "unknown", extra)


class TensorRTBackend(BackendBase):
    """A plan from `clca-deploy build-trt`, loaded after its sidecar says it fits this TensorRT and GPU."""

    name = "tensorrt"

    def __init__(self, path: str | Path, options: TensorRTOptions = TensorRTOptions()):
        from clca_deploy.tensorrt.cuda import current, open_binding

        path = Path(path)
        sidecar, source = _read_files(path, options.engine_source)
        toolkit = _load_toolkit(path, sidecar, options.device)
        gpu, plan, warning = toolkit.gpu, path.read_bytes(), None
        if sidecar is not None:
            warning = check_sidecar_matches(sidecar, toolkit.version_string, gpu.name, gpu.compute_capability)
            if warning:  # checked before deserializing: a foreign plan can crash TensorRT
                warnings.warn(warning, stacklevel=2)
            if sidecar.engine_sha256 not in (None, hashlib.sha256(plan).hexdigest()):
                raise ClcaDeployError(
                    f"{path.name} does not match its sidecar (another build, or an interrupted one); {BUILD_HINT}."
                )
        dla_core = options.dla_core if options.dla_core is not None else sidecar.dla_core if sidecar else None
        self.device_index = options.device
        self._lock = threading.Lock()
        self._cuda = open_binding(options.device, options.cuda_binding)
        self.providers = (f"TensorRT {toolkit.version_string} on {gpu.name} ({gpu.compute_capability}), {self._cuda.name}",)
        self._buffers: list[int] = []
        self._pinned: list[np.ndarray] = []
        self._stream = None
        try:
            with current(self._cuda):
                self._deserialize(toolkit, plan, path, source, dla_core, given=options.dla_core is not None)
                if sidecar is not None:
                    facts = _sidecar_facts(sidecar, warning)
                else:
                    facts = _foreign_facts(self._check_foreign(toolkit, source, path))
                self._describe(facts, toolkit, options.device, dla_core)
                self._load(toolkit, path, facts.info.img_size)
        except BaseException:
            self.close()
            raise

    def _deserialize(
        self, toolkit: TensorRTToolkit, plan: bytes, path: Path, source, dla_core: int | None, given: bool
    ) -> None:
        """The runtime (on DLA core ``dla_core``, ``given`` on the command line or else the sidecar's) and the engine."""
        from clca_deploy.tensorrt.foreign import cannot_load

        trt = toolkit.trt
        self._logger = trt.Logger(trt.Logger.WARNING)
        # Kept: the runtime must outlive its engine. A TensorRT that cannot start CUDA gives one line here.
        self._runtime = toolkit.create("Runtime", self._logger)
        if dla_core is not None:  # a DLA engine runs on the runtime's DLA core, which defaults to none (-1)
            remedy = "drop --dla-core" if given else "rebuild the engine without --dla-core"
            check_dla_cores(dla_core, self._runtime.num_DLA_cores, "TensorRT's runtime", remedy)
            self._runtime.DLA_core = dla_core
        self._engine = self._runtime.deserialize_cuda_engine(plan)
        if self._engine is None:
            if source is not None:
                raise cannot_load(path, source, toolkit.version_string)
            raise ClcaDeployError(f"TensorRT cannot load {path.name} (see its messages above); {BUILD_HINT}.")

    def _check_foreign(self, toolkit: TensorRTToolkit, source, path: Path):
        """An engine without a sidecar, loaded: its own I/O and profile checked against ``source``."""
        from clca_deploy.tensorrt.build import describe_io
        from clca_deploy.tensorrt.foreign import check_foreign_engine

        first_profile = lambda name: self._engine.get_tensor_profile_shape(name, 0)  # noqa: E731 (min, opt, max)
        return check_foreign_engine(source, describe_io(toolkit.trt, self._engine), first_profile, path.name)

    def _describe(self, facts: _Facts, toolkit: TensorRTToolkit, device: int, dla_core: int | None) -> None:
        info = facts.info
        self.profile = facts.profile
        self.description = ModelDescription(
            model=info.model, keep_rate=info.keep_rate, num_classes=info.num_classes, preprocess=info.preprocess,
            class_names=info.class_names, precision=facts.precision,
            extra={
                "token_schedule": info.token_schedule, "tensorrt_version": toolkit.version_string, **facts.extra,
                "profile": self.profile.to_dict(), "device": device, "dla_core": dla_core,
            },
        )

    def _load(self, toolkit: TensorRTToolkit, path: Path, img_size: int) -> None:
        """The execution context, and buffers bound once for the profile's largest batch."""
        trt = toolkit.trt
        fixed = self.profile.max if self.profile.min == self.profile.max else None
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        inputs = [n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if n not in inputs]
        if len(inputs) != 1 or not outputs:
            raise ClcaDeployError(f"{path.name} has inputs {inputs} and outputs {outputs}; expected one image input and logits.")
        self._input = inputs[0]
        self._output = "logits" if "logits" in outputs else outputs[0]
        self.input_spec = InputSpec(name=self._input, img_size=img_size, batch=fixed)
        self._context = self._engine.create_execution_context()

        # Buffers sized for the profile's largest batch, bound once; each call sets only its shape.
        max_shape = (self.profile.max, 3, img_size, img_size)
        if not self._context.set_input_shape(self._input, max_shape):
            raise ClcaDeployError(f"{path.name} does not accept input shape {max_shape}; {BUILD_HINT}.")
        out_volume = int(np.prod(tuple(self._context.get_tensor_shape(self._output))))
        self._host_in = self._pinned_buffer(max_shape, np.dtype(trt.nptype(self._engine.get_tensor_dtype(self._input))))
        self._host_out = self._pinned_buffer((out_volume,), np.dtype(trt.nptype(self._engine.get_tensor_dtype(self._output))))
        self._dev_in = self._device_buffer(self._host_in.nbytes)
        self._dev_out = self._device_buffer(self._host_out.nbytes)
        self._context.set_tensor_address(self._input, self._dev_in)
        self._context.set_tensor_address(self._output, self._dev_out)
        self._stream = self._cuda.stream()

    def _pinned_buffer(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        array = self._cuda.pinned(shape, dtype)
        self._pinned.append(array)
        return array

    def _device_buffer(self, nbytes: int) -> int:
        pointer = self._cuda.alloc(nbytes)
        self._buffers.append(pointer)
        return pointer

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        batch = check_batch(batch, self.input_spec)
        count, largest = len(batch), self.profile.max
        if count > largest:  # the engine was built for at most `largest` images per run
            return np.concatenate([self(batch[s : s + largest]) for s in range(0, count, largest)])
        if count < self.profile.min:
            raise ClcaDeployError(
                f"this engine was built for batches of {self.profile.min}..{largest}, got {count}; "
                f"rebuild it with a smaller minimum (e.g. {profile_option(profile_reaching(largest))})."
            )
        from clca_deploy.tensorrt.cuda import current

        with self._lock, current(self._cuda):
            return self._run(batch)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        cuda, count = self._cuda, len(batch)
        host_in = self._host_in[:count]
        host_in[...] = batch  # casts when the engine takes fp16 input
        if not self._context.set_input_shape(self._input, batch.shape):
            raise ClcaDeployError(f"the engine rejected input shape {batch.shape}.")
        cuda.copy_to_device(self._dev_in, host_in, self._stream)
        if not self._context.execute_async_v3(cuda.stream_handle(self._stream)):
            raise ClcaDeployError("TensorRT could not run the engine; see its messages above.")
        out_shape = tuple(self._context.get_tensor_shape(self._output))
        host_out = self._host_out[: int(np.prod(out_shape))].reshape(out_shape)
        cuda.copy_to_host(host_out, self._dev_out, self._stream)
        cuda.synchronize(self._stream)
        return host_out.astype(np.float32)  # a copy: the pinned buffer is reused by the next call

    def close(self) -> None:
        """Free device memory and TensorRT objects (inside the context that owns them), then release it."""
        if getattr(self, "_cuda", None) is None:
            return
        from clca_deploy.tensorrt.cuda import current

        with self._lock, current(self._cuda):
            self._context = self._engine = self._runtime = None
            for pointer in self._buffers:
                self._cuda.free(pointer)
            for array in self._pinned:
                self._cuda.free_pinned(array)
            if self._stream is not None:
                self._cuda.destroy_stream(self._stream)
            self._buffers, self._pinned, self._stream = [], [], None
            self._host_in = self._host_out = None
        self._cuda.release()
        self._cuda = None



def _driver_version(ctx: Context) -> str | None:
    """The newest CUDA the driver supports ("12.4"), as the first GPU reports it; None without a GPU."""
    return next((gpu.driver_version for gpu in ctx.gpus if gpu.driver_version), None)


def _server_fix(ctx: Context) -> str:
    """`pip install "clca-deploy[trt-cuNN]"` for this driver's CUDA ([trt] while there is no GPU to ask)."""
    extra = trt_extra(_driver_version(ctx))
    return install_command(extra) if extra else f"update the NVIDIA driver ({driver_requirement()})"


def probe_tensorrt(ctx: Context) -> Check:
    """`doctor`'s TensorRT row: installed, built for a CUDA this driver runs, importable, its build mode."""
    fix = JETSON_TENSORRT_HINT if ctx.on_jetson else _server_fix(ctx)
    if not extras.has_module("tensorrt"):
        shipped = ctx.jetson.tensorrt if ctx.jetson else None
        extra = f"; this JetPack ships TensorRT {shipped}" if shipped else ""
        return Check("TensorRT", "missing", f"not installed: needed for build-trt and .engine files{extra}", fix)
    problem = cuda_problem(installed_tensorrt_wheels(), _driver_version(ctx))
    if problem:  # it imports on any driver; its first CUDA call is what fails, inside build-trt
        return Check("TensorRT", "error", f"{problem[0]}: build-trt and .engine files cannot start", problem[1])
    try:
        import tensorrt

        version = str(tensorrt.__version__)
    except Exception as exc:  # a wheel without its NVIDIA libraries raises OSError/ImportError
        return Check("TensorRT", "error", f"installed but does not import: {exc}", fix)
    summary = build_mode_summary(parse_trt_version(version))
    status = "error" if summary.startswith("unsupported") else "ok"
    return Check("TensorRT", status, f"{version}: build-trt is {summary}", fix if status == "error" else None)


def _bindings_fix(driver: int | None, fallback: int) -> str:
    """pip's line for the cuda-bindings of the newest CUDA major this driver runs (``fallback`` when unknown)."""
    major = cuda_major_for_driver(driver) if driver is not None else fallback
    if major not in CUDA_MAJORS:
        return f"update the NVIDIA driver ({driver_requirement()})"
    return f'pip install "{CUDA_MAJORS[major].bindings}"'


def _clobbered_bindings(ctx: Context) -> Check | None:
    """cuda-python before 12.8 ships cuda/bindings itself, so beside the cuda-bindings distribution (torch
    2.10+ requires it) the two overwrote each other's files: an error, whatever the versions."""
    legacy, bindings = checks.dist_version("cuda-python"), checks.dist_version("cuda-bindings")
    release = re.match(r"(\d+)\.(\d+)", legacy or "")
    if not (bindings and release and (int(release.group(1)), int(release.group(2))) < (12, 8)):
        return None
    fix = _bindings_fix(ctx.driver_major, major_version(bindings))
    return Check(
        "CUDA bindings", "error",
        f"cuda-python {legacy} and cuda-bindings {bindings} both install the cuda.bindings module and overwrote "
        "each other's files", f"pip uninstall -y cuda-python cuda-bindings, then {fix}",
    )


def probe_cuda_bindings(ctx: Context) -> Check:
    """`doctor`'s CUDA bindings row: pycuda and/or cuda-python, and whether the driver is new enough for it."""
    found = []
    if extras.has_module("pycuda"):
        found.append(("pycuda", checks.dist_version("pycuda")))
    if extras.has_module("cuda.bindings") or extras.has_module("cuda.cuda"):
        clobbered = _clobbered_bindings(ctx)
        if clobbered:
            return clobbered
        # Recent cuda-python is a metapackage over cuda-bindings, whose version is the one that matters.
        bindings = checks.dist_version("cuda-bindings")
        found.append(("cuda-bindings", bindings) if bindings else ("cuda-python", checks.dist_version("cuda-python")))
    if not found:
        fix = JETSON_CUDA_BINDING_HINT if ctx.on_jetson else _server_fix(ctx)
        return Check("CUDA bindings", "missing", "neither pycuda nor cuda-python (TensorRT's host/device copies)", fix)
    detail = ", ".join(f"{name} {version or '(version unknown)'}" for name, version in found)
    driver = ctx.driver_major
    python_version = dict(found).get("cuda-bindings") or dict(found).get("cuda-python")
    if driver is not None and python_version and major_version(python_version) > driver:
        # cuda-bindings N.x needs a CUDA N driver; 12.x also runs on CUDA 13 drivers, not the reverse.
        return Check(
            "CUDA bindings", "error",
            f"{detail}: cuda-bindings {major_version(python_version)}.x needs a CUDA {major_version(python_version)} driver, "
            f"this one supports CUDA {driver}", _bindings_fix(driver, driver),
        )
    return Check("CUDA bindings", "ok", detail)


RUNTIME = RuntimeSpec(
    name="tensorrt",
    backend=TensorRTBackend,
    options=TensorRTOptions,
    suffixes=(".engine", ".plan"),
    file_format=TENSORRT_ENGINE,
    summary="engines from build-trt, on an NVIDIA GPU",
    requires=("tensorrt",),
    probes=(("TensorRT", probe_tensorrt), ("CUDA bindings", probe_cuda_bindings)),
    distributions=(*TENSORRT_DISTRIBUTIONS, "pycuda", "cuda-python", "cuda-bindings"),
    triton=TritonClassifier(
        config={"platform": "tensorrt_plan"}, model_file="model.plan", devices=("gpu",),
        wrong_device="a TensorRT engine runs only on a GPU; use --device cuda, or serve the ONNX file on CPU.",
        # Kept for people: which TensorRT and GPU the plan needs.
        companions=lambda path: {"model.plan.json": sidecar_path(path)},
    ),
)

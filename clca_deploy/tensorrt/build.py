"""ONNX -> TensorRT engine plus sidecar JSON, with the builder settings decided by ``plan``."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from clca_deploy.artifacts import atomic_output, check_output_path
from clca_deploy.errors import ClcaDeployError
from clca_deploy.metadata import OnnxFile
from clca_deploy.tensorrt.plan import (
    MAX_DLA_CORE,
    OPTIMIZATION_LEVELS,
    PRECISIONS,
    BatchProfile,
    BuildPlan,
    check_builder_options,
    check_dla_cores,
    on_dla,
    plan_build,
    profile_for,
)
from clca_deploy.tensorrt.sidecar import build_sidecar, sidecar_path
from clca_deploy.tensorrt.toolkit import TensorRTToolkit, load_toolkit
from clca_deploy.logs import log_info


RUNTIME_NAME = "tensorrt"  # the runtime that builds and runs engines, as files name it (metadata only_runtime)


# The builder's scratch memory; the largest GPUs have 192 GiB, so more is a typo.
MAX_WORKSPACE_GIB = 256


@dataclass(frozen=True)
class EngineConfig:
    """How to build: precision (which must match the ONNX file), batch range, workspace, timing cache, GPU, and
    the builder options `build-trt` offers besides (optimisation level, a Jetson's DLA core).

    Checked once, by ``validate()``, where a build starts (``build_engine``, or `build-trt`'s pipeline).
    """

    precision: str | None = "fp32"  # None: the ONNX file's own (`build-trt` without --fp16/--int8)
    batch: BatchProfile | None = None  # None: the ONNX's fixed batch, or 1,8,32 for a dynamic one
    workspace_gib: float = 2.0
    timing_cache: Path | None = None
    device: int = 0  # CUDA device index, as the driver numbers them (CUDA_VISIBLE_DEVICES applies)
    weak_typing: bool = False  # TensorRT 10's builder-flag path instead of a strongly typed network
    optimization_level: int | None = None  # builder_optimization_level 0..5; None: TensorRT's default (3)
    dla_core: int | None = None  # build for this DLA core (Jetson), layers it cannot run on the GPU; None: GPU only

    def validate(self) -> None:
        """Refuse values TensorRT would reject, before anything is read or built."""
        if self.precision is not None and self.precision not in PRECISIONS:
            raise ClcaDeployError(f"unknown precision '{self.precision}'; use one of {', '.join(PRECISIONS)}.")
        if not (0 < self.workspace_gib <= MAX_WORKSPACE_GIB):  # NaN and inf fail this too
            raise ClcaDeployError(f"--workspace must be in (0, {MAX_WORKSPACE_GIB}] GiB, got {self.workspace_gib}.")
        if isinstance(self.device, bool) or not isinstance(self.device, int) or self.device < 0:
            raise ClcaDeployError(f"--device must be a CUDA device index (0, 1, ...), got {self.device}.")
        low, high = OPTIMIZATION_LEVELS
        if self.optimization_level is not None and not _is_int_in(self.optimization_level, low, high):
            raise ClcaDeployError(
                f"--optimization-level must be {low}..{high} (TensorRT's default is 3), got {self.optimization_level}."
            )
        if self.dla_core is not None and not _is_int_in(self.dla_core, 0, MAX_DLA_CORE):
            raise ClcaDeployError(f"--dla-core must be a DLA core index (0, 1), got {self.dla_core}.")

    def check_options(self, trt_version: tuple[int, int, int], precision: str) -> None:
        """The builder options against this TensorRT, the engine's precision and this machine (a Jetson for DLA)."""
        from clca_deploy.system.jetson import is_jetson

        on_jetson = self.dla_core is not None and is_jetson()
        check_builder_options(trt_version, precision, self.dla_core, self.optimization_level, on_jetson)


def _is_int_in(value, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


@dataclass(frozen=True)
class EngineResult:
    """What a build wrote (the engine and its sidecar) and how TensorRT built it."""

    path: str
    sidecar: str
    precision: str
    tensorrt_version: str
    builder_flags: tuple[str, ...]
    strongly_typed: bool
    profile: BatchProfile
    size_bytes: int
    seconds: float
    notes: tuple[str, ...] = field(default_factory=tuple)
    optimization_level: int | None = None  # the level the builder used (None: TensorRT did not say)
    dla_core: int | None = None  # the DLA core the engine runs on, None: GPU only

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def network_flags(trt, version: tuple[int, int, int], plan: BuildPlan) -> int:
    """``create_network`` flags: STRONGLY_TYPED on 10.x unless the plan is weakly typed; none on 11.x.

    11.x types every network strongly. EXPLICIT_BATCH is never passed: ignored since 10.0, gone in 11.
    """
    if plan.strongly_typed and version[0] < 11:
        return 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    return 0


def _parse(trt, network, logger, onnx_path: Path) -> None:
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):  # from the file so external weights resolve
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        details = "; ".join(errors[:3]) or "no details"
        raise ClcaDeployError(
            f"TensorRT {trt.__version__} cannot parse {onnx_path}: {details}. "
            "Export it again with `clca-deploy export` (opset 17..20) and check the TensorRT op list."
        )


def _attach_timing_cache(trt_config, path: Path | None, log: Callable[[str], None]) -> None:
    data = path.read_bytes() if path is not None and path.exists() else b""
    cache = trt_config.create_timing_cache(data)
    if cache is None or not trt_config.set_timing_cache(cache, ignore_mismatch=False):
        # A cache from another TensorRT version or GPU only costs build time, so start afresh.
        log(f"timing cache {path} does not fit this TensorRT/GPU; starting a new one.")
        trt_config.set_timing_cache(trt_config.create_timing_cache(b""), ignore_mismatch=False)


def describe_io(trt, engine) -> list[dict[str, Any]]:
    """Name, direction, dtype and shape (-1 for dynamic) of every engine I/O tensor."""
    import numpy as np

    entries = []
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        mode = "input" if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT else "output"
        dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name))).name
        entries.append({"name": name, "mode": mode, "dtype": dtype, "shape": [int(d) for d in engine.get_tensor_shape(name)]})
    return entries


def _configure(trt, builder, config: EngineConfig, plan: BuildPlan, log: Callable[[str], None]):
    """The builder config: workspace, the plan's flags (precision with weak typing, GPU_FALLBACK with DLA), the
    optimisation level, the DLA core, the timing cache."""
    trt_config = builder.create_builder_config()
    trt_config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(config.workspace_gib * (1 << 30)))
    for flag in plan.builder_flags:
        trt_config.set_flag(getattr(trt.BuilderFlag, flag))
    if config.optimization_level is not None:
        trt_config.builder_optimization_level = config.optimization_level
    if config.dla_core is not None:  # every layer DLA can run goes there; GPU_FALLBACK (in the plan) takes the rest
        trt_config.default_device_type = trt.DeviceType.DLA
        trt_config.DLA_core = config.dla_core
    if config.timing_cache is not None:
        _attach_timing_cache(trt_config, Path(config.timing_cache), log)
    return trt_config


@dataclass(frozen=True)
class _Request:
    """What one build was asked for, resolved against the ONNX file before TensorRT is touched."""

    config: EngineConfig
    plan: BuildPlan
    profile: BatchProfile
    input_name: str
    onnx_batch: int | None
    img_size: int


@dataclass(frozen=True)
class _Built:
    plan_bytes: bytes
    io: list[dict[str, Any]]
    timing_cache: bytes | None
    optimization_level: int  # what the builder config reports it used


def _build(toolkit: TensorRTToolkit, onnx_path: Path, request: _Request, log: Callable[[str], None]) -> _Built:
    """Parse, configure and build inside the GPU's context; load the plan back for its real I/O."""
    trt, plan, profile = toolkit.trt, request.plan, request.profile
    logger = trt.Logger(trt.Logger.WARNING)
    builder = toolkit.create("Builder", logger)  # one line, not pybind11's nullptr TypeError, when CUDA fails it
    if request.config.dla_core is not None:  # before parsing: the builder knows the device's DLA cores
        check_dla_cores(request.config.dla_core, builder.num_DLA_cores)
    network = builder.create_network(network_flags(trt, toolkit.version, plan))
    _parse(trt, network, logger, onnx_path)
    trt_config = _configure(trt, builder, request.config, plan, log)
    if request.onnx_batch is None:  # static inputs get their profile from TensorRT automatically
        shape = lambda batch: (batch, 3, request.img_size, request.img_size)  # noqa: E731
        trt_profile = builder.create_optimization_profile()
        trt_profile.set_shape(request.input_name, shape(profile.min), shape(profile.opt), shape(profile.max))
        trt_config.add_optimization_profile(trt_profile)

    log(
        f"building a {plan.precision} engine ({'strongly' if plan.strongly_typed else 'weakly'} typed) with TensorRT "
        f"{toolkit.version_string} on {toolkit.gpu.name} for batch {profile.min}..{profile.max}"
    )
    serialized = builder.build_serialized_network(network, trt_config)
    if serialized is None:
        raise ClcaDeployError(
            "TensorRT could not build the engine (its messages above say why); "
            "a larger --workspace or a smaller batch range (--batch) often helps."
        )
    plan_bytes = bytes(memoryview(serialized))
    engine = toolkit.create("Runtime", logger).deserialize_cuda_engine(plan_bytes)  # its real I/O, for the sidecar
    if engine is None:
        raise ClcaDeployError("TensorRT built an engine it cannot load back; see the TensorRT messages above.")
    cache = bytes(memoryview(trt_config.get_timing_cache().serialize())) if request.config.timing_cache else None
    level = int(trt_config.builder_optimization_level)
    return _Built(plan_bytes=plan_bytes, io=describe_io(trt, engine), timing_cache=cache, optimization_level=level)


def check_engine_outputs(output: Path, config: EngineConfig) -> None:
    """The engine, its sidecar and the timing cache can be written: checked before a build (minutes)."""
    check_output_path(output)
    check_output_path(sidecar_path(output))
    if config.timing_cache is not None:
        check_output_path(config.timing_cache)


def build_engine(
    onnx_path: str | Path, output: str | Path, config: EngineConfig, log: Callable[[str], None] = log_info,
    toolkit: TensorRTToolkit | None = None,
) -> EngineResult:
    """Build ``output`` (a TensorRT plan) and ``output.json`` (its sidecar) from an exported ONNX file.

    ``toolkit`` is the caller's `load_toolkit(config.device)`, so a command checks TensorRT once.
    """
    from clca_deploy.metadata import read_onnx_file

    config.validate()
    toolkit = toolkit or load_toolkit(config.device)  # before reading anything: say what is missing first
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise ClcaDeployError(f"ONNX file not found: {onnx_path}. Export one with `clca-deploy export`.")
    output = Path(output)
    check_engine_outputs(output, config)
    onnx = read_onnx_file(onnx_path)
    onnx.info.refuse_other_runtime(RUNTIME_NAME, str(onnx_path))
    config.check_options(toolkit.version, config.precision or onnx.info.precision)
    return build_from_file(onnx, output, config, toolkit, log)


def build_from_file(
    onnx: OnnxFile, output: Path, config: EngineConfig, toolkit: TensorRTToolkit, log: Callable[[str], None] = log_info,
) -> EngineResult:
    """The build itself, from an ONNX file already read and a config and outputs already checked (by
    ``build_engine`` or `build-trt`'s pipeline): TensorRT parses the file; nothing else reads it again."""
    from clca_deploy.tensorrt.cuda import current, open_binding

    started = time.perf_counter()
    precision = config.precision or onnx.info.precision
    plan = on_dla(plan_build(toolkit.version, precision, onnx.info.precision, weak_typing=config.weak_typing), config.dla_core)
    profile = profile_for(onnx.fixed_batch, config.batch)
    request = _Request(config, plan, profile, onnx.input_name, onnx.fixed_batch, onnx.info.img_size)
    for note in plan.notes:
        log(note)
    binding = open_binding(config.device)  # TensorRT builds on the device whose context is current
    try:
        with current(binding):
            built = _build(toolkit, onnx.path, request, log)
    finally:
        binding.release()
    _write_engine(output, _sidecar(onnx, toolkit, request, built), built, config)
    return EngineResult(
        path=str(output), sidecar=str(sidecar_path(output)), precision=plan.precision,
        tensorrt_version=toolkit.version_string, builder_flags=plan.builder_flags, strongly_typed=plan.strongly_typed,
        profile=profile, size_bytes=output.stat().st_size, seconds=time.perf_counter() - started, notes=plan.notes,
        optimization_level=built.optimization_level, dla_core=config.dla_core,
    )


def _sidecar(onnx: OnnxFile, toolkit: TensorRTToolkit, request: _Request, built: _Built) -> dict[str, Any]:
    return build_sidecar(
        tensorrt_version=toolkit.version_string, gpu_name=toolkit.gpu.name,
        compute_capability=toolkit.gpu.compute_capability, plan=request.plan, io=built.io, profiles=[request.profile],
        onnx_sha256=onnx.sha256, keep_rate=onnx.info.keep_rate, onnx_metadata=onnx.props,
        engine_sha256=hashlib.sha256(built.plan_bytes).hexdigest(), dla_core=request.config.dla_core,
        optimization_level=built.optimization_level,
    )


def _write_engine(output: Path, sidecar: dict[str, Any], built: _Built, config: EngineConfig) -> None:
    # Both or neither: the engine stays a temporary file until its sidecar is in place, and the
    # sidecar's engine_sha256 lets the runtime catch the one torn state left (a crash between renames).
    with atomic_output(output) as engine_tmp:
        engine_tmp.write_bytes(built.plan_bytes)
        with atomic_output(sidecar_path(output)) as sidecar_tmp:
            sidecar_tmp.write_text(json.dumps(sidecar, indent=2) + "\n")
    if built.timing_cache is not None:
        with atomic_output(config.timing_cache) as cache_tmp:
            cache_tmp.write_bytes(built.timing_cache)

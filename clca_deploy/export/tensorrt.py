"""ONNX -> TensorRT engine plus sidecar JSON, with the builder settings decided by ``trt_plan``."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from clca_deploy.artifacts import atomic_output, check_output_path, sha256_file
from clca_deploy.errors import ClcaDeployError
from clca_deploy.export.trt_plan import (
    PRECISIONS,
    BatchProfile,
    BuildPlan,
    build_sidecar,
    parse_trt_version,
    plan_build,
    profile_for,
    sidecar_path,
)

INSTALL_HINT = 'install TensorRT and pycuda with pip install "clca-deploy[trt]" (on Jetson they come with JetPack)'


@dataclass(frozen=True)
class EngineConfig:
    """How to build: precision (which must match the ONNX file), batch range, workspace, timing cache."""

    precision: str = "fp32"
    batch: BatchProfile | None = None  # None: the ONNX's fixed batch, or 1,8,32 for a dynamic one
    workspace_gib: float = 2.0
    timing_cache: Path | None = None

    def validate(self) -> None:
        if self.precision not in PRECISIONS:
            raise ClcaDeployError(f"unknown precision '{self.precision}'; use one of {', '.join(PRECISIONS)}.")
        if not self.workspace_gib > 0:
            raise ClcaDeployError(f"--workspace must be positive (GiB), got {self.workspace_gib}.")


@dataclass(frozen=True)
class EngineResult:
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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def require_tensorrt() -> None:
    """Raise a ClcaDeployError naming what is missing unless TensorRT and a CUDA GPU are usable."""
    from clca_deploy.capabilities import tensorrt_skip_reason

    reason = tensorrt_skip_reason()
    if reason:
        raise ClcaDeployError(f"cannot build a TensorRT engine: {reason}; {INSTALL_HINT}, on a machine with an NVIDIA GPU.")


def onnx_input(onnx_path: Path) -> tuple[str, int | None, dict[str, str]]:
    """Image input name, its fixed batch size (None when dynamic) and the metadata_props of an ONNX file."""
    from clca_deploy.export.metadata import graph_inputs, load_onnx_structure, metadata_props

    model = load_onnx_structure(onnx_path)
    inputs = graph_inputs(model)
    if len(inputs) != 1:
        raise ClcaDeployError(f"{onnx_path} has {len(inputs)} inputs; a CLCA export has exactly one (images).")
    dim = inputs[0].type.tensor_type.shape.dim[0]
    batch = dim.dim_value if dim.HasField("dim_value") and dim.dim_value > 0 else None
    return inputs[0].name, batch, metadata_props(model)


def _gpu_identity() -> tuple[str, str]:
    import torch

    major, minor = torch.cuda.get_device_capability(0)
    return torch.cuda.get_device_name(0), f"{major}.{minor}"


def _network_flags(trt, plan: BuildPlan) -> int:
    # 10.x needs STRONGLY_TYPED to type strongly; 11.x types every network strongly and ignores
    # the flag. EXPLICIT_BATCH is never passed: ignored since 10.0 and gone in 11.
    if plan.strongly_typed and parse_trt_version(trt.__version__)[0] < 11:
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


def build_engine(onnx_path: str | Path, output: str | Path, config: EngineConfig, log: Callable[[str], None] = print) -> EngineResult:
    """Build ``output`` (a TensorRT plan) and ``output.json`` (its sidecar) from an exported ONNX file."""
    from clca_deploy.export.metadata import parse_metadata

    started = time.perf_counter()
    config.validate()
    require_tensorrt()  # before reading anything: say what is missing first
    import tensorrt as trt

    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise ClcaDeployError(f"ONNX file not found: {onnx_path}. Export one with `clca-deploy export`.")
    output = check_output_path(output)
    if config.timing_cache is not None:
        check_output_path(config.timing_cache)  # fail now, not after a long build
    input_name, onnx_batch, props = onnx_input(onnx_path)  # one read of the file for both
    info = parse_metadata(props, source=str(onnx_path))
    plan = plan_build(parse_trt_version(trt.__version__), config.precision, info.precision)
    profile = profile_for(onnx_batch, config.batch)
    for note in plan.notes:
        log(note)

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(_network_flags(trt, plan))
    _parse(trt, network, logger, onnx_path)
    trt_config = builder.create_builder_config()
    trt_config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(config.workspace_gib * (1 << 30)))
    for flag in plan.builder_flags:
        trt_config.set_flag(getattr(trt.BuilderFlag, flag))
    if onnx_batch is None:  # static inputs get their profile from TensorRT automatically
        shape = lambda batch: (batch, 3, info.img_size, info.img_size)  # noqa: E731
        trt_profile = builder.create_optimization_profile()
        trt_profile.set_shape(input_name, shape(profile.min), shape(profile.opt), shape(profile.max))
        trt_config.add_optimization_profile(trt_profile)
    if config.timing_cache is not None:
        _attach_timing_cache(trt_config, Path(config.timing_cache), log)

    log(f"building a {plan.precision} engine with TensorRT {trt.__version__} for batch {profile.min}..{profile.max}")
    serialized = builder.build_serialized_network(network, trt_config)
    if serialized is None:
        raise ClcaDeployError(
            "TensorRT could not build the engine (its messages above say why); "
            "a larger --workspace or a smaller batch profile often helps."
        )
    plan_bytes = memoryview(serialized)
    engine = trt.Runtime(logger).deserialize_cuda_engine(plan_bytes)  # the engine's real I/O, for the sidecar
    if engine is None:
        raise ClcaDeployError("TensorRT built an engine it cannot load back; see the TensorRT messages above.")
    gpu_name, capability = _gpu_identity()
    sidecar = build_sidecar(
        tensorrt_version=trt.__version__, gpu_name=gpu_name, compute_capability=capability, plan=plan,
        io=describe_io(trt, engine), profiles=[profile], onnx_sha256=sha256_file(onnx_path),
        keep_rate=info.keep_rate, onnx_metadata=props,
        engine_sha256=hashlib.sha256(plan_bytes).hexdigest(),
    )
    # Both or neither: the engine stays a temporary file until its sidecar is in place, and the
    # sidecar's engine_sha256 lets the runtime catch the one torn state left (a crash between renames).
    with atomic_output(output) as engine_tmp:
        engine_tmp.write_bytes(plan_bytes)
        with atomic_output(sidecar_path(output)) as sidecar_tmp:
            sidecar_tmp.write_text(json.dumps(sidecar, indent=2) + "\n")
    if config.timing_cache is not None:
        with atomic_output(config.timing_cache) as cache_tmp:
            cache_tmp.write_bytes(memoryview(trt_config.get_timing_cache().serialize()))
    return EngineResult(
        path=str(output), sidecar=str(sidecar_path(output)), precision=plan.precision,
        tensorrt_version=trt.__version__, builder_flags=plan.builder_flags, strongly_typed=plan.strongly_typed,
        profile=profile, size_bytes=output.stat().st_size, seconds=time.perf_counter() - started, notes=plan.notes,
    )


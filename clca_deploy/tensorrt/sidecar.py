"""The JSON sidecar beside every engine: how, where and from what it was built, and whether this machine can run it.

A sidecar is a file anyone may edit, so :func:`load_sidecar` is its one reader: it checks every type and
bound (the ONNX metadata inside included, and against the engine's I/O) and returns an
:class:`EngineSidecar`; every consumer reads that object, never the JSON.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from clca_deploy.errors import ClcaDeployError
from clca_deploy.metadata import (
    MAX_BATCH,
    MAX_BLOCKS,
    MAX_NAME_CHARS,
    OnnxModelInfo,
    check_io_shapes,
    has_control,
    parse_metadata,
    read_regular_file,
    shown,
)
from clca_deploy.tensorrt.plan import (
    MAX_DLA_CORE, OPTIMIZATION_LEVELS, BatchProfile, BuildPlan, parse_trt_version, version_text,
)

SIDECAR_FORMAT = "clca_deploy.engine/1"
BUILD_HINT = "rebuild it here with `clca-deploy build-trt`"
REBUILD = "rebuild the engine with `clca-deploy build-trt`"
# A sidecar carries the ONNX metadata, class names included (up to MAX_CLASSES of them).
MAX_SIDECAR_BYTES = 16 << 20
MAX_IO, MAX_PROFILES, MAX_NOTES, MAX_RANK = 16, 8, 32, 8
MAX_DIM = (1 << 31) - 1
DTYPES = ("float32", "float16", "bfloat16", "int8", "uint8", "int32", "int64", "bool")  # numpy names, as build writes them
_SHA256 = re.compile("[0-9a-f]{64}")
_FLAG = re.compile("[A-Za-z0-9_]{1,64}")
_CAPABILITY = re.compile("[0-9]{1,3}[.][0-9]{1,3}")


def sidecar_path(engine_path: str | Path) -> Path:
    engine_path = Path(engine_path)
    return engine_path.with_name(engine_path.name + ".json")


def build_sidecar(
    *, tensorrt_version: str, gpu_name: str, compute_capability: str, plan: BuildPlan, io: list[dict[str, Any]],
    profiles: list[BatchProfile], onnx_sha256: str, keep_rate: tuple[float, ...], onnx_metadata: dict[str, str],
    engine_sha256: str, dla_core: int | None = None, optimization_level: int | None = None,
) -> dict[str, Any]:
    """The JSON written beside an engine: how, where and from what it was built (``dla_core`` None: on the GPU
    only; ``optimization_level`` None: not recorded)."""
    return {
        "format": SIDECAR_FORMAT,
        "tensorrt_version": tensorrt_version,
        "gpu_name": gpu_name,
        "compute_capability": compute_capability,
        "precision": plan.precision,
        "builder_flags": list(plan.builder_flags),
        "strongly_typed": plan.strongly_typed,
        "notes": list(plan.notes),
        "io": [dict(entry) for entry in io],
        "profiles": [p.to_dict() for p in profiles],
        "onnx_sha256": onnx_sha256,
        # The engine's own hash ties the pair together: a torn write or a swapped file is caught.
        "engine_sha256": engine_sha256,
        "keep_rate": list(keep_rate),
        "onnx_metadata": dict(onnx_metadata),
        "dla_core": dla_core,
        "optimization_level": optimization_level,
    }


@dataclass(frozen=True)
class EngineTensor:
    """One engine input or output as its sidecar records it; -1 in ``shape`` is a dynamic size."""

    name: str
    mode: str  # "input" | "output"
    dtype: str  # a numpy dtype name, one of DTYPES
    shape: tuple[int, ...]

    @property
    def sizes(self) -> tuple[int | None, ...]:
        """``shape`` with its dynamic sizes as None."""
        return tuple(None if size == -1 else size for size in self.shape)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "mode": self.mode, "dtype": self.dtype, "shape": list(self.shape)}


@dataclass(frozen=True)
class EngineSidecar:
    """A sidecar, read and checked by :func:`load_sidecar`: what consumers use instead of its JSON."""

    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    precision: str
    builder_flags: tuple[str, ...]
    strongly_typed: bool
    notes: tuple[str, ...]
    input: EngineTensor  # the image input, (batch, 3, S, S) with S the metadata's img_size
    output: EngineTensor  # the logits, (batch, num_classes)
    profiles: tuple[BatchProfile, ...]  # at least one; the engine runs with the first
    onnx_sha256: str
    engine_sha256: str | None  # None in sidecars written before the engine's hash was recorded
    keep_rate: tuple[float, ...]
    info: OnnxModelInfo  # the ONNX metadata, parsed and checked against input and output
    onnx_metadata: Mapping[str, str] = field(compare=False)  # the raw metadata_props, for to_dict
    dla_core: int | None = None  # the DLA core it was built for (the runtime runs it there); None: GPU only
    optimization_level: int | None = None  # the builder's optimisation level; None in sidecars from before it

    @property
    def profile(self) -> BatchProfile:
        """The optimisation profile the engine runs with (the first)."""
        return self.profiles[0]

    @property
    def io(self) -> tuple[EngineTensor, EngineTensor]:
        return (self.input, self.output)

    def to_dict(self) -> dict[str, Any]:
        """The sidecar as JSON again (what ``build_sidecar`` wrote)."""
        return {
            "format": SIDECAR_FORMAT, "tensorrt_version": self.tensorrt_version, "gpu_name": self.gpu_name,
            "compute_capability": self.compute_capability, "precision": self.precision,
            "builder_flags": list(self.builder_flags), "strongly_typed": self.strongly_typed, "notes": list(self.notes),
            "io": [tensor.to_dict() for tensor in self.io], "profiles": [p.to_dict() for p in self.profiles],
            "onnx_sha256": self.onnx_sha256, "engine_sha256": self.engine_sha256, "keep_rate": list(self.keep_rate),
            "onnx_metadata": dict(self.onnx_metadata), "dla_core": self.dla_core, "optimization_level": self.optimization_level,
        }


class _Fields:
    """Typed, bounded lookups in one decoded sidecar; a failure is one error naming the field and what it should be."""

    def __init__(self, data: Mapping[str, Any], source: str):
        self.data, self.source = data, source

    def fail(self, key: str, value: Any, expected: str) -> ClcaDeployError:
        return ClcaDeployError(f"{self.source} is damaged: {key} is {shown(value)}, expected {expected}; {REBUILD}.")

    def get(self, key: str, check, expected: str, default: Any = ...) -> Any:
        if key not in self.data and default is not ...:
            return default
        value = self.data.get(key)
        if not check(value):
            raise self.fail(key, value, expected)
        return value

    def text(self, key: str, pattern: re.Pattern | None = None) -> str:
        def check(value: Any) -> bool:
            if not isinstance(value, str) or not 0 < len(value) <= MAX_NAME_CHARS or has_control(value):
                return False
            return pattern is None or pattern.fullmatch(value) is not None

        return self.get(key, check, f"text of 1..{MAX_NAME_CHARS} characters" + (f" matching {pattern.pattern}" if pattern else ""))

    def texts(self, key: str, limit: int, chars: int, pattern: re.Pattern | None = None) -> tuple[str, ...]:
        def check(value: Any) -> bool:
            return isinstance(value, list) and len(value) <= limit and all(
                isinstance(v, str) and len(v) <= chars and not has_control(v) and (pattern is None or pattern.fullmatch(v))
                for v in value
            )

        return tuple(self.get(key, check, f"a list of at most {limit} lines of text"))


def _is_int(value: Any, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _tensor(fields: _Fields, index: int, entry: Any) -> EngineTensor:
    key = f"io[{index}]"
    expected = (
        f'{{"name": text, "mode": "input" or "output", "dtype": one of {", ".join(DTYPES)}, '
        f'"shape": 1..{MAX_RANK} sizes, each -1 or 1..{MAX_DIM}}}'
    )
    if not isinstance(entry, dict):
        raise fields.fail(key, entry, expected)
    name, mode, dtype, shape = (entry.get(k) for k in ("name", "mode", "dtype", "shape"))
    valid = (
        isinstance(name, str) and 0 < len(name) <= MAX_NAME_CHARS and not has_control(name)
        and mode in ("input", "output") and dtype in DTYPES
        and isinstance(shape, list) and 0 < len(shape) <= MAX_RANK and all(_is_int(s, -1, MAX_DIM) and s != 0 for s in shape)
    )
    if not valid:
        raise fields.fail(key, entry, expected)
    return EngineTensor(name, mode, dtype, tuple(shape))


def _io(fields: _Fields) -> tuple[EngineTensor, EngineTensor]:
    entries = fields.get("io", lambda v: isinstance(v, list) and len(v) <= MAX_IO, f"a list of at most {MAX_IO} tensors")
    tensors = [_tensor(fields, index, entry) for index, entry in enumerate(entries)]
    inputs = [t for t in tensors if t.mode == "input"]
    outputs = [t for t in tensors if t.mode == "output"]
    if len(inputs) != 1 or len(outputs) != 1:
        raise ClcaDeployError(
            f"{fields.source} lists {len(inputs)} inputs and {len(outputs)} outputs; a CLCA engine has one of each "
            f"(images and logits): {REBUILD}."
        )
    return inputs[0], outputs[0]


def _profiles(fields: _Fields, image: EngineTensor) -> tuple[BatchProfile, ...]:
    def profile(value: Any) -> bool:
        return isinstance(value, dict) and set(value) == {"min", "opt", "max"} and all(
            _is_int(value[k], 1, MAX_BATCH) for k in value
        ) and value["min"] <= value["opt"] <= value["max"]

    expected = f'1..{MAX_PROFILES} {{"min", "opt", "max"}} batch sizes with 1 <= min <= opt <= max <= {MAX_BATCH}'
    entries = fields.get("profiles", lambda v: isinstance(v, list) and 0 < len(v) <= MAX_PROFILES and all(map(profile, v)), expected)
    profiles = tuple(BatchProfile(**entry) for entry in entries)
    batch = image.shape[0]
    if batch != -1 and (profiles[0].min, profiles[0].max) != (batch, batch):
        raise fields.fail("profiles", entries, f"batch {batch} only, as the engine's input {image.name} takes")
    return profiles


def parse_sidecar(data: Any, source: str) -> EngineSidecar:
    """A decoded sidecar, every field typed and bounded and the ONNX metadata checked against the engine's I/O."""
    if not isinstance(data, dict) or data.get("format") != SIDECAR_FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise ClcaDeployError(f"{source} is not a {SIDECAR_FORMAT} sidecar (format {shown(found)}); {BUILD_HINT}.")
    fields = _Fields(data, source)
    version = fields.text("tensorrt_version")
    try:
        parse_trt_version(version)
    except ClcaDeployError:
        raise fields.fail("tensorrt_version", version, "a TensorRT version such as 10.3.0") from None
    props = fields.get("onnx_metadata", lambda v: isinstance(v, dict), "an object of ONNX metadata_props")
    info = parse_metadata(props, source=f"{source} (onnx_metadata)", remedy=REBUILD)
    image, logits = _io(fields)
    check_io_shapes(info, image.sizes, logits.sizes, f"{source} (io)", remedy=REBUILD)
    is_sha = lambda v: isinstance(v, str) and _SHA256.fullmatch(v) is not None  # noqa: E731
    return EngineSidecar(
        tensorrt_version=version, gpu_name=fields.text("gpu_name"),
        compute_capability=fields.text("compute_capability", _CAPABILITY), precision=fields.text("precision"),
        builder_flags=fields.texts("builder_flags", MAX_NOTES, 64, _FLAG),
        strongly_typed=fields.get("strongly_typed", lambda v: isinstance(v, bool), "true or false"),
        notes=fields.texts("notes", MAX_NOTES, 2000), input=image, output=logits, profiles=_profiles(fields, image),
        onnx_sha256=fields.get("onnx_sha256", is_sha, "64 hexadecimal digits"),
        engine_sha256=fields.get("engine_sha256", lambda v: v is None or is_sha(v), "64 hexadecimal digits", None),
        keep_rate=tuple(fields.get("keep_rate", _keep_rates, f"1..{MAX_BLOCKS} keep rates in (0, 1]")),
        info=info, onnx_metadata=dict(props), **_builder_options(fields),
    )


def _builder_options(fields: _Fields) -> dict[str, int | None]:
    """The DLA core and optimisation level a sidecar records (absent from older sidecars: None)."""
    low, high = OPTIMIZATION_LEVELS
    optional = lambda a, b: lambda v: v is None or _is_int(v, a, b)  # noqa: E731
    return {
        "dla_core": fields.get("dla_core", optional(0, MAX_DLA_CORE), f"null or a DLA core 0..{MAX_DLA_CORE}", None),
        "optimization_level": fields.get(
            "optimization_level", optional(low, high), f"null or an optimisation level {low}..{high}", None
        ),
    }


def _keep_rates(value: Any) -> bool:
    return isinstance(value, list) and 0 < len(value) <= MAX_BLOCKS and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v <= 1 for v in value
    )


def load_sidecar(engine_path: str | Path) -> EngineSidecar:
    """The checked sidecar of an engine, or a clear error when it is missing, damaged or not a regular file."""
    path = sidecar_path(engine_path)
    if not path.exists():
        raise ClcaDeployError(
            f"{engine_path} has no sidecar {path.name}: engines built by `clca-deploy build-trt` come with one "
            f"describing TensorRT version, GPU and precision; {BUILD_HINT}."
        )
    data = read_regular_file(path, "engine sidecar", MAX_SIDECAR_BYTES)
    try:
        decoded = json.loads(data.decode("utf-8"))
    except RecursionError:
        raise ClcaDeployError(f"cannot read {path}: its JSON is nested too deeply; {BUILD_HINT}.") from None
    except ValueError as exc:  # UnicodeDecodeError is a ValueError too
        raise ClcaDeployError(f"cannot read {path} ({type(exc).__name__}: {shown(str(exc))}); {BUILD_HINT}.") from None
    return parse_sidecar(decoded, str(path))


_RELEASE = re.compile(r"\s*(\d+)\.(\d+)(?:\.(\d+))?(?:\.(\d+))?")


def trt_release(text: str) -> tuple[int, ...]:
    """(major, minor, patch, build) of a TensorRT version, (major, minor, patch) where it names no build.

    "10.3.0.30" -> (10, 3, 0, 30); "10.13.3.9.post1" (a pip wheel) -> (10, 13, 3, 9); "10.3" -> (10, 3, 0).
    """
    parse_trt_version(text)  # the one check of what a TensorRT version may look like
    major, minor, patch, build = _RELEASE.match(str(text)).groups()
    release = (int(major), int(minor), int(patch or 0))
    return release if build is None else (*release, int(build))


def _same_release(built: tuple[int, ...], running: tuple[int, ...]) -> bool:
    # Both sides come from tensorrt.__version__; pip wheels name the build, but a version without one
    # (a hand-written sidecar, some system packages) cannot be compared on it, and TensorRT's own check
    # at deserialization still stands behind this one.
    return built[:3] == running[:3] and (len(built) < 4 or len(running) < 4 or built[3] == running[3])


def check_sidecar_matches(sidecar: EngineSidecar, running_trt_version: str, gpu_name: str, compute_capability: str) -> str | None:
    """Raise when this machine cannot run the engine; return a warning when it can but was not built here.

    NVIDIA guarantees a plan (built without VERSION_COMPATIBLE, as build-trt builds) only on the exact
    TensorRT version that built it, build number included (10.3.0.26 and 10.3.0.30 are different
    versions), and only on the GPU architecture (compute capability) it was built for: either
    difference is an error, raised before the plan is deserialized. Another GPU model of the same
    architecture loads the plan (TensorRT itself only warns), but kernels were timed on the other
    model, so that difference is returned as a warning for the caller to show.
    """
    built, running = trt_release(sidecar.tensorrt_version), trt_release(running_trt_version)
    built_gpu, built_cc = sidecar.gpu_name, sidecar.compute_capability
    same_release = _same_release(built, running)
    if not same_release or built_cc != str(compute_capability):
        # Versions are shown to the precision that tells them apart: the build only when it is the difference,
        # which surprises people, hence the reason.
        build_differs = not same_release and built[:3] == running[:3]
        shown_built, shown_running = (built, running) if build_differs else (built[:3], running[:3])
        why = "a plan loads only on the exact TensorRT build that made it; " if build_differs else ""
        raise ClcaDeployError(
            f"engine built for TensorRT {version_text(shown_built)} on {built_gpu} ({built_cc}); this machine runs "
            f"TensorRT {version_text(shown_running)} on {gpu_name} ({compute_capability}): {why}{BUILD_HINT}."
        )
    if built_gpu != gpu_name:
        return (
            f"engine built on {built_gpu}, running on {gpu_name} (same compute capability {built_cc}): "
            f"it runs, but its kernels were tuned on the other GPU; for best speed {BUILD_HINT}."
        )
    return None

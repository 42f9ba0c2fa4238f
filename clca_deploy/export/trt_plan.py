"""TensorRT build decisions as plain data: version gate, precision plan, batch profile, engine sidecar.

Nothing here imports tensorrt, so every rule is unit-tested on machines without a GPU.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from clca_deploy.errors import ClcaDeployError

PRECISIONS = ("fp32", "fp16", "int8")
MIN_TENSORRT = (10, 3)  # JetPack 6 ships 10.3; older 10.x lacks fixes the Q/DQ path relies on
SIDECAR_FORMAT = "clca_deploy.engine/1"
BUILD_HINT = "rebuild it here with `clca-deploy build-trt`"

# What to build from when the ONNX file does not hold the requested precision.
SOURCE_HINTS = {
    "fp32": "build from the FP32 ONNX written by `clca-deploy export`",
    "fp16": "export an FP16 ONNX with `clca-deploy calibrate --fp16` and build from it",
    "int8": "run `clca-deploy calibrate` to get a Q/DQ INT8 ONNX and build from it",
}


def parse_trt_version(text: str) -> tuple[int, int, int]:
    """(major, minor, patch) of a TensorRT version string: "10.3.0.26" -> (10, 3, 0)."""
    match = re.fullmatch(r"\s*(\d+)\.(\d+)(?:\.(\d+))?(?:\.\d+)*(?:[.+-]?[A-Za-z][\w.+-]*)?\s*", str(text))
    if not match:
        raise ClcaDeployError(f"cannot read a TensorRT version from {text!r}; expected e.g. 10.3.0.")
    major, minor, patch = match.groups()
    return int(major), int(minor), int(patch or 0)


def _version_text(version: tuple[int, ...]) -> str:
    return ".".join(str(part) for part in version)


def _check_precision(name: str, value: str) -> None:
    if value not in PRECISIONS:
        raise ClcaDeployError(f"unknown {name} '{value}'; use one of {', '.join(PRECISIONS)}.")


@dataclass(frozen=True)
class BuildPlan:
    """How to configure the TensorRT builder: network typing, builder flags, what the engine computes in."""

    strongly_typed: bool
    builder_flags: tuple[str, ...]  # trt.BuilderFlag member names
    precision: str
    notes: tuple[str, ...] = ()


def plan_build(trt_version: tuple[int, int, int], precision: str, onnx_precision: str) -> BuildPlan:
    """The builder settings that give a ``precision`` engine from an ONNX holding ``onnx_precision``, or an error."""
    _check_precision("precision", precision)
    _check_precision("ONNX precision", onnx_precision)
    version = _version_text(trt_version)
    if tuple(trt_version[:2]) < MIN_TENSORRT:
        raise ClcaDeployError(
            f"TensorRT 10.3 or newer is required (found {version}); "
            'install it with pip install "clca-deploy[trt]" or use JetPack 6 or newer.'
        )
    mismatch = f"this ONNX file holds {onnx_precision}, not {precision}: {SOURCE_HINTS[precision]}."
    if trt_version[0] >= 11:
        # TensorRT 11 removed BuilderFlag.FP16/INT8 and the INT8 calibrator: every network is
        # strongly typed, so the engine computes in exactly the types the ONNX declares.
        if precision != onnx_precision:
            raise ClcaDeployError(f"TensorRT {version} builds strongly typed networks, so precision comes from the ONNX; {mismatch}")
        return BuildPlan(strongly_typed=True, builder_flags=(), precision=precision)

    # TensorRT 10.x: weakly typed networks; builder flags allow lower-precision kernels.
    if onnx_precision == "int8" and precision != "int8":
        # With Q/DQ nodes TensorRT quantizes those layers whatever the flags say, so an fp32 or
        # fp16 engine cannot be made from this file.
        raise ClcaDeployError(f"this ONNX file is a Q/DQ INT8 model and builds only an int8 engine; {SOURCE_HINTS[precision]}.")
    if precision == "int8":
        if onnx_precision != "int8":
            raise ClcaDeployError(f"TensorRT {version} builds INT8 only from explicit Q/DQ ONNX (no implicit calibration here); {mismatch}")
        # INT8 is required for Q/DQ networks in weakly typed mode (TensorRT developer guide,
        # "Explicit Quantization"). FP16 is deliberately not added: it would let TensorRT run
        # the layers the Q/DQ file keeps in float (LayerNorm, Softmax) in fp16, so a TensorRT 10
        # engine would compute less precisely than the same file built strongly typed on 11.
        return BuildPlan(
            strongly_typed=False,
            builder_flags=("INT8",),
            precision="int8",
            notes=("Q/DQ layers run in int8; layers the ONNX keeps in float run in fp32 (no FP16 flag).",),
        )
    if precision == "fp16":
        note = (
            "TensorRT 10 builds weakly typed: the FP16 flag lets it choose fp16 kernels for any layer, "
            "so layers kept in fp32 by the ONNX (LayerNorm, Softmax) may run in fp16; compare logits."
        )
        if onnx_precision == "fp32":
            note += " For the fp32-kept LayerNorm/Softmax of TensorRT 11, export with `clca-deploy calibrate --fp16`."
        return BuildPlan(strongly_typed=False, builder_flags=("FP16",), precision="fp16", notes=(note,))
    if onnx_precision == "fp16":
        # An fp32 engine from fp16 weights would only upcast them: an "fp32" label with fp16 accuracy.
        raise ClcaDeployError(f"this ONNX file holds fp16 weights, so an fp32 engine would not be fp32; {SOURCE_HINTS['fp32']}.")
    return BuildPlan(
        strongly_typed=False,
        builder_flags=(),
        precision="fp32",
        notes=("TensorRT allows TF32 tensor cores for fp32 matmuls on Ampere and newer GPUs (its default).",),
    )


@dataclass(frozen=True)
class BatchProfile:
    """The batch sizes an engine accepts (min..max) and the one TensorRT tunes its kernels for (opt)."""

    min: int
    opt: int
    max: int

    def __post_init__(self) -> None:
        sizes = (self.min, self.opt, self.max)
        if not all(isinstance(s, int) and not isinstance(s, bool) for s in sizes):
            raise ClcaDeployError(f"batch sizes must be whole numbers, got {sizes}.")
        if not 1 <= self.min <= self.opt <= self.max:
            raise ClcaDeployError(f"batch profile {self.min},{self.opt},{self.max} must satisfy 1 <= min <= opt <= max.")

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


DEFAULT_PROFILE = BatchProfile(1, 8, 32)


def parse_batch_profile(text: str) -> BatchProfile:
    """``"1,8,32"`` -> BatchProfile(1, 8, 32); a single number ``"8"`` means exactly that batch."""
    parts = [p.strip() for p in str(text).split(",")]
    if len(parts) not in (1, 3) or not all(p.isdigit() for p in parts):
        raise ClcaDeployError(f"cannot read batch profile {text!r}; use MIN,OPT,MAX such as 1,8,32, or one size such as 8.")
    sizes = [int(p) for p in parts]
    return BatchProfile(*(sizes * 3 if len(sizes) == 1 else sizes))


def profile_for(onnx_batch_dim: int | None, requested: BatchProfile | None) -> BatchProfile:
    """The profile to build: a fixed-batch ONNX allows only its own batch; a dynamic one defaults to 1,8,32."""
    if onnx_batch_dim is None:
        return requested or DEFAULT_PROFILE
    fixed = BatchProfile(onnx_batch_dim, onnx_batch_dim, onnx_batch_dim)
    if requested is not None and requested != fixed:
        raise ClcaDeployError(
            f"this ONNX was exported for batch {onnx_batch_dim} only, so batch profile "
            f"{requested.min},{requested.opt},{requested.max} is impossible; export again without --batch for a range."
        )
    return fixed


def sidecar_path(engine_path: str | Path) -> Path:
    engine_path = Path(engine_path)
    return engine_path.with_name(engine_path.name + ".json")


def build_sidecar(
    *, tensorrt_version: str, gpu_name: str, compute_capability: str, plan: BuildPlan, io: list[dict[str, Any]],
    profiles: list[BatchProfile], onnx_sha256: str, keep_rate: tuple[float, ...], onnx_metadata: dict[str, str],
    engine_sha256: str,
) -> dict[str, Any]:
    """The JSON written beside an engine: how, where and from what it was built."""
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
    }


def load_sidecar(engine_path: str | Path) -> dict[str, Any]:
    """The sidecar of an engine, or a clear error when it is missing or damaged."""
    path = sidecar_path(engine_path)
    if not path.exists():
        raise ClcaDeployError(
            f"{engine_path} has no sidecar {path.name}: engines built by `clca-deploy build-trt` come with one "
            f"describing TensorRT version, GPU and precision; {BUILD_HINT}."
        )
    try:
        sidecar = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ClcaDeployError(f"cannot read {path} ({exc}); {BUILD_HINT}.") from exc
    if not isinstance(sidecar, dict) or sidecar.get("format") != SIDECAR_FORMAT:
        found = sidecar.get("format") if isinstance(sidecar, dict) else type(sidecar).__name__
        raise ClcaDeployError(f"{path} is not a {SIDECAR_FORMAT} sidecar (format {found!r}); {BUILD_HINT}.")
    return sidecar


def check_sidecar_matches(sidecar: dict[str, Any], running_trt_version: str, gpu_name: str, compute_capability: str) -> str | None:
    """Raise when this machine cannot run the engine; return a warning when it can but was not built here.

    TensorRT plans load only with the TensorRT version that built them and on the GPU architecture
    (compute capability) they were built for, so either difference is an error. Another GPU model of
    the same architecture loads the plan (TensorRT itself only warns), but kernels were timed on the
    other model, so that difference is returned as a warning for the caller to show.
    """
    try:
        built = parse_trt_version(sidecar["tensorrt_version"])
        built_gpu, built_cc = str(sidecar["gpu_name"]), str(sidecar["compute_capability"])
    except KeyError as exc:
        raise ClcaDeployError(f"engine sidecar lacks {exc}; {BUILD_HINT}.") from exc
    running = parse_trt_version(running_trt_version)
    if built != running or built_cc != str(compute_capability):
        raise ClcaDeployError(
            f"engine built for TensorRT {_version_text(built)} on {built_gpu} ({built_cc}); this machine runs "
            f"TensorRT {_version_text(running)} on {gpu_name} ({compute_capability}): {BUILD_HINT}."
        )
    if built_gpu != gpu_name:
        return (
            f"engine built on {built_gpu}, running on {gpu_name} (same compute capability {built_cc}): "
            f"it runs, but its kernels were tuned on the other GPU; for best speed {BUILD_HINT}."
        )
    return None

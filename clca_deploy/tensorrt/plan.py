"""TensorRT build decisions as plain data: version gate, precision plan, batch profile.

Nothing here imports tensorrt, so every rule is unit-tested on machines without a GPU.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, replace

from clca_deploy.errors import ClcaDeployError
from clca_deploy.metadata import MAX_BATCH

PRECISIONS = ("fp32", "fp16", "int8")
MIN_TENSORRT = (10, 3)  # JetPack 6 ships 10.3; older 10.x lacks fixes the Q/DQ path relies on

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


def version_text(version: tuple[int, ...]) -> str:
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


WEAK_TYPING_DEPRECATED = (10, 12)  # NVIDIA deprecated weakly typed networks in TensorRT 10.12


def check_tensorrt_version(trt_version: tuple[int, int, int]) -> None:
    """Refuse TensorRT older than 10.3, saying where a supported one comes from."""
    if tuple(trt_version[:2]) < MIN_TENSORRT:
        raise ClcaDeployError(
            f"TensorRT 10.3 or newer is required (found {version_text(trt_version)}): on Jetson that is JetPack 6.1 "
            'or 6.2 (JetPack 6.0 ships TensorRT 8.6); on a GPU server, pip install "clca-deploy[trt]".'
        )


def plan_build(
    trt_version: tuple[int, int, int], precision: str, onnx_precision: str, weak_typing: bool = False
) -> BuildPlan:
    """The builder settings that give a ``precision`` engine from an ONNX holding ``onnx_precision``, or an error.

    Strongly typed by default on every version, so a TensorRT 10.3 engine and a TensorRT 11 engine of
    one ONNX file compute in the same types: those the file declares. ``weak_typing`` keeps TensorRT
    10's builder-flag path as an explicit choice.
    """
    _check_precision("precision", precision)
    _check_precision("ONNX precision", onnx_precision)
    check_tensorrt_version(trt_version)
    if weak_typing:
        return _weak_plan(trt_version, precision, onnx_precision)
    if precision != onnx_precision:
        # build-trt converts only from the FP32 export (to FP16, or to INT8 with calibration images).
        conversions = {"fp16": "build-trt --fp16", "int8": "build-trt --int8 --data DIR"}
        convert = (
            f" (or let `clca-deploy {conversions[precision]}` convert it first)"
            if onnx_precision == "fp32" and precision in conversions
            else ""
        )
        raise ClcaDeployError(
            f"engines are built strongly typed, so precision comes from the ONNX file; this one holds "
            f"{onnx_precision}, not {precision}: {SOURCE_HINTS[precision]}{convert}."
        )
    notes = {
        "fp32": "TensorRT may use TF32 tensor cores for fp32 matmuls on Ampere and newer GPUs (its default).",
        "fp16": "layers the ONNX keeps in fp32 (LayerNorm, Softmax, token scores) run in fp32.",
        "int8": "Q/DQ layers run in int8; layers the ONNX keeps in float run in fp32.",
    }
    return BuildPlan(strongly_typed=True, builder_flags=(), precision=precision, notes=(notes[precision],))


def _weak_plan(trt_version: tuple[int, int, int], precision: str, onnx_precision: str) -> BuildPlan:
    """TensorRT 10's weakly typed network: builder flags allow lower-precision kernels for any layer."""
    version = version_text(trt_version)
    if trt_version[0] >= 11:
        raise ClcaDeployError(
            f"TensorRT {version} builds strongly typed networks only (11 removed the FP16/INT8 builder flags): "
            "drop --weak-typing; the precision comes from the ONNX file."
        )
    deprecated = (
        (f"weakly typed networks are deprecated since TensorRT 10.12 (this is {version}).",)
        if tuple(trt_version[:2]) >= WEAK_TYPING_DEPRECATED
        else ()
    )
    if onnx_precision == "int8" and precision != "int8":
        # With Q/DQ nodes TensorRT quantizes those layers whatever the flags say, so an fp32 or
        # fp16 engine cannot be made from this file.
        raise ClcaDeployError(f"this ONNX file is a Q/DQ INT8 model and builds only an int8 engine; {SOURCE_HINTS[precision]}.")
    if precision == "int8":
        if onnx_precision != "int8":
            raise ClcaDeployError(
                f"TensorRT {version} builds INT8 only from explicit Q/DQ ONNX (no implicit calibration here); "
                f"this ONNX file holds {onnx_precision}: {SOURCE_HINTS['int8']}."
            )
        # INT8 is required for Q/DQ networks in weakly typed mode (TensorRT developer guide,
        # "Explicit Quantization"). FP16 is deliberately not added: it would let TensorRT run
        # the layers the Q/DQ file keeps in float (LayerNorm, Softmax) in fp16.
        notes = ("Q/DQ layers run in int8; layers the ONNX keeps in float run in fp32 (no FP16 flag).",)
        return BuildPlan(strongly_typed=False, builder_flags=("INT8",), precision="int8", notes=notes + deprecated)
    if precision == "fp16":
        note = (
            "weakly typed: the FP16 flag lets TensorRT choose fp16 kernels for any layer, so layers the ONNX "
            "keeps in fp32 (LayerNorm, Softmax) may run in fp16; compare logits."
        )
        return BuildPlan(strongly_typed=False, builder_flags=("FP16",), precision="fp16", notes=(note,) + deprecated)
    if onnx_precision == "fp16":
        # An fp32 engine from fp16 weights would only upcast them: an "fp32" label with fp16 accuracy.
        raise ClcaDeployError(f"this ONNX file holds fp16 weights, so an fp32 engine would not be fp32; {SOURCE_HINTS['fp32']}.")
    note = "TensorRT may use TF32 tensor cores for fp32 matmuls on Ampere and newer GPUs (its default)."
    return BuildPlan(strongly_typed=False, builder_flags=(), precision="fp32", notes=(note,) + deprecated)


# Builder options beyond precision (`build-trt --optimization-level`, `--dla-core`), decided here without TensorRT.
OPTIMIZATION_LEVELS = (0, 5)  # IBuilderConfig.builder_optimization_level: 0 builds fastest, 5 searches longest
DEFAULT_OPTIMIZATION_LEVEL = 3  # TensorRT's own default
OPTIMIZATION_LEVEL_SINCE = (8, 6)  # the release that added builder_optimization_level
MAX_DLA_CORE = 15  # Orin has 2 DLA cores; a larger index is a typo
DLA_PRECISIONS = ("fp16", "int8")  # DLA runs no fp32 layer (TensorRT's DLA chapter)


def check_builder_options(
    trt_version: tuple[int, int, int], precision: str, dla_core: int | None, optimization_level: int | None,
    on_jetson: bool,
) -> None:
    """Refuse ``--optimization-level`` where TensorRT lacks it and ``--dla-core`` where it cannot apply, before any work.

    Whether this machine's builder reports enough DLA cores is checked by :func:`check_dla_cores` once the
    builder exists."""
    if optimization_level is not None and tuple(trt_version[:2]) < OPTIMIZATION_LEVEL_SINCE:
        raise ClcaDeployError(
            f"--optimization-level needs TensorRT {version_text(OPTIMIZATION_LEVEL_SINCE)} or newer "
            f"(this is {version_text(trt_version)}): drop it."
        )
    if dla_core is None:
        return
    if not on_jetson:
        raise ClcaDeployError(
            "--dla-core needs a Jetson with DLA cores (AGX Orin, Orin NX); this machine is not a Jetson: drop --dla-core."
        )
    if precision not in DLA_PRECISIONS:
        raise ClcaDeployError(
            f"DLA runs fp16 and int8 layers only, so a {precision} engine would run every layer on the GPU: "
            "add --fp16 or --int8, or drop --dla-core."
        )


def check_dla_cores(
    dla_core: int | None, available: int, what: str = "TensorRT's builder", remedy: str = "drop --dla-core"
) -> None:
    """Refuse DLA core ``dla_core`` when ``what`` (the builder, or the runtime) reports only ``available`` cores."""
    if dla_core is None or 0 <= dla_core < available:
        return
    if available <= 0:
        raise ClcaDeployError(
            f"--dla-core {dla_core}: {what} reports no DLA core on this device (Orin Nano has none; TensorRT 11.0 "
            f"to 11.3 support none): {remedy}."
        )
    raise ClcaDeployError(f"--dla-core {dla_core}: this device has {available} DLA cores, 0..{available - 1}: pick one of them.")


def on_dla(plan: BuildPlan, dla_core: int | None) -> BuildPlan:
    """``plan`` with DLA core ``dla_core`` as the default device: GPU_FALLBACK runs the layers DLA cannot on the GPU."""
    if dla_core is None:
        return plan
    note = f"DLA core {dla_core} runs what it can; the other layers fall back to the GPU (GPU_FALLBACK)."
    return replace(plan, builder_flags=(*plan.builder_flags, "GPU_FALLBACK"), notes=(*plan.notes, note))


def build_mode_summary(trt_version: tuple[int, int, int]) -> str:
    """What `build-trt` does with this TensorRT version, in one line (for `clca-deploy doctor`)."""
    try:
        check_tensorrt_version(trt_version)
    except ClcaDeployError:
        return f"unsupported: TensorRT {version_text(trt_version)} is older than 10.3 (JetPack 6.0 ships 8.6; use 6.1/6.2)"
    if trt_version[0] >= 11:
        return "strongly typed only: FP32, FP16 and Q/DQ INT8 engines from ONNX files of that precision"
    weak = "deprecated since 10.12" if tuple(trt_version[:2]) >= WEAK_TYPING_DEPRECATED else "TensorRT 10 only"
    return (
        "strongly typed by default (precision from the ONNX file: FP32, FP16, Q/DQ INT8); "
        f"--weak-typing uses the FP16/INT8 builder flags ({weak})"
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
        if not 1 <= self.min <= self.opt <= self.max <= MAX_BATCH:
            raise ClcaDeployError(
                f"batch profile {self.min},{self.opt},{self.max} must satisfy 1 <= min <= opt <= max <= {MAX_BATCH}."
            )

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


def profile_reaching(max_batch: int) -> BatchProfile:
    """A valid profile up to ``max_batch``, tuned for batch 8 where that fits: what hints suggest."""
    return BatchProfile(1, min(DEFAULT_PROFILE.opt, max_batch), max_batch)


def profile_option(profile: BatchProfile) -> str:
    """``build-trt --batch MIN,OPT,MAX`` for ``profile``, as hints write it."""
    return f"build-trt --batch {profile.min},{profile.opt},{profile.max}"


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

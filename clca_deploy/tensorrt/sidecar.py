"""The JSON sidecar beside every engine: how, where and from what it was built, and whether this machine can run it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from clca_deploy.errors import ClcaDeployError
from clca_deploy.tensorrt.plan import BatchProfile, BuildPlan, parse_trt_version, version_text

SIDECAR_FORMAT = "clca_deploy.engine/1"
BUILD_HINT = "rebuild it here with `clca-deploy build-trt`"


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
            f"engine built for TensorRT {version_text(built)} on {built_gpu} ({built_cc}); this machine runs "
            f"TensorRT {version_text(running)} on {gpu_name} ({compute_capability}): {BUILD_HINT}."
        )
    if built_gpu != gpu_name:
        return (
            f"engine built on {built_gpu}, running on {gpu_name} (same compute capability {built_cc}): "
            f"it runs, but its kernels were tuned on the other GPU; for best speed {BUILD_HINT}."
        )
    return None

"""`clca-deploy info` on a deployable file: what an .onnx file or an engine holds, read without a runtime.

An ONNX file is read without its weights (its header and metadata_props); an engine through its
sidecar, so neither torch, onnxruntime nor TensorRT is needed to describe either.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from clca_deploy.errors import ClcaDeployError
from clca_deploy.metadata import OnnxModelInfo, check_regular_file, checked_metadata, image_input, load_onnx_structure
from clca_deploy.runtime.base import ONNX_FILE, TENSORRT_ENGINE
from clca_deploy.runtime.registry import file_format


@dataclass(frozen=True)
class DeployedModelInfo:
    """One exported model file: the CLCA model it holds, its precision and shapes, and its runtime facts."""

    path: str
    kind: str  # "onnx" | "tensorrt engine"
    size_bytes: int
    model: str
    method: str
    precision: str
    keep_rate: tuple[float, ...]
    img_size: int
    num_classes: int
    class_names: tuple[str, ...] | None
    token_schedule: tuple[tuple[int, int], ...]
    preprocess: dict[str, Any]
    batch: str  # "dynamic", "8", or an engine's "1..32 (opt 8)"
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _common(path: Path, kind: str, info: OnnxModelInfo, batch: str, details: dict[str, Any]) -> DeployedModelInfo:
    return DeployedModelInfo(
        path=str(path), kind=kind, size_bytes=path.stat().st_size, model=info.model, method=info.method,
        precision=info.precision, keep_rate=info.keep_rate, img_size=info.img_size, num_classes=info.num_classes,
        class_names=info.class_names, token_schedule=info.token_schedule, preprocess=info.preprocess, batch=batch,
        details=details,
    )


def _describe_onnx(path: Path) -> DeployedModelInfo:
    model = load_onnx_structure(path)
    info = checked_metadata(model, str(path))
    input_name, fixed_batch = image_input(model, str(path))
    ops = Counter(node.op_type for node in model.graph.node)
    details = {
        "input": input_name,
        "outputs": [output.name for output in model.graph.output],
        "opset": max((entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx")), default=None),
        "nodes": len(model.graph.node),
        "quantize_dequantize_pairs": min(ops["QuantizeLinear"], ops["DequantizeLinear"]),
        "weights_inside": not any(init.data_location == 1 for init in model.graph.initializer),  # 1: EXTERNAL
        "exported_by": f"clca-deploy {info.clca_deploy_version}",
        "source_sha256": info.source_sha256,
    }
    return _common(path, "onnx", info, "dynamic" if fixed_batch is None else str(fixed_batch), details)


def _describe_engine(path: Path) -> DeployedModelInfo:
    from clca_deploy.tensorrt.sidecar import load_sidecar

    sidecar = load_sidecar(path)
    profile = sidecar.profile
    batch = f"{profile.min}..{profile.max} (opt {profile.opt})"
    details = {
        key: value for key, value in sidecar.to_dict().items()
        if key in ("tensorrt_version", "gpu_name", "compute_capability", "builder_flags", "strongly_typed", "io", "notes")
    }
    return _common(path, "tensorrt engine", sidecar.info, batch, details)


_DESCRIBERS = {ONNX_FILE: _describe_onnx, TENSORRT_ENGINE: _describe_engine}


def is_deployed_file(path: str | Path) -> bool:
    """Whether ``path`` is of a kind :func:`describe_model_file` reads (an export or an engine, by its suffix)."""
    try:
        return file_format(path) in _DESCRIBERS
    except ClcaDeployError:  # a suffix no runtime opens
        return False


def describe_model_file(path: str | Path) -> DeployedModelInfo:
    """What an exported .onnx file or a built engine holds; a clear error for anything else."""
    path = check_regular_file(path)  # a FIFO or a device would block or never end
    if not is_deployed_file(path):
        raise ClcaDeployError(f"{path.name} is not an .onnx file or an engine (.engine, .plan).")
    return _DESCRIBERS[file_format(path)](path)

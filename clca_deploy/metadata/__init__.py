"""ONNX ``metadata_props``: everything a runtime needs to preprocess an image and name its class.

Values are strings; lists and dicts are JSON. The ONNX file alone is then a complete model.

Anyone can write a file with these keys, so this package is their one reader: ``props.parse_metadata``
checks every type and bound, :func:`checked_metadata` checks the numbers against the graph, and every
consumer trusts the :class:`OnnxModelInfo` it gets. ``files`` reads only regular files, within a bound.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clca_deploy import __version__
from clca_deploy.errors import ClcaDeployError
from clca_deploy.metadata.files import check_regular_file, read_regular_file
from clca_deploy.metadata.props import (
    EXPORT_AGAIN,
    FORMAT_KEY,
    FORMAT_VERSION,
    INTERPOLATIONS,
    MAX_BATCH,
    MAX_BLOCKS,
    MAX_CLASSES,
    MAX_IMG_SIZE,
    MAX_NAME_CHARS,
    MAX_ONNX_BYTES,
    MAX_RESIZE_FACTOR,
    MAX_TOKENS,
    MIN_IMG_SIZE,
    OnnxModelInfo,
    check_io_shapes,
    class_names_problem,
    has_control,
    parse_metadata,
    shape_text,
    shown,
)

__all__ = [
    "EXPORT_AGAIN", "FORMAT_KEY", "FORMAT_VERSION", "INTERPOLATIONS", "MAX_BATCH", "MAX_BLOCKS", "MAX_CLASSES",
    "MAX_IMG_SIZE", "MAX_NAME_CHARS", "MAX_ONNX_BYTES", "MAX_RESIZE_FACTOR", "MAX_TOKENS", "MIN_IMG_SIZE", "OnnxFile",
    "OnnxModelInfo", "build_metadata", "check_io_shapes", "check_regular_file", "checked_metadata", "class_names_problem",
    "graph_inputs", "has_control", "image_input", "is_export_of", "load_onnx_structure", "metadata_props", "parse_metadata",
    "read_onnx_file", "read_onnx_metadata", "read_regular_file", "shape_text", "shown", "value_shape", "write_metadata",
]


def build_metadata(
    model, preprocess: dict[str, Any], trained_keep_rate: tuple[float, ...], source_sha256: str | None,
    precision: str = "fp32",
) -> dict[str, str]:
    """The metadata_props of an export of ``model`` (values as strings, lists and dicts as JSON)."""
    config = model.config
    props: dict[str, Any] = {
        FORMAT_KEY: FORMAT_VERSION,
        "clca_deploy.version": __version__,
        "family": config.family,
        "model": config.model,
        "method": config.method,
        "backbone": config.backbone.name,
        "keep_rate": list(config.keep_rate),
        "trained_keep_rate": list(trained_keep_rate),
        "reduction_loc": list(config.reduction_loc),
        "token_schedule": [[s.tokens_in, s.tokens_out] for s in model.token_schedule()],
        "img_size": config.img_size,
        "resize_size": preprocess["resize_size"],
        "interpolation": preprocess["interpolation"],
        "mean": list(preprocess["mean"]),
        "std": list(preprocess["std"]),
        "num_classes": config.num_classes,
        "clca_config": config.to_dict(),
        "precision": precision,
    }
    if model.class_names:
        props["class_names"] = list(model.class_names)
    if source_sha256:
        props["source_sha256"] = source_sha256
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in props.items()}


def write_metadata(onnx_model, props: dict[str, str]) -> None:
    """Replace an in-memory ONNX model's metadata_props with ``props``, sorted by key."""
    del onnx_model.metadata_props[:]
    for key in sorted(props):
        entry = onnx_model.metadata_props.add()
        entry.key, entry.value = key, props[key]


def _parse_onnx(data: bytes, path: Path):
    import onnx

    try:
        return onnx.load_model_from_string(data)  # external weights, if any, are not read
    except Exception as exc:  # onnx raises DecodeError and others for damaged files
        raise ClcaDeployError(f"cannot read {path} as ONNX ({type(exc).__name__}); is the file complete?") from exc


def load_onnx_structure(path: str | Path):
    """The ONNX model at ``path`` without external weight data, or a clear error for a damaged or special file."""
    path = Path(path)
    return _parse_onnx(read_regular_file(path, "ONNX file", MAX_ONNX_BYTES), path)


def metadata_props(model) -> dict[str, str]:
    """A loaded ONNX model's metadata_props as a dict."""
    return {p.key: p.value for p in model.metadata_props}


def graph_inputs(model) -> list:
    """The graph's real inputs: old IRs list the weights as inputs too."""
    weights = {init.name for init in model.graph.initializer}
    return [value for value in model.graph.input if value.name not in weights]


def value_shape(value) -> tuple[int | None, ...]:
    """An ONNX graph input's or output's shape, ``None`` for a dynamic size; ``()`` when it declares none."""
    if not value.type.HasField("tensor_type"):
        return ()
    return tuple(d.dim_value if d.HasField("dim_value") else None for d in value.type.tensor_type.shape.dim)


def image_input(model, source: str) -> tuple[str, int | None]:
    """The image input's name and its fixed batch size (None when dynamic) of a loaded ONNX model."""
    inputs = graph_inputs(model)
    if len(inputs) != 1:
        raise ClcaDeployError(f"{source} has {len(inputs)} inputs; a CLCA export has exactly one (images).")
    shape = value_shape(inputs[0])
    batch = shape[0] if shape else None
    if batch is not None and not 0 < batch <= MAX_BATCH:
        raise ClcaDeployError(f"{source} takes a fixed batch of {batch}; an export takes 1..{MAX_BATCH}: export it again.")
    return inputs[0].name, batch


def _read_model(model, source: str) -> tuple[OnnxModelInfo, str, int | None]:
    """The metadata, image input name and fixed batch of a loaded ONNX model, the metadata checked against its graph."""
    info = parse_metadata(metadata_props(model), source=source)
    input_name, fixed_batch = image_input(model, source)
    outputs = list(model.graph.output)
    if len(outputs) != 1:
        raise ClcaDeployError(f"{source} has {len(outputs)} outputs; a CLCA export has exactly one (logits).")
    check_io_shapes(info, value_shape(graph_inputs(model)[0]), value_shape(outputs[0]), source)
    return info, input_name, fixed_batch


def checked_metadata(model, source: str) -> OnnxModelInfo:
    """A loaded ONNX model's metadata, every value bounded and checked against the graph's input and output."""
    return _read_model(model, source)[0]


def read_onnx_metadata(path: str | Path) -> OnnxModelInfo:
    """Metadata of an exported ONNX file, read without loading its weights, checked against the graph."""
    return checked_metadata(load_onnx_structure(path), str(path))


@dataclass(frozen=True)
class OnnxFile:
    """An exported ONNX file read once, for every step of a command that needs it (build-trt's plan,
    sidecar and checks): its checked metadata, image input and content hash."""

    path: Path
    info: OnnxModelInfo
    props: dict[str, str]  # the raw metadata_props, copied into an engine's sidecar
    input_name: str
    fixed_batch: int | None  # None: a dynamic batch dimension
    sha256: str


def read_onnx_file(path: str | Path) -> OnnxFile:
    """Read ``path`` once (its bytes give both the graph's structure and the hash), or a clear error."""
    path = Path(path)
    data = read_regular_file(path, "ONNX file", MAX_ONNX_BYTES)
    model = _parse_onnx(data, path)
    info, input_name, fixed_batch = _read_model(model, str(path))
    return OnnxFile(
        path=path, info=info, props=metadata_props(model), input_name=input_name, fixed_batch=fixed_batch,
        sha256=hashlib.sha256(data).hexdigest(),
    )


def is_export_of(path: str | Path, checkpoint_sha256: str, keep_rate: float, precision: str = "fp32") -> bool:
    """True if ``path`` is an earlier export of that checkpoint at that keep rate and precision,
    so a pipeline run again can reuse it instead of exporting (or calibrating) once more."""
    if not Path(path).is_file():
        return False
    try:
        info = read_onnx_metadata(path)
    except ClcaDeployError:
        return False
    return info.source_sha256 == checkpoint_sha256 and info.keep_rate == (keep_rate,) and info.precision == precision

"""ONNX ``metadata_props``: everything a runtime needs to preprocess an image and name its class.

Values are strings; lists and dicts are JSON. The ONNX file alone is then a complete model.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clca_deploy import __version__
from clca_deploy.errors import ClcaDeployError

FORMAT_KEY = "clca_deploy.format"
FORMAT_VERSION = "1"


@dataclass(frozen=True)
class OnnxModelInfo:
    """Parsed metadata of an exported CLCA ONNX file."""

    model: str
    method: str
    backbone: str
    keep_rate: tuple[float, ...]
    trained_keep_rate: tuple[float, ...]
    reduction_loc: tuple[int, ...]
    token_schedule: tuple[tuple[int, int], ...]
    img_size: int
    preprocess: dict[str, Any]
    num_classes: int
    class_names: tuple[str, ...] | None
    source_sha256: str | None
    clca_config: dict[str, Any]
    clca_deploy_version: str
    precision: str
    family: str = "clca"  # "clca" | "ila" | "glsim"; files from before the key are CLCA


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


def parse_metadata(props: dict[str, str], source: str = "ONNX file") -> OnnxModelInfo:
    """Checked metadata from metadata_props (of a file, or of an engine's sidecar); ``source`` names it in errors."""
    if FORMAT_KEY not in props:
        raise ClcaDeployError(
            f"{source} has no clca-deploy metadata (image size, preprocessing, classes); export the "
            "checkpoint with `clca-deploy export`, which writes them into the file."
        )
    try:
        get = lambda key: json.loads(props[key])  # noqa: E731
        names = get("class_names") if "class_names" in props else None
        info = OnnxModelInfo(
            model=props["model"],
            method=props["method"],
            backbone=props["backbone"],
            keep_rate=tuple(get("keep_rate")),
            trained_keep_rate=tuple(get("trained_keep_rate")),
            reduction_loc=tuple(get("reduction_loc")),
            token_schedule=tuple(tuple(pair) for pair in get("token_schedule")),
            img_size=int(props["img_size"]),
            preprocess={
                "img_size": int(props["img_size"]),
                "resize_size": int(props["resize_size"]),
                "interpolation": props["interpolation"],
                "mean": list(get("mean")),
                "std": list(get("std")),
            },
            num_classes=int(props["num_classes"]),
            class_names=tuple(names) if names else None,
            source_sha256=props.get("source_sha256"),
            clca_config=get("clca_config"),
            clca_deploy_version=props["clca_deploy.version"],
            precision=props.get("precision", "fp32"),
            family=props.get("family", "clca"),
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise ClcaDeployError(f"{source} has damaged clca-deploy metadata ({exc}); export it again.") from exc
    if info.class_names is not None and len(info.class_names) != info.num_classes:
        raise ClcaDeployError(
            f"{source} names {len(info.class_names)} classes in its metadata for {info.num_classes} outputs; "
            "the metadata was edited or damaged: export it again."
        )
    return info


def load_onnx_structure(path: str | Path):
    """The ONNX model at ``path`` without external weight data, or a clear error for a damaged file."""
    import onnx

    try:
        return onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError and others for damaged files
        raise ClcaDeployError(f"cannot read {path} as ONNX ({type(exc).__name__}); is the file complete?") from exc


def metadata_props(model) -> dict[str, str]:
    """A loaded ONNX model's metadata_props as a dict."""
    return {p.key: p.value for p in model.metadata_props}


def graph_inputs(model) -> list:
    """The graph's real inputs: old IRs list the weights as inputs too."""
    weights = {init.name for init in model.graph.initializer}
    return [value for value in model.graph.input if value.name not in weights]


def image_input(model, source: str) -> tuple[str, int | None]:
    """The image input's name and its fixed batch size (None when dynamic) of a loaded ONNX model."""
    inputs = graph_inputs(model)
    if len(inputs) != 1:
        raise ClcaDeployError(f"{source} has {len(inputs)} inputs; a CLCA export has exactly one (images).")
    dim = inputs[0].type.tensor_type.shape.dim[0]
    return inputs[0].name, dim.dim_value if dim.HasField("dim_value") and dim.dim_value > 0 else None


def _checked_info(model, source: str) -> OnnxModelInfo:
    """The model's metadata, checked against the graph's output width (a runtime names each score by it)."""
    info = parse_metadata(metadata_props(model), source=source)
    dims = model.graph.output[0].type.tensor_type.shape.dim if len(model.graph.output) == 1 else ()
    width = dims[-1].dim_value if dims and dims[-1].HasField("dim_value") else None
    if width is not None and width != info.num_classes:
        raise ClcaDeployError(
            f"{source} gives {width} scores per image but its metadata describes {info.num_classes} classes; "
            "the file was edited or damaged: export it again."
        )
    return info


def read_onnx_metadata(path: str | Path) -> OnnxModelInfo:
    """Metadata of an exported ONNX file, read without loading its weights, checked against the graph's
    output width."""
    return _checked_info(load_onnx_structure(path), str(path))


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
    import onnx

    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ClcaDeployError(f"cannot read {path} ({exc.strerror or exc}).") from exc
    try:
        model = onnx.load_model_from_string(data)  # external weights, if any, are not read
    except Exception as exc:  # onnx raises DecodeError and others for damaged files
        raise ClcaDeployError(f"cannot read {path} as ONNX ({type(exc).__name__}); is the file complete?") from exc
    input_name, fixed_batch = image_input(model, str(path))
    return OnnxFile(
        path=path, info=_checked_info(model, str(path)), props=metadata_props(model), input_name=input_name,
        fixed_batch=fixed_batch, sha256=hashlib.sha256(data).hexdigest(),
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

"""Engines built elsewhere (trtexec, Polygraphy): no sidecar, so the user names the ONNX file an engine was built
from (``--engine-source``), and what the loaded engine itself reports is checked against that file.

The ONNX file gives what a sidecar would (preprocessing, class names, keep rate); the engine gives its I/O
names, shapes and dtypes and its optimisation profile, checked here in plain functions over plain data. NVIDIA
offers no API that reads a plan's TensorRT version or GPU before deserializing it (NVIDIA/TensorRT issue
#3073), so for these engines TensorRT's own check at deserialization stands in for the sidecar's.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from clca_deploy.errors import ClcaDeployError
from clca_deploy.metadata import (
    MAX_ONNX_BYTES, OnnxModelInfo, checked_metadata, graph_inputs, read_regular_file, shape_text, shown, value_shape,
)
from clca_deploy.tensorrt.build import RUNTIME_NAME
from clca_deploy.tensorrt.plan import BatchProfile
from clca_deploy.tensorrt.sidecar import EngineSidecar, EngineTensor, sidecar_path

ENGINE_SOURCE_FLAG = "--engine-source"
# ONNX TensorProto element types -> numpy names, as the engine's I/O is described (sidecar.DTYPES).
_ONNX_DTYPES = {1: "float32", 2: "uint8", 3: "int8", 6: "int32", 7: "int64", 9: "bool", 10: "float16", 16: "bfloat16"}
# What the backend feeds and reads: float32 images and scores, or float16 ones (trtexec --inputIOFormats=fp16:chw).
HOST_DTYPES = ("float32", "float16")


def missing_sidecar(engine_path: Path) -> ClcaDeployError:
    """The one-line recipe for an engine without a sidecar and without ``--engine-source``."""
    return ClcaDeployError(
        f"{engine_path.name} has no sidecar {sidecar_path(engine_path).name} saying how to preprocess images and name "
        f"classes (trtexec and Polygraphy write none): add {ENGINE_SOURCE_FLAG} MODEL.onnx, the ONNX file it was built "
        "from, or rebuild it with `clca-deploy build-trt`."
    )


@dataclass(frozen=True)
class EngineSource:
    """The ONNX file an engine was built from, read once: its checked metadata, hash, and declared I/O."""

    path: Path
    info: OnnxModelInfo
    sha256: str
    input: EngineTensor  # as the ONNX graph declares it, -1 for a dynamic size
    output: EngineTensor


def _graph_tensor(value, mode: str, path: Path) -> EngineTensor:
    elem_type = value.type.tensor_type.elem_type if value.type.HasField("tensor_type") else 0
    if elem_type not in _ONNX_DTYPES:
        raise ClcaDeployError(f"{path}: {mode} {value.name!r} has ONNX element type {elem_type}; export the model again.")
    shape = tuple(-1 if size is None else size for size in value_shape(value))
    return EngineTensor(value.name, mode, _ONNX_DTYPES[elem_type], shape)


def read_engine_source(path: str | Path) -> EngineSource:
    """The ONNX file given with ``--engine-source``, read once and checked like any export (metadata against graph)."""
    import onnx

    path = Path(path)
    data = read_regular_file(path, f"{ENGINE_SOURCE_FLAG} file", MAX_ONNX_BYTES)
    try:
        model = onnx.load_model_from_string(data)  # external weights, if any, are not read
    except Exception as exc:  # onnx raises DecodeError and others for what is not ONNX
        raise ClcaDeployError(
            f"cannot read {path} as ONNX ({type(exc).__name__}); {ENGINE_SOURCE_FLAG} takes the .onnx file the engine "
            "was built from."
        ) from exc
    info = checked_metadata(model, str(path))  # one input and one output, both agreeing with the metadata
    info.refuse_other_runtime(RUNTIME_NAME, str(path))
    return EngineSource(
        path=path, info=info, sha256=hashlib.sha256(data).hexdigest(),
        input=_graph_tensor(graph_inputs(model)[0], "input", path), output=_graph_tensor(model.graph.output[0], "output", path),
    )


def check_source_matches_sidecar(source: EngineSource, sidecar: EngineSidecar, engine_path: Path) -> None:
    """An engine with a sidecar and ``--engine-source``: the two must name the same ONNX file."""
    if source.sha256 != sidecar.onnx_sha256:
        raise ClcaDeployError(
            f"{engine_path.name} was built from another ONNX file than {source.path.name} (its sidecar records sha256 "
            f"{sidecar.onnx_sha256[:12]}..., the file has {source.sha256[:12]}...): drop {ENGINE_SOURCE_FLAG}, the sidecar "
            "describes the engine."
        )


def _not_from(source: EngineSource) -> str:
    return (
        f"the engine was not built from {source.path.name}: pass the ONNX file it was built from with {ENGINE_SOURCE_FLAG}, "
        "or rebuild it with `clca-deploy build-trt`"
    )


def _engine_tensors(entries: Sequence[Mapping[str, Any]], name: str, source: EngineSource) -> tuple[EngineTensor, EngineTensor]:
    tensors = [
        EngineTensor(str(e["name"]), str(e["mode"]), str(e["dtype"]), tuple(int(size) for size in e["shape"])) for e in entries
    ]
    inputs = [t for t in tensors if t.mode == "input"]
    outputs = [t for t in tensors if t.mode == "output"]
    if len(inputs) != 1 or len(outputs) != 1:
        raise ClcaDeployError(
            f"{name} has {len(inputs)} inputs and {len(outputs)} outputs, {source.path.name} one of each; {_not_from(source)}."
        )
    return inputs[0], outputs[0]


def _check_tensor(engine: EngineTensor, declared: EngineTensor, name: str, source: EngineSource) -> None:
    what = f"{name}'s {engine.mode} {shown(engine.name)}"
    if engine.name != declared.name:
        raise ClcaDeployError(
            f"{name}'s {engine.mode} is {shown(engine.name)}, {source.path.name}'s is {shown(declared.name)}; {_not_from(source)}."
        )
    # A dynamic ONNX size may be dynamic or fixed in the engine; a fixed one must be the same.
    fits = len(engine.shape) == len(declared.shape) and all(d in (-1, e) for d, e in zip(declared.shape, engine.shape))
    if not fits:
        sizes = lambda t: shape_text(t.sizes)  # noqa: E731
        raise ClcaDeployError(
            f"{what} has shape {sizes(engine)}, {source.path.name} declares {sizes(declared)}; {_not_from(source)}."
        )
    if engine.dtype not in HOST_DTYPES:
        raise ClcaDeployError(
            f"{what} is {engine.dtype}; this tool feeds images and reads scores as float32 or float16: rebuild it with "
            "those I/O formats (trtexec --inputIOFormats / --outputIOFormats)."
        )
    # trtexec's --inputIOFormats=fp16:chw turns float32 I/O into float16; the backend converts on the host.
    if engine.dtype != declared.dtype and not (declared.dtype == "float32" and engine.dtype == "float16"):
        raise ClcaDeployError(f"{what} is {engine.dtype}, {source.path.name} declares {declared.dtype}; {_not_from(source)}.")


def _profile(image: EngineTensor, profile_shapes: Callable[[str], Sequence[Sequence[int]]], name: str) -> BatchProfile:
    """The engine's batch range: its fixed batch, or its first optimisation profile's (min, opt, max) batch sizes."""
    if image.shape[0] != -1:
        sizes = [image.shape[0]] * 3
    else:
        given = [tuple(int(d) for d in shape) for shape in profile_shapes(image.name)]
        if len(given) != 3 or any(len(s) != len(image.shape) or s[1:] != image.shape[1:] for s in given):
            raise ClcaDeployError(
                f"{name}'s optimisation profile for {shown(image.name)} is {given}, not batches of {shape_text(image.sizes)}; "
                "rebuild it with `clca-deploy build-trt`."
            )
        sizes = [s[0] for s in given]
    try:
        return BatchProfile(*sizes)
    except ClcaDeployError as exc:
        raise ClcaDeployError(f"{name}: {exc} Rebuild it with `clca-deploy build-trt`.") from None


@dataclass(frozen=True)
class ForeignEngine:
    """An engine without a sidecar, checked against its ``--engine-source``: what the backend runs it with."""

    source: EngineSource
    input: EngineTensor
    output: EngineTensor
    profile: BatchProfile

    @property
    def info(self) -> OnnxModelInfo:
        return self.source.info


def check_foreign_engine(
    source: EngineSource, io: Sequence[Mapping[str, Any]], profile_shapes: Callable[[str], Sequence[Sequence[int]]],
    name: str,
) -> ForeignEngine:
    """The engine's own I/O (``build.describe_io``) and its first optimisation profile (``profile_shapes(input)``
    gives its min, opt and max shapes; asked only for a dynamic batch, once the I/O agrees) checked against the
    ONNX file it is said to come from; ``name`` names the engine in errors."""
    image, logits = _engine_tensors(io, name, source)
    _check_tensor(image, source.input, name, source)
    _check_tensor(logits, source.output, name, source)
    return ForeignEngine(source=source, input=image, output=logits, profile=_profile(image, profile_shapes, name))


def cannot_load(engine_path: Path, source: EngineSource, tensorrt_version: str) -> ClcaDeployError:
    """TensorRT refused to deserialize an engine without a sidecar: most often another TensorRT or GPU built it."""
    return ClcaDeployError(
        f"TensorRT {tensorrt_version} cannot load {engine_path.name} (its messages above say why): a plan loads only on "
        f"the exact TensorRT version and the GPU architecture that built it, which a plan without a sidecar does not "
        f"tell beforehand; rebuild it here from {source.path.name} (`clca-deploy build-trt {source.path.name}`, or trtexec)."
    )

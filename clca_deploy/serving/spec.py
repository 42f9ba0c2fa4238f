"""What a Triton configuration needs to know about a classifier file, read from the file itself.

An exported ONNX carries its I/O in the graph and everything else in its metadata; an engine
carries both in its sidecar (written by `clca-deploy build-trt`). Nothing here loads weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from clca_deploy.errors import ClcaDeployError
from clca_deploy.metadata import OnnxModelInfo, checked_metadata, graph_inputs, load_onnx_structure
from clca_deploy.runtime.base import ONNX_FILE, TENSORRT_ENGINE
from clca_deploy.runtime.registry import file_format

if TYPE_CHECKING:
    from clca_deploy.tensorrt.plan import BatchProfile
    from clca_deploy.tensorrt.sidecar import EngineTensor

# ONNX TensorProto element types and numpy dtype names -> Triton's data types.
_ONNX_TRITON_TYPES = {1: "TYPE_FP32", 10: "TYPE_FP16", 7: "TYPE_INT64", 6: "TYPE_INT32", 3: "TYPE_INT8", 2: "TYPE_UINT8"}
_NUMPY_TRITON_TYPES = {"float32": "TYPE_FP32", "float16": "TYPE_FP16", "int64": "TYPE_INT64", "int32": "TYPE_INT32",
                       "int8": "TYPE_INT8", "uint8": "TYPE_UINT8"}
# What the preprocessing model makes and the postprocessing model reads: float images, float scores.
_FLOAT_TYPES = ("TYPE_FP32", "TYPE_FP16")


@dataclass(frozen=True)
class TensorSpec:
    """One model input or output without its batch dimension, as Triton declares it."""

    name: str
    data_type: str  # Triton's name, e.g. TYPE_FP32
    dims: tuple[int, ...]


@dataclass(frozen=True)
class ClassifierSpec:
    """A classifier file as Triton sees it: format, I/O, batching limits, and what its answers mean."""

    path: Path
    format: str  # runtime.base's name of the file's format: ONNX_FILE or TENSORRT_ENGINE
    input: TensorSpec
    output: TensorSpec
    max_batch: int | None  # largest batch the file accepts; None: any
    info: OnnxModelInfo
    # The engine's SHA-256 as its sidecar records it (the bytes packaged must have it); None for an ONNX file.
    sha256: str | None = None
    # Where an ONNX file keeps weights outside itself: its external data locations, as the file names them.
    external_data: tuple[str, ...] = ()
    # The batches an engine was built for (min..max, tuned for opt), from its sidecar; None for an ONNX file.
    batch_profile: BatchProfile | None = None

    @property
    def num_classes(self) -> int:
        return self.info.num_classes

    @property
    def class_names(self) -> tuple[str, ...]:
        """Names the classifier's answers carry; `class i` where the export had none."""
        return self.info.class_names or tuple(f"class {i}" for i in range(self.info.num_classes))


def read_classifier_spec(path: str | Path) -> ClassifierSpec:
    """The spec of an exported ONNX file or of an engine built by `clca-deploy build-trt`."""
    path = Path(path)
    if not path.is_file():
        raise ClcaDeployError(f"model file not found: {path}. Check the path.")
    kind = file_format(path)
    readers = {ONNX_FILE: _spec_from_onnx, TENSORRT_ENGINE: _spec_from_engine}
    if kind not in readers:
        raise ClcaDeployError(
            f"{path} is a {kind}; Triton serves an exported ONNX file (.onnx) or a TensorRT engine "
            "(.engine/.plan): export one with `clca-deploy export` (or `build-trt`) first."
        )
    return readers[kind](path)


def _spec_from_onnx(path: Path) -> ClassifierSpec:
    model = load_onnx_structure(path)
    info = checked_metadata(model, str(path))  # bounded, and its image size and classes match the graph's I/O
    inputs = graph_inputs(model)
    outputs = list(model.graph.output)
    if len(inputs) != 1 or len(outputs) != 1:
        raise ClcaDeployError(f"{path} has {len(inputs)} inputs and {len(outputs)} outputs; a CLCA export has one of each.")
    (first_input,), (first_output,) = inputs, outputs
    batch, image = _onnx_dims(first_input, path)
    _, logits = _onnx_dims(first_output, path)
    if batch is not None:
        raise ClcaDeployError(
            f"{path} was exported for a fixed batch of {batch}; Triton batches requests only on a dynamic batch "
            "dimension: export it again without --batch."
        )
    spec = ClassifierSpec(
        path=path,
        format=ONNX_FILE,
        input=TensorSpec(first_input.name, _onnx_type(first_input, path), image),
        output=TensorSpec(first_output.name, _onnx_type(first_output, path), logits),
        max_batch=None,
        info=info,
        external_data=external_data_locations(model),
    )
    _check_float_io(spec)
    return spec


def _onnx_dims(value, path: Path) -> tuple[int | None, tuple[int, ...]]:
    dims = value.type.tensor_type.shape.dim
    sizes = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in dims]
    if not sizes or None in sizes[1:]:
        raise ClcaDeployError(f"{path}: {value.name!r} has shape {sizes}; only the batch dimension may be dynamic.")
    return sizes[0], tuple(sizes[1:])


def _onnx_type(value, path: Path) -> str:
    elem_type = value.type.tensor_type.elem_type
    if elem_type not in _ONNX_TRITON_TYPES:
        raise ClcaDeployError(f"{path}: {value.name!r} has ONNX element type {elem_type}, which this tool does not serve.")
    return _ONNX_TRITON_TYPES[elem_type]


def external_data_locations(model) -> tuple[str, ...]:
    """The external data locations of every tensor of an ONNX graph: initializers, and the tensors of node
    attributes and subgraphs (a Constant node can keep its value outside the file too)."""
    locations: dict[str, None] = {}

    def tensor(value) -> None:
        if value.data_location == 1 or len(value.external_data):  # 1: TensorProto.EXTERNAL
            locations.setdefault(next((e.value for e in value.external_data if e.key == "location"), ""))

    def graph(value) -> None:
        for initializer in value.initializer:
            tensor(initializer)
        for sparse in value.sparse_initializer:
            tensor(sparse.values)
            tensor(sparse.indices)
        for node in value.node:
            for attribute in node.attribute:
                for item in (*([attribute.t] if attribute.HasField("t") else []), *attribute.tensors):
                    tensor(item)
                for item in (*([attribute.g] if attribute.HasField("g") else []), *attribute.graphs):
                    graph(item)

    graph(model.graph)
    return tuple(locations)


def _spec_from_engine(path: Path) -> ClassifierSpec:
    from clca_deploy.tensorrt.sidecar import REBUILD, load_sidecar

    sidecar = load_sidecar(path)  # every field typed and bounded, its metadata checked against its I/O
    if sidecar.engine_sha256 is None:
        # Without it nothing ties the plan to this sidecar: a swapped or torn engine would be packaged as is.
        raise ClcaDeployError(
            f"the sidecar of {path.name} records no engine_sha256, so the engine cannot be checked against it; {REBUILD}."
        )
    spec = ClassifierSpec(
        path=path,
        format=TENSORRT_ENGINE,
        input=_engine_tensor(sidecar.input, path),
        output=_engine_tensor(sidecar.output, path),
        max_batch=sidecar.profile.max,
        info=sidecar.info,
        sha256=sidecar.engine_sha256,
        batch_profile=sidecar.profile,
    )
    _check_float_io(spec)
    return spec


def _engine_tensor(tensor: "EngineTensor", path: Path) -> TensorSpec:
    shape = tensor.shape
    if any(d <= 0 for d in shape[1:]):
        raise ClcaDeployError(f"{path.name}: {tensor.name!r} has shape {list(shape)}; only the batch dimension may be dynamic.")
    if shape[0] != -1:
        raise ClcaDeployError(
            f"{path.name} takes a fixed batch of {shape[0]}; Triton batches requests only on a dynamic batch "
            "dimension: build it from an ONNX exported without --batch."
        )
    if tensor.dtype not in _NUMPY_TRITON_TYPES:
        raise ClcaDeployError(f"{path.name}: {tensor.name!r} has type {tensor.dtype}, which this tool does not serve.")
    return TensorSpec(tensor.name, _NUMPY_TRITON_TYPES[tensor.dtype], tuple(shape[1:]))


def _check_float_io(spec: ClassifierSpec) -> None:
    """Refuse a classifier that does not take float images or give float scores: the preprocessing model
    makes float pixels and the postprocessing model reads float logits (the shapes are checked against
    the metadata where the file is read)."""
    for role, tensor in (("input", spec.input), ("output", spec.output)):
        if tensor.data_type not in _FLOAT_TYPES:
            raise ClcaDeployError(
                f"{spec.path.name}: its {role} {tensor.name!r} is {tensor.data_type}, not float; a CLCA classifier takes float "
                "images [N, 3, S, S] and gives float scores [N, classes]: export the model again with `clca-deploy export`."
            )

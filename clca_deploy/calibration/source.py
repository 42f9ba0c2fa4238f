"""The FP32 export that calibration and FP16 conversion read: loaded once, checked before any work.

An .onnx file is untrusted input. Two things in one would make the libraries called later fail with a
traceback, or read and allocate what the user never meant:

- weights in external data files: the file names another file (any path the writer chose) that
  onnxruntime's quantizer would read. `clca-deploy export` always writes one self-contained file, so
  such a file is refused in one line rather than copied (nothing but that file is ever read).
- a declared size no real model has: an initializer, a Constant or a graph shape declaring more than
  ``MAX_DECLARED_ELEMENTS`` elements, or a tensor whose stored values do not match its declared shape
  (onnxruntime or numpy would size a buffer from the shape before noticing).
"""

from __future__ import annotations

import math
from pathlib import Path

from clca_deploy.errors import ClcaDeployError

# 2**31 elements (8 GiB of fp32) in one tensor: a protobuf file cannot even hold that much data, and
# a ViT-L's largest weight or a 448 px attention map at batch 64 is far below it.
MAX_DECLARED_ELEMENTS = 1 << 31

# Bytes per stored element of the types a float export holds; other types get the size check only.
_ITEM_BYTES = {1: 4, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 12: 4, 13: 8, 16: 2}
# Which repeated field holds each type's values when raw_data is empty (onnx.proto's TensorProto).
_TYPED_FIELD = {1: "float_data", 11: "double_data", 7: "int64_data", 13: "uint64_data", 12: "uint64_data"}


def load_fp32_export(onnx_path: str | Path, what: str):
    """(model, metadata) of an FP32 export, read once: refused in one line if it is another precision, keeps
    its weights in external files, or declares tensors no real model has; ``what`` names the step."""
    from clca_deploy.metadata import checked_metadata, load_onnx_structure

    model = load_onnx_structure(onnx_path)  # external data is never followed here
    info = checked_metadata(model, str(onnx_path))
    if info.precision != "fp32":
        raise ClcaDeployError(f"{onnx_path} is already {info.precision}; {what} the FP32 export.")
    check_tensors(model, str(onnx_path))
    return model, info


def check_tensors(model, source: str) -> None:
    """Refuse external data, and any declared tensor over MAX_DECLARED_ELEMENTS or unlike its stored data."""
    for graph in _graphs(model.graph):
        for tensor in _stored_tensors(graph):
            _check_stored(tensor, source)
        for value in (*graph.input, *graph.output, *graph.value_info):
            if value.type.HasField("tensor_type") and value.type.tensor_type.HasField("shape"):
                dims = [d.dim_value if d.HasField("dim_value") else 1 for d in value.type.tensor_type.shape.dim]
                _check_count(dims, f"graph value {value.name!r}", source)


def _graphs(graph):
    """The graph and every subgraph (If/Loop/Scan bodies), depth first."""
    yield graph
    for node in graph.node:
        for attribute in node.attribute:
            for sub in ([attribute.g] if attribute.HasField("g") else []) + list(attribute.graphs):
                yield from _graphs(sub)


def _stored_tensors(graph):
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
            if attribute.HasField("sparse_tensor"):
                yield attribute.sparse_tensor.values
                yield attribute.sparse_tensor.indices


def _check_count(dims, what: str, source: str) -> int:
    if any(d < 0 for d in dims):
        raise ClcaDeployError(f"{source} declares a negative dimension for {what} {list(dims)}; the file is damaged.")
    count = math.prod(dims)
    if count > MAX_DECLARED_ELEMENTS:
        raise ClcaDeployError(
            f"{source} declares {count:.3g} elements for {what} (at most {MAX_DECLARED_ELEMENTS:.3g} are accepted); "
            "the file is damaged or not an export: export the model again."
        )
    return count


def _check_stored(tensor, source: str) -> None:
    from onnx import TensorProto

    if tensor.data_location == TensorProto.EXTERNAL or len(tensor.external_data):
        location = next((e.value for e in tensor.external_data if e.key == "location"), "?")
        raise ClcaDeployError(
            f"{source} keeps its weights in an external data file ({location!r}); only self-contained ONNX files "
            "are read (as `clca-deploy export` writes them): export again, or merge the data into the file."
        )
    what = f"tensor {tensor.name!r}"
    count = _check_count(list(tensor.dims), what, source)
    item = _ITEM_BYTES.get(tensor.data_type)
    if item is None:
        return
    if tensor.raw_data:
        stored = len(tensor.raw_data) / item
    else:
        stored = len(getattr(tensor, _TYPED_FIELD.get(tensor.data_type, "int32_data")))
    if stored != count:
        raise ClcaDeployError(
            f"{source} declares {count} elements for {what} but stores {stored:g}; the file is damaged: export it again."
        )

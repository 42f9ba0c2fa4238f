"""What a Triton configuration needs to know about a classifier file, read from the file itself.

An exported ONNX carries its I/O in the graph and everything else in its metadata; an engine
carries both in its sidecar (written by `clca-deploy build-trt`). Nothing here loads weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clca_deploy.errors import ClcaDeployError
from clca_deploy.metadata import OnnxModelInfo, graph_inputs, load_onnx_structure, metadata_props, parse_metadata
from clca_deploy.runtime.base import ONNX_FILE, TENSORRT_ENGINE
from clca_deploy.runtime.registry import file_format

# ONNX TensorProto element types and numpy dtype names -> Triton's data types.
_ONNX_TRITON_TYPES = {1: "TYPE_FP32", 10: "TYPE_FP16", 7: "TYPE_INT64", 6: "TYPE_INT32", 3: "TYPE_INT8", 2: "TYPE_UINT8"}
_NUMPY_TRITON_TYPES = {"float32": "TYPE_FP32", "float16": "TYPE_FP16", "int64": "TYPE_INT64", "int32": "TYPE_INT32",
                       "int8": "TYPE_INT8", "uint8": "TYPE_UINT8"}


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
    info = parse_metadata(metadata_props(model), source=str(path))
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
    return ClassifierSpec(
        path=path,
        format=ONNX_FILE,
        input=TensorSpec(first_input.name, _onnx_type(first_input, path), image),
        output=TensorSpec(first_output.name, _onnx_type(first_output, path), logits),
        max_batch=None,
        info=info,
    )


def _onnx_dims(value, path: Path) -> tuple[int | None, tuple[int, ...]]:
    dims = value.type.tensor_type.shape.dim
    sizes = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in dims]
    if not sizes or None in sizes[1:]:
        raise ClcaDeployError(f"{path}: {value.name} has shape {sizes}; only the batch dimension may be dynamic.")
    return sizes[0], tuple(sizes[1:])


def _onnx_type(value, path: Path) -> str:
    elem_type = value.type.tensor_type.elem_type
    if elem_type not in _ONNX_TRITON_TYPES:
        raise ClcaDeployError(f"{path}: {value.name} has ONNX element type {elem_type}, which this tool does not serve.")
    return _ONNX_TRITON_TYPES[elem_type]


def _spec_from_engine(path: Path) -> ClassifierSpec:
    from clca_deploy.tensorrt.sidecar import load_sidecar

    sidecar = load_sidecar(path)
    info = parse_metadata(sidecar.get("onnx_metadata", {}), source=f"sidecar of {path.name}")
    try:
        inputs = [entry for entry in sidecar["io"] if entry["mode"] == "input"]
        outputs = [entry for entry in sidecar["io"] if entry["mode"] == "output"]
        profile_max = int(sidecar["profiles"][0]["max"])
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise ClcaDeployError(f"the sidecar of {path.name} lacks its I/O or batch profile ({exc}); rebuild it with `clca-deploy build-trt`.") from exc
    if len(inputs) != 1 or len(outputs) != 1:
        raise ClcaDeployError(f"{path.name} has {len(inputs)} inputs and {len(outputs)} outputs; a CLCA engine has one of each.")
    return ClassifierSpec(
        path=path,
        format=TENSORRT_ENGINE,
        input=_engine_tensor(inputs[0], path),
        output=_engine_tensor(outputs[0], path),
        max_batch=profile_max,
        info=info,
    )


def _engine_tensor(entry: dict[str, Any], path: Path) -> TensorSpec:
    shape = [int(d) for d in entry["shape"]]
    if not shape or any(d <= 0 for d in shape[1:]):
        raise ClcaDeployError(f"{path.name}: {entry['name']} has shape {shape}; only the batch dimension may be dynamic.")
    if shape[0] != -1:
        raise ClcaDeployError(
            f"{path.name} takes a fixed batch of {shape[0]}; Triton batches requests only on a dynamic batch "
            "dimension: build it from an ONNX exported without --batch."
        )
    if entry["dtype"] not in _NUMPY_TRITON_TYPES:
        raise ClcaDeployError(f"{path.name}: {entry['name']} has type {entry['dtype']}, which this tool does not serve.")
    return TensorSpec(entry["name"], _NUMPY_TRITON_TYPES[entry["dtype"]], tuple(shape[1:]))

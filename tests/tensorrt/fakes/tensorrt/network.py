"""Fake TensorRT network definition side: Logger, INetworkDefinition, OnnxParser and its IParserError.

The parser refuses a logger or network that is not this install's, reports a missing file as TensorRT does,
and takes from the ONNX file only what the fake builder needs (I/O names, shapes, precision metadata).
"""

from __future__ import annotations

from pathlib import Path

from ..recording import Fake

ONNX_TO_TRT = {1: "FLOAT", 10: "HALF", 3: "INT8", 6: "INT32", 9: "BOOL"}  # ONNX element types -> trt.DataType names


def read_network(path: str) -> dict:
    """What the fake parser takes from an ONNX file: I/O names, shapes (-1 dynamic), TensorRT dtypes, precision."""
    import onnx

    model = onnx.load(path, load_external_data=False)
    dims = lambda value: [d.dim_value if d.HasField("dim_value") else -1 for d in value.type.tensor_type.shape.dim]  # noqa: E731
    dtype = lambda value: ONNX_TO_TRT.get(value.type.tensor_type.elem_type, "FLOAT")  # noqa: E731
    props = {p.key: p.value for p in model.metadata_props}
    return {
        "inputs": [{"name": v.name, "shape": dims(v), "dtype": dtype(v)} for v in model.graph.input],
        "outputs": [{"name": v.name, "shape": dims(v), "dtype": dtype(v)} for v in model.graph.output],
        "precision": props.get("precision", "fp32"),
    }


class Logger(Fake):
    """``trt.Logger(...)`` and ``trt.ILogger``; the severities live on the ``trt.Logger`` namespace."""

    _api_name = "Logger"

    def __init__(self, min_severity=None):
        super().__init__()
        self._severity = min_severity


class IParserError(Fake):
    _api_name = "IParserError"

    def __init__(self, text):
        super().__init__()
        self._text = text

    def __str__(self):
        return self._text

    def desc(self):
        return self._text


class INetworkDefinition(Fake):
    _api_name = "INetworkDefinition"

    def __init__(self, strongly_typed):
        super().__init__()
        self._strongly_typed, self._graph = strongly_typed, None


class OnnxParser(Fake):
    _api_name = "OnnxParser"

    def __init__(self, network, logger):
        super().__init__()
        if not isinstance(network, self._env.INetworkDefinition) or not isinstance(logger, self._env.Logger):
            raise TypeError("OnnxParser(network: INetworkDefinition, logger: ILogger)")
        self._network, self._errors = network, []

    def parse_from_file(self, model):
        if not Path(model).is_file():
            self._errors = [f"Failed to open file: {model}"]
        elif self._env.controls.parser_errors:
            self._errors = list(self._env.controls.parser_errors)
        else:
            self._network._graph = read_network(str(model))
        return not self._errors

    @property
    def num_errors(self):
        return len(self._errors)

    def get_error(self, index):
        return self._env.IParserError(self._errors[index])

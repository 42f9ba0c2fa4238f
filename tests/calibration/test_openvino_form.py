"""OpenVINO's form of an INT8 file, on small graphs: what is rewritten, what is kept, and that the
arithmetic is the Q/DQ file's where the ranges are symmetric and finer where a range is one-sided."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from clca_deploy.calibration.openvino_form import OPENVINO_DOMAIN, openvino_form, openvino_form_path
from clca_deploy.metadata import metadata_props

SCALE = 0.01


def _qdq_graph(producer: str) -> onnx.ModelProto:
    """x -> PRODUCER -> Q/DQ (scale 0.01, zero point 0) -> MatMul with a per-channel int8 weight -> y."""
    init = [
        numpy_helper.from_array(np.array(SCALE, np.float32), "x_scale"),
        numpy_helper.from_array(np.array(0, np.int8), "x_zero"),
        numpy_helper.from_array(np.array([[2, -3], [5, 7], [-1, 4]], np.int8), "w_q"),
        numpy_helper.from_array(np.array([0.02, 0.03], np.float32), "w_scale"),
        numpy_helper.from_array(np.zeros(2, np.int8), "w_zero"),
    ]
    nodes = [
        helper.make_node(producer, ["x"], ["a"], name="producer", **({"axis": -1} if producer == "Softmax" else {})),
        helper.make_node("QuantizeLinear", ["a", "x_scale", "x_zero"], ["a_q"], name="a_QuantizeLinear"),
        helper.make_node("DequantizeLinear", ["a_q", "x_scale", "x_zero"], ["a_dq"], name="a_DequantizeLinear"),
        helper.make_node("DequantizeLinear", ["w_q", "w_scale", "w_zero"], ["w"], name="w_DequantizeLinear", axis=1),
        helper.make_node("MatMul", ["a_dq", "w"], ["y"], name="gemm"),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 2])], initializer=init)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.metadata_props.add(key="precision", value="int8")
    return model


def _edges(model, fake_quantize) -> tuple[float, float]:
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    low, high, out_low, out_high = (float(inits[name]) for name in fake_quantize.input[1:])
    assert (low, high) == (out_low, out_high)  # the dequantized range: the output is the float value
    return low, high


def test_the_rewrite_replaces_each_activation_pair_and_keeps_weights_without_a_zero_point():
    rewritten = openvino_form(_qdq_graph("Relu"))
    ops = [(n.op_type, n.domain) for n in rewritten.graph.node]
    assert ops == [("Relu", ""), ("FakeQuantize", OPENVINO_DOMAIN), ("DequantizeLinear", ""), ("MatMul", "")]
    fake_quantize, weight = rewritten.graph.node[1], rewritten.graph.node[2]
    assert next(a.i for a in fake_quantize.attribute if a.name == "levels") == 256
    assert _edges(rewritten, fake_quantize) == pytest.approx((-128 * SCALE, 127 * SCALE))
    assert list(weight.input) == ["w_q", "w_scale"]  # zero point dropped: OpenVINO then adds no Subtract
    assert rewritten.graph.node[3].input[0] == fake_quantize.output[0]
    assert {i.name for i in rewritten.graph.initializer} >= {"w_q", "w_scale"} and "x_zero" not in {i.name for i in rewritten.graph.initializer}
    assert any(o.domain == OPENVINO_DOMAIN for o in rewritten.opset_import)
    assert metadata_props(rewritten)["only_runtime"] == "openvino" and metadata_props(rewritten)["precision"] == "int8"


def test_a_softmax_range_spends_every_level_on_what_occurs():
    rewritten = openvino_form(_qdq_graph("Softmax"))
    low, high = _edges(rewritten, rewritten.graph.node[1])
    assert (low, high) == pytest.approx((0.0, 127 * SCALE))  # 255 steps over [0, max]: half the Q/DQ step


def test_the_path_sits_beside_the_int8_file(tmp_path):
    assert openvino_form_path(tmp_path / "model.int8.onnx") == tmp_path / "model.int8.openvino.onnx"


def test_openvino_computes_what_the_qdq_file_computes_on_a_symmetric_range():
    ov = pytest.importorskip("openvino")
    import onnxruntime as ort

    model = _qdq_graph("Relu")
    x = np.random.default_rng(0).uniform(-1.5, 1.5, (4, 3)).astype(np.float32)
    expected = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    compiled = ov.Core().compile_model(ov.Core().read_model(openvino_form(model).SerializeToString(), b""), "CPU",
                                       {"INFERENCE_PRECISION_HINT": "f32"})
    np.testing.assert_allclose(compiled({0: x})[0], expected, atol=1e-6)

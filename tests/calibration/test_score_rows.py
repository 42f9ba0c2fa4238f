"""EViT's token-score row recomputed apart from the attention (score_rows.py): same numbers, one
reader of the softmax, and graphs that are not such a read left alone."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from clca_deploy.calibration.score_rows import separate_score_rows

SHAPE = [2, 3, 5, 4]  # batch, heads, tokens, head width


def _attention(row_index=0, gather_axis=2, softmax_axis=-1, probs_rank=4) -> onnx.ModelProto:
    """q, k, v -> probs = Softmax(q @ k^T); out = probs @ v; scores = probs[:, :, ROW] (EViT's read)."""
    nodes = [
        helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 1, 3, 2]),
        helper.make_node("MatMul", ["q", "kt"], ["logits"], name="qk"),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=softmax_axis, name="softmax"),
        helper.make_node("MatMul", ["probs", "v"], ["out"], name="pv"),
        helper.make_node("Gather", ["probs", "row"], ["scores"], axis=gather_axis, name="select"),
    ]
    batch, heads, tokens, width = SHAPE
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, SHAPE) for n in ("q", "k", "v")]
    outputs = [helper.make_tensor_value_info("out", TensorProto.FLOAT, SHAPE),
               helper.make_tensor_value_info("scores", TensorProto.FLOAT, [batch, heads, tokens])]
    probs_shape = [batch, heads, tokens, tokens][:probs_rank]
    graph = helper.make_graph(nodes, "attention", inputs, outputs,
                              initializer=[numpy_helper.from_array(np.array(row_index, np.int64), "row")],
                              value_info=[helper.make_tensor_value_info("probs", TensorProto.FLOAT, probs_shape)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def _run(model: onnx.ModelProto) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    feeds = {name: rng.normal(size=SHAPE).astype(np.float32) for name in ("q", "k", "v")}
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def _readers(model: onnx.ModelProto, tensor: str) -> list[str]:
    return [node.op_type for node in model.graph.node if tensor in node.input]


@pytest.mark.parametrize("row_index", [0, 3])
def test_the_score_row_is_recomputed_with_the_same_numbers(row_index):
    model = _attention(row_index)
    expected = _run(model)
    rewritten = onnx.ModelProto()
    rewritten.CopyFrom(model)
    assert separate_score_rows(rewritten.graph) == 1
    onnx.checker.check_model(rewritten)
    assert _readers(rewritten, "probs") == ["MatMul"]  # the attention has one reader again
    out, scores = _run(rewritten)
    np.testing.assert_array_equal(out, expected[0])
    assert scores.shape == expected[1].shape == (2, 3, 5)
    np.testing.assert_allclose(scores, expected[1], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("variant", [{"gather_axis": 3}, {"softmax_axis": 2}, {"probs_rank": 3}])
def test_reads_that_are_not_a_row_of_the_attention_are_left_alone(variant):
    model = _attention(**variant)
    before = model.SerializeToString()
    assert separate_score_rows(model.graph) == 0
    assert model.SerializeToString() == before

"""q, k and v projected apart in OpenVINO's form (head_split.py), on one small attention block laid out
as the exporter writes it: the same numbers before and after (OpenVINO or onnxruntime computing both
graphs), the quantize steps where the GEMMs write, and the patterns that do not match left alone."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from clca_deploy.calibration.head_split import quantize_before_head_merge, split_attention_heads
from clca_deploy.calibration.openvino_form import OPENVINO_DOMAIN

TOKENS, HEADS, WIDTH = 5, 2, 4
CHANNELS = HEADS * WIDTH
SCALE = 0.5  # the attention's q scale (1 / sqrt(WIDTH))


def _constant(name: str, value) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(value), name)


def _fake_quantize(source: str, output: str, edge) -> tuple[onnx.NodeProto, list]:
    """OpenVINO's FakeQuantize over [-edge, edge * 127/128]; ``edge`` one number, or one per channel."""
    names = [f"{output}_low", f"{output}_high"]
    node = helper.make_node("FakeQuantize", [source, *names, *names], [output], name=output, domain=OPENVINO_DOMAIN,
                            levels=256)
    edge = np.asarray(edge, np.float32)
    return node, [_constant(names[0], -edge), _constant(names[1], edge * np.float32(127 / 128))]


def _block(quantized: bool = True, per_tensor_weight: bool = False, keys_read_twice: bool = False,
           slice_axis: int = 0, output_edge=1.0, parts_given_out: bool = False) -> onnx.ModelProto:
    """x -> qkv (int8 or float weight) + bias -> head split -> q * SCALE, k^T (each quantized when ``quantized``)
    -> attention -> head merge -> (quantized) -> proj -> y."""
    rng = np.random.default_rng(0)
    nodes, init = [], []

    def fq(source, output, edge):
        if not quantized:
            return [helper.make_node("Identity", [source], [output], name=output)]
        node, constants = _fake_quantize(source, output, edge)
        init.extend(constants)
        return [node]

    if quantized:
        int8 = rng.integers(-127, 128, (CHANNELS, 3 * CHANNELS)).astype(np.int8)
        scales = np.float32(0.01) if per_tensor_weight else rng.uniform(0.005, 0.02, 3 * CHANNELS).astype(np.float32)
        init += [_constant("qkv_int8", int8), _constant("qkv_scale", scales)]
        nodes.append(helper.make_node("DequantizeLinear", ["qkv_int8", "qkv_scale"], ["qkv_weight"], name="qkv_dq", axis=1))
    else:
        init.append(_constant("qkv_weight", rng.normal(0, 0.3, (CHANNELS, 3 * CHANNELS)).astype(np.float32)))
    init += [_constant("qkv_bias", rng.normal(0, 0.1, 3 * CHANNELS).astype(np.float32)),
             _constant("split_shape", np.array([-1, TOKENS, 3, HEADS, WIDTH], np.int64)),
             _constant("merge_shape", np.array([-1, TOKENS, CHANNELS], np.int64)),
             _constant("scale", np.float32(SCALE)), _constant("axis", np.array([slice_axis], np.int64)),
             _constant("proj_weight", rng.normal(0, 0.3, (CHANNELS, 3)).astype(np.float32))]
    init += [_constant(f"at{j}", np.array([j], np.int64)) for j in range(4)]
    nodes += fq("x", "x_int8", 2.0)
    nodes += [helper.make_node("MatMul", ["x_int8", "qkv_weight"], ["qkv_gemm"], name="qkv"),
              helper.make_node("Add", ["qkv_gemm", "qkv_bias"], ["qkv_out"], name="qkv_bias_add"),
              helper.make_node("Reshape", ["qkv_out", "split_shape"], ["split"], name="split", allowzero=1),
              helper.make_node("Transpose", ["split"], ["parts"], name="parts", perm=[2, 0, 3, 1, 4])]
    for j, part in enumerate("qkv"):
        nodes += [helper.make_node("Slice", ["parts", f"at{j}", f"at{j + 1}", "axis"], [f"{part}_slice"], name=f"{part}_slice"),
                  helper.make_node("Squeeze", [f"{part}_slice", "at0"], [part], name=f"{part}_squeeze")]
    nodes.append(helper.make_node("Mul", ["q", "scale"], ["q_scaled"], name="q_scale"))
    nodes.append(helper.make_node("Transpose", ["k"], ["k_t"], name="k_t", perm=[0, 1, 3, 2]))
    nodes += fq("q_scaled", "q_int8", 1.5) + fq("k_t", "k_int8", 3.0)
    nodes += [helper.make_node("MatMul", ["q_int8", "k_int8"], ["logits"], name="qk"),
              helper.make_node("Softmax", ["logits"], ["probs"], name="softmax", axis=-1),
              helper.make_node("MatMul", ["probs", "v"], ["attended"], name="pv"),
              helper.make_node("Transpose", ["attended"], ["merged_t"], name="merge_t", perm=[0, 2, 1, 3]),
              helper.make_node("Reshape", ["merged_t", "merge_shape"], ["merged"], name="merge")]
    nodes += fq("merged", "merged_int8", output_edge)
    nodes.append(helper.make_node("MatMul", ["merged_int8", "proj_weight"], ["y"], name="proj"))
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, TOKENS, 3])]
    if keys_read_twice:
        outputs.append(helper.make_tensor_value_info("k", TensorProto.FLOAT, [1, HEADS, TOKENS, WIDTH]))
    if parts_given_out:
        outputs.append(helper.make_tensor_value_info("parts", TensorProto.FLOAT, [3, 1, HEADS, TOKENS, WIDTH]))
    graph = helper.make_graph(nodes, "block", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, TOKENS, CHANNELS])],
                              outputs, initializer=init)
    opsets = [helper.make_opsetid("", 18)] + ([helper.make_opsetid(OPENVINO_DOMAIN, 1)] if quantized else [])
    return helper.make_model(graph, opset_imports=opsets)


def _rewritten(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int, int]:
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    return copy, split_attention_heads(copy.graph), quantize_before_head_merge(copy.graph)


def _x() -> np.ndarray:
    return np.random.default_rng(1).uniform(-2, 2, (1, TOKENS, CHANNELS)).astype(np.float32)


def _openvino(model: onnx.ModelProto) -> list[np.ndarray]:
    ov = pytest.importorskip("openvino")
    core = ov.Core()
    compiled = core.compile_model(core.read_model(model.SerializeToString(), b""), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    result = compiled({0: _x()})
    return [result[output] for output in compiled.outputs]


def _onnxruntime(model: onnx.ModelProto) -> list[np.ndarray]:
    import onnxruntime as ort

    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": _x()})


def _reader_of(model: onnx.ModelProto, tensor_of: str) -> str:
    """The op type of the node that writes the input of the node that writes ``tensor_of``."""
    producers = {out: node for node in model.graph.node for out in node.output}
    return producers[producers[tensor_of].input[0]].op_type


@pytest.mark.parametrize("per_tensor_weight", [False, True])
def test_openvino_computes_the_same_block_with_q_k_v_projected_apart(per_tensor_weight):
    model = _block(per_tensor_weight=per_tensor_weight)
    rewritten, projections, merges = _rewritten(model)
    assert (projections, merges) == (1, 1)
    onnx.checker.check_model(rewritten)
    (expected,), (actual,) = _openvino(model), _openvino(rewritten)
    assert np.abs(expected).max() > 0.1  # the block computes something
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5)


def test_each_quantize_step_reads_its_gemm_and_the_head_split_moves_int8():
    rewritten, _, _ = _rewritten(_block())
    gemms = [node for node in rewritten.graph.node if node.op_type == "MatMul" and node.input[0] == "x_int8"]
    assert len(gemms) == 3  # q, k, v: the one projection is gone
    assert _reader_of(rewritten, "q_int8") == _reader_of(rewritten, "k_int8") == "Reshape"
    fake_quantizes = {node.output[0]: node for node in rewritten.graph.node if node.op_type == "FakeQuantize"}
    producers = {out: node for node in rewritten.graph.node for out in node.output}
    reads = sorted(producers[node.input[0]].op_type for node in fake_quantizes.values() if node.input[0] != "x")
    assert reads == ["Add", "Add", "MatMul"]  # q and k at their GEMMs' bias, the output at the attention's MatMul
    assert not any(node.op_type == "Mul" for node in rewritten.graph.node)  # q's scale is in its weight scales now
    permutations = {node.output[0]: list(node.attribute[0].ints) for node in rewritten.graph.node if node.op_type == "Transpose"}
    assert permutations["q_int8"] == [0, 2, 1, 3] and permutations["k_int8"] == [0, 2, 3, 1] and permutations["v"] == [0, 2, 1, 3]


def test_a_float_block_is_split_and_keeps_its_scale_where_it_was():
    model = _block(quantized=False)
    rewritten, projections, merges = _rewritten(model)
    assert (projections, merges) == (1, 0)  # nothing quantized: nothing to move
    assert any(node.op_type == "Mul" for node in rewritten.graph.node)
    np.testing.assert_allclose(_onnxruntime(rewritten)[0], _onnxruntime(model)[0], rtol=1e-5, atol=1e-6)


def test_a_part_with_another_reader_keeps_its_quantize_step_behind_the_split():
    model = _block(keys_read_twice=True)
    rewritten, projections, _ = _rewritten(model)
    assert projections == 1
    assert _reader_of(rewritten, "k_int8") == "Transpose"  # k is also a graph output: its FakeQuantize stays
    assert _reader_of(rewritten, "q_int8") == "Reshape"
    for expected, actual in zip(_openvino(model), _openvino(rewritten)):
        np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("layout", ["slice_axis", "parts_given_out"])
def test_a_head_split_of_another_layout_is_left_alone(layout):
    # not the exporter's unbind of axis 0; or a graph whose output is the split itself
    model = _block(slice_axis=1) if layout == "slice_axis" else _block(parts_given_out=True)
    rewritten, projections, _ = _rewritten(model)
    assert projections == 0
    assert [n.op_type for n in rewritten.graph.node if n.name in ("qkv", "parts", "q_scale")] == ["MatMul", "Transpose", "Mul"]


def test_a_quantize_step_with_a_range_per_channel_stays_behind_the_head_merge():
    model = _block(output_edge=np.linspace(0.5, 1.5, CHANNELS))  # broadcast over the merged channels only
    rewritten, projections, merges = _rewritten(model)
    assert (projections, merges) == (1, 0)
    assert _reader_of(rewritten, "merged_int8") == "Reshape"  # still behind the merge
    np.testing.assert_allclose(_openvino(rewritten)[0], _openvino(model)[0], rtol=1e-5, atol=1e-5)

"""The OpenVINO form of an INT8 file: the same calibration, in the layout OpenVINO's CPU plugin fuses.

OpenVINO reads a Q/DQ pair of an ONNX file as FakeQuantize -> Convert(i8) -> Convert(f32) ->
Subtract(zero point) -> Multiply(scale), and a weight as Convert -> Subtract -> Multiply. Its CPU
plugin fuses the pattern into int8 GEMMs, but under bf16 it leaves the quantize layers unfused and
converts between bf16 and f32 around every pair (measured: docs/benchmarks.md). Its own
post-training quantization (NNCF) writes one FakeQuantize per activation with the dequantized
range as its output range, and weights without a zero point. This module rewrites a checked Q/DQ
graph into that layout, in ONNX, with OpenVINO's ``org.openvinotoolkit`` FakeQuantize:

- every activation Q/DQ pair becomes one FakeQuantize over the pair's range: the same scale, so the
  same calibration; ranges that are never negative (softmax probabilities) or barely negative
  (GELU, >= -0.17) get all 256 levels on the side that occurs, half the step of a symmetric int8
  pair: the one change of arithmetic, and one TensorRT's signed int8 cannot express;
- weight dequantization drops its zero point (always 0 here);
- EViT's token scores recompute their one row of the attention (``score_rows.py``), so the reducing
  blocks' attention fuses like every other block's;
- q, k and v are projected apart and quantized where their GEMMs write, and the attention's output
  before its heads are merged (``head_split.py``), so the head split and merge move int8 and no
  quantize step waits on a bf16 -> f32 reorder.

Only OpenVINO reads the result (onnxruntime and TensorRT do not know the domain); its metadata says
so (``only_runtime``) and the other runtimes refuse it in one line.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from clca_deploy.calibration.head_split import quantize_before_head_merge, split_attention_heads
from clca_deploy.calibration.qdq import module_namespace
from clca_deploy.calibration.qdq_edit import drop_unread_initializers
from clca_deploy.calibration.score_rows import separate_score_rows

OPENVINO_DOMAIN = "org.openvinotoolkit"
ONLY_RUNTIME = "openvino"
GELU_MINIMUM = -0.17  # GELU(x) >= -0.16997 for every x
_GELU_SCOPE = ": aten.gelu.default"


def openvino_form_path(output: Path) -> Path:
    """``model.int8.onnx`` -> ``model.int8.openvino.onnx``."""
    return output.with_name(output.name.removesuffix(".onnx") + f".{ONLY_RUNTIME}.onnx")


def openvino_form(qdq_model):
    """A copy of ``qdq_model`` (checked by ``check_qdq_conventions``) in OpenVINO's layout, its metadata
    marked for OpenVINO only."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.ModelProto()
    model.CopyFrom(qdq_model)
    graph = model.graph
    initializers = {init.name: init for init in graph.initializer}
    producers = {output: node for node in graph.node for output in node.output}
    replaced: dict[str, str] = {}  # DQ output -> FakeQuantize output
    kept = []
    for node in graph.node:
        if node.op_type == "QuantizeLinear":
            scale = float(numpy_helper.to_array(initializers[node.input[1]]))
            low = _lower_bound(producers.get(node.input[0]), scale)
            names = [f"{node.output[0]}_fq_{edge}" for edge in ("low", "high")]
            graph.initializer.extend(numpy_helper.from_array(np.array(v, dtype=np.float32), n)
                                     for n, v in zip(names, (low, 127 * scale)))
            fq_output = f"{node.output[0]}_fq"
            kept.append(helper.make_node("FakeQuantize", [node.input[0], *names, *names], [fq_output],
                                         name=f"{node.name}_fq", domain=OPENVINO_DOMAIN, levels=256))
            replaced[node.output[0]] = fq_output
        elif node.op_type == "DequantizeLinear" and node.input[0] in replaced:
            replaced[node.output[0]] = replaced[node.input[0]]
        elif node.op_type == "DequantizeLinear":  # a weight: no zero point, so no Subtract in OpenVINO's graph
            del node.input[2:]
            kept.append(node)
        else:
            kept.append(node)
    for node in kept:
        node.input[:] = [replaced.get(name, name) for name in node.input]
    del graph.node[:]
    graph.node.extend(kept)
    separate_score_rows(graph)
    split_attention_heads(graph)
    quantize_before_head_merge(graph)
    drop_unread_initializers(graph)
    model.opset_import.append(helper.make_opsetid(OPENVINO_DOMAIN, 1))
    from clca_deploy.metadata import metadata_props, write_metadata

    props = metadata_props(model)
    props["only_runtime"] = ONLY_RUNTIME
    write_metadata(model, props)
    return model


def _lower_bound(producer, scale: float) -> float:
    """The FakeQuantize's lower edge: -128 steps as the Q/DQ pair has, or the least value the producer can give."""
    if producer is None:  # a graph input
        return -128 * scale
    if producer.op_type == "Softmax":
        return 0.0
    if module_namespace(producer).endswith(_GELU_SCOPE):
        return max(GELU_MINIMUM, -128 * scale)
    return -128 * scale

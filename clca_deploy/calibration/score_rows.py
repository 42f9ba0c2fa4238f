"""EViT's token scores as a row of their own, so OpenVINO fuses the reducing blocks' attention.

A reducing block's token scores are the class token's row of its attention probabilities
(``Gather(Softmax(MatMul(q, k)), 0, axis=2)``). That second reader of the softmax keeps OpenVINO's
CPU plugin from fusing the block's attention (q·k, softmax, quantize, ·v) into one kernel: under
bf16 it then converts the whole probability tensor bf16 -> f32 -> i8 around the quantize step,
at the full token count (`benchmarks/openvino_layers.py` shows the layers; docs/benchmarks.md).
Recomputing the row from the same two inputs,
``Squeeze(Softmax(MatMul(Gather(q, [0], axis=2), k)), 2)``, gives the same numbers (softmax is row by
row) and leaves the attention one reader.
"""

from __future__ import annotations

import numpy as np

from clca_deploy.calibration.qdq import int_attribute

_ROW_AXIS = 2  # attention probabilities are [batch, heads, query token, key token]


def separate_score_rows(graph) -> int:
    """Rewrite every class-row read of an attention softmax in ``graph`` (in place); returns how many."""
    from onnx import numpy_helper

    producers = {output: node for node in graph.node for output in node.output}
    constants = {init.name: init for init in graph.initializer}
    ranks = {info.name: len(info.type.tensor_type.shape.dim) for info in graph.value_info}
    rewritten = []
    count = 0
    for node in graph.node:
        softmax = _row_read_softmax(node, producers, constants, ranks)
        if softmax is None:
            rewritten.append(node)
            continue
        row = int(numpy_helper.to_array(constants[node.input[1]]))
        rewritten.extend(_row_nodes(graph, node.output[0], producers[softmax.input[0]], row))
        count += 1
    del graph.node[:]
    graph.node.extend(rewritten)
    return count


def _row_read_softmax(node, producers, constants, ranks):
    """The softmax whose one row ``node`` reads, if ``node`` is such a read of a MatMul's last-axis softmax."""
    from onnx import numpy_helper

    if node.op_type != "Gather" or node.input[1] not in constants or int_attribute(node, "axis", 0) != _ROW_AXIS:
        return None
    softmax = producers.get(node.input[0])
    if softmax is None or softmax.op_type != "Softmax" or int_attribute(softmax, "axis", -1) not in (-1, 3):
        return None
    if ranks.get(softmax.output[0]) != 4 or numpy_helper.to_array(constants[node.input[1]]).ndim != 0:
        return None
    matmul = producers.get(softmax.input[0])
    return softmax if matmul is not None and matmul.op_type == "MatMul" else None


def _row_nodes(graph, output: str, matmul, row: int) -> list:
    """``output`` = Squeeze(Softmax(MatMul(Gather(q, [row], axis=2), k)), 2) for ``matmul``'s q and k."""
    from onnx import helper, numpy_helper

    queries, keys = matmul.input
    graph.initializer.extend([numpy_helper.from_array(np.array([row], np.int64), f"{output}_row"),
                              numpy_helper.from_array(np.array([_ROW_AXIS], np.int64), f"{output}_row_axis")])
    return [
        helper.make_node("Gather", [queries, f"{output}_row"], [f"{output}_queries"], axis=_ROW_AXIS,
                         name=f"{output}_queries"),
        helper.make_node("MatMul", [f"{output}_queries", keys], [f"{output}_logits"], name=f"{output}_logits"),
        helper.make_node("Softmax", [f"{output}_logits"], [f"{output}_probs"], axis=-1, name=f"{output}_probs"),
        helper.make_node("Squeeze", [f"{output}_probs", f"{output}_row_axis"], [output], name=f"{output}_squeeze"),
    ]


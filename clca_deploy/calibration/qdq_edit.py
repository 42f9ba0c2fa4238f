"""Take nodes of a calibrated Q/DQ graph back to float without calibrating again.

Calibration measures every activation range on the FP32 graph, so a tensor's scale does not depend
on which other nodes are quantized. Calibrating once with every INT8 candidate quantized and then
taking some nodes back to float therefore gives the graph that calibrating with those nodes left
out would give (a test compares the two); this is what lets the placement search try many float
sets for the price of one calibration.
"""

from __future__ import annotations

from typing import Iterable


GEMMS = ("MatMul", "Gemm", "Conv")


def keep_float(quantized, fp32, nodes: Iterable[str]):
    """A copy of ``quantized`` in which ``nodes`` read float inputs again, and only INT8 GEMMs read
    dequantized activations.

    Each input of ``nodes`` that comes from a DequantizeLinear is rewired to the tensor the FP32
    graph's node of the same name reads: an activation (still computed, in front of its
    QuantizeLinear) or a weight (copied back from ``fp32``). onnxruntime's quantizer hands the
    dequantized tensor to every reader of a quantized activation, so a softmax quantized for attn.v
    would also feed EViT's token scores in int8; other readers than INT8 GEMMs get the float tensor
    back. Q/DQ nodes and int8 weights nobody reads any more are removed.
    """
    import onnx

    wanted = set(nodes)
    edited = onnx.ModelProto()
    edited.CopyFrom(quantized)
    graph = edited.graph
    producers = {output: node for node in graph.node for output in node.output}
    float_nodes = {node.name: node for node in fp32.graph.node}
    float_weights = {init.name: init for init in fp32.graph.initializer}
    present = {init.name for init in graph.initializer}
    for node in graph.node:
        if node.op_type in GEMMS and node.name not in wanted:
            continue  # an INT8 GEMM keeps its Q/DQ inputs
        for index, name in enumerate(node.input):
            dequantize = producers.get(name)
            if dequantize is None or dequantize.op_type != "DequantizeLinear":
                continue
            if node.name in wanted:
                node.input[index] = original = float_nodes[node.name].input[index]
                if original in float_weights and original not in present:
                    graph.initializer.append(float_weights[original])
                    present.add(original)
                continue
            quantize = producers.get(dequantize.input[0])
            if quantize is not None and quantize.op_type == "QuantizeLinear":
                node.input[index] = quantize.input[0]
    _remove_unread_qdq(graph)
    drop_unread_initializers(graph)
    return edited


def _remove_unread_qdq(graph) -> None:
    """Drop Q/DQ nodes whose outputs nobody reads (repeatedly: a DQ gone leaves its Q unread)."""
    outputs = {value.name for value in graph.output}
    while True:
        read = {name for node in graph.node for name in node.input} | outputs
        unread = [node for node in graph.node
                  if node.op_type in ("QuantizeLinear", "DequantizeLinear") and not any(o in read for o in node.output)]
        if not unread:
            break
        for node in unread:
            graph.node.remove(node)


def drop_unread_initializers(graph) -> None:
    """Remove the initializers no node and no graph output reads (int8 weights and scales left behind)."""
    read = {name for node in graph.node for name in node.input} | {value.name for value in graph.output}
    for init in [init for init in graph.initializer if init.name not in read]:
        graph.initializer.remove(init)


def quantized_nodes(model) -> set[str]:
    """Names of the nodes that read at least one dequantized input."""
    dequantized = {output for node in model.graph.node if node.op_type == "DequantizeLinear" for output in node.output}
    return {node.name for node in model.graph.node if any(name in dequantized for name in node.input)}

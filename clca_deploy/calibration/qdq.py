"""Which nodes get INT8, and the Q/DQ conventions TensorRT's explicit quantization requires."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

LINEAR_SCOPE = re.compile(r"/([\w.]+): torch\.nn\.modules\.linear\.Linear")


def module_path(node) -> str | None:
    """The torch module a node came from (the dynamo exporter records it as ``namespace``)."""
    for prop in node.metadata_props:
        if prop.key == "namespace":
            found = LINEAR_SCOPE.findall(prop.value)
            return found[-1] if found else None
    return None


def select_int8_nodes(model, score_blocks: tuple[int, ...]) -> tuple[list[str], list[str]]:
    """(nodes to quantize, nodes kept in float with the reason).

    Quantized: the weight GEMMs (patch embedding conv, qkv / proj / fc1 / fc2), where the
    MACs are. Kept in float: LayerNorm, Softmax, GELU and the attention matmuls (never
    selected), the qkv projection of every reducing block (its q and k decide which tokens
    survive: int8 error there flips near-tie top-k choices), and the small classifier heads.
    """
    initializers = {init.name for init in model.graph.initializer}
    score_qkv = {f"blocks.{i}.attn.qkv" for i in score_blocks}
    quantize, kept = [], []
    for node in model.graph.node:
        weights = [name for name in node.input if name in initializers]
        if node.op_type == "Conv" and weights:
            dims = next(i.dims for i in model.graph.initializer if i.name == node.input[1])
            (quantize if len(dims) == 4 else kept).append(node.name)
        elif node.op_type in ("MatMul", "Gemm") and weights:
            path = module_path(node)
            if path in score_qkv:
                kept.append(f"{node.name} ({path}: token scores)")
            elif path == "head":
                kept.append(f"{node.name} (classifier head)")
            else:
                quantize.append(node.name)
    return quantize, kept


@dataclass(frozen=True)
class QdqViolation:
    node: str
    problem: str


def check_qdq_conventions(model) -> list[QdqViolation]:
    """Every Q/DQ pair as TensorRT wants it: int8, zero point 0, per-channel weights on the
    output-channel axis (Conv 0, MatMul 1), per-tensor activations."""
    from onnx import numpy_helper

    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    consumers: dict[str, list] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    problems = []
    for node in model.graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        if len(node.input) < 3 or node.input[2] not in inits:
            problems.append(QdqViolation(node.name, "no constant zero point"))
            continue
        scale, zero = inits.get(node.input[1]), inits[node.input[2]]
        if zero.dtype != np.int8:
            problems.append(QdqViolation(node.name, f"zero point is {zero.dtype}, not int8"))
        if np.any(zero != 0):
            problems.append(QdqViolation(node.name, "zero point is not 0 (asymmetric)"))
        if scale is None or np.any(scale <= 0):
            problems.append(QdqViolation(node.name, "scale is not a positive constant"))
            continue
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        is_weight = node.op_type == "DequantizeLinear" and node.input[0] in inits
        if is_weight:
            expected = _weight_channel_axis(consumers.get(node.output[0], []))
            if scale.ndim != 1 or axis != expected:
                problems.append(QdqViolation(node.name, f"weights not per-channel on axis {expected} (axis {axis}, scale {scale.shape})"))
        elif scale.ndim != 0:
            problems.append(QdqViolation(node.name, f"activation scale is per-channel {scale.shape}, not per-tensor"))
    return problems


def _weight_channel_axis(users) -> int:
    """Output-channel axis of a weight: Conv [out, in, ...] 0; MatMul [in, out] 1; Gemm 0 if transB."""
    if not users:
        return 1
    user = users[0]
    if user.op_type == "Conv":
        return 0
    if user.op_type == "Gemm":
        return 0 if any(a.name == "transB" and a.i for a in user.attribute) else 1
    return 1

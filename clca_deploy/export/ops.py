"""Which ONNX ops an exported graph may contain.

The allow-list holds ops the TensorRT 10 ONNX parser supports (onnx-tensorrt
docs/operators.md, opsets 9-20) that a CLCA graph can reasonably need. Ops whose output
shape depends on tensor values are refused outright: they would defeat the static token
schedule that lets TensorRT plan every layer ahead of time.
"""

from __future__ import annotations

from collections import Counter

DATA_DEPENDENT_OPS = frozenset(
    {"NonZero", "Loop", "If", "Scan", "Unique", "Compress", "NonMaxSuppression", "SequenceConstruct",
     "SequenceAt", "SequenceInsert", "SequenceLength", "SplitToSequence", "ConcatFromSequence"}
)

TENSORRT_ALLOWED_OPS = frozenset(
    {
        # arithmetic and activations
        "Add", "Sub", "Mul", "Div", "Pow", "Sqrt", "Exp", "Log", "Neg", "Abs", "Reciprocal", "Erf",
        "Tanh", "Sigmoid", "Relu", "Gelu", "Max", "Min", "Clip",
        # linear algebra, normalisation
        "MatMul", "Gemm", "Conv", "Softmax", "LayerNormalization", "BatchNormalization",
        "ReduceMean", "ReduceSum", "ReduceMax",
        # selection with static K
        "TopK", "Gather", "GatherElements", "ScatterElements", "ScatterND",
        # token matching and clustering (ToMe, DPC-KNN): TensorRT's ONNX parser supports each
        # and DynamicViT's predictor: TensorRT's ONNX parser supports each (onnx-tensorrt
        # docs/operators.md: ArgMax, ArgMin, ReduceMin, ReduceL2, Greater, LogSoftmax; FP32/FP16)
        "ArgMax", "ArgMin", "ReduceMin", "ReduceL2", "Greater", "LogSoftmax",
        # GLSim's crop resize (onnx-tensorrt docs/operators.md: GridSample, 4D input, FP32/FP16)
        "GridSample",
        # shape plumbing (static given the fixed schedule)
        "Reshape", "Transpose", "Concat", "Slice", "Split", "Squeeze", "Unsqueeze", "Flatten",
        "Expand", "Shape", "Constant", "ConstantOfShape", "Cast", "Identity", "Equal", "Where",
        "Range", "Tile",
        # explicit quantization (precision lives in the ONNX)
        "QuantizeLinear", "DequantizeLinear",
    }
)


def op_census(model) -> Counter:
    """Count of op types over the main graph and every subgraph of an ``onnx.ModelProto``."""
    counts: Counter = Counter()

    def walk(graph) -> None:
        for node in graph.node:
            counts[node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}::{node.op_type}"] += 1
            for attribute in node.attribute:
                if attribute.g is not None and attribute.g.node:
                    walk(attribute.g)
                for sub in attribute.graphs:
                    walk(sub)

    walk(model.graph)
    return counts


def misread_grid_samples(model) -> list[str]:
    """GridSample nodes TensorRT's parser would run as nearest: opset 20 renamed 'bilinear' to 'linear',
    which the parser does not know and reads as nearest (onnx-tensorrt #1060, TensorRT #4646)."""
    found = []
    for node in model.graph.node:
        if node.op_type == "GridSample":
            mode = next((a.s.decode() for a in node.attribute if a.name == "mode"), "bilinear")
            if mode not in ("bilinear", "nearest", "bicubic"):
                found.append(f"{node.name} (mode '{mode}')")
    return found


def disallowed_ops(model) -> dict[str, int]:
    """Ops outside the TensorRT allow-list (data-dependent ones included), with their counts."""
    return {op: n for op, n in sorted(op_census(model).items()) if op not in TENSORRT_ALLOWED_OPS}

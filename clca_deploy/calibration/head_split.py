"""The attention's head split on int8 in OpenVINO's form: q, k and v projected apart, each quantized
where its GEMM writes.

A ViT block projects q, k and v in one GEMM, splits the heads (Reshape to [batch, tokens, 3, heads,
width], Transpose [2, 0, 3, 1, 4], one Slice and Squeeze per part), scales q, transposes k, and only
then quantizes q and k for the int8 q·k; the attention's output is merged back (Transpose, Reshape)
before the quantize step of the output projection. OpenVINO's CPU plugin runs those head splits
and merges in the float precision and, under bf16, converts bf16 -> f32 in front of every quantize
step and reorders the int8 result again: at ViT-B/16 448 px, batch 1, 60 reorders, 36 unfused
FakeQuantize layers and the head split's bf16 Transposes, about a tenth of the profiled layer
time (NNCF's IR has the same around q and k; docs/benchmarks.md). This module rewrites each block so that:

- q, k and v are three GEMMs over the columns of the one weight (the int8 weight and its scales
  sliced, or the float weight), each with its slice of the bias;
- a part's FakeQuantize reads its GEMM's output, where the plugin fuses it into the GEMM, and the
  head split then moves int8; q's scale is folded into q's weight scales and bias, k's transpose
  joins the head split's;
- the output projection's FakeQuantize reads the attention's output before the head merge.

Same arithmetic: a FakeQuantize with one range per tensor commutes with Reshape and Transpose, and
the int8 GEMM's integer sums do not depend on how its columns are grouped; folding q's scale
(1/8 for 64-wide heads, a power of two) into the weight scales is exact. Anything that does not
match the pattern exactly (another reader of a part, another layout) is left as it was.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from clca_deploy.calibration.qdq import int_attribute

_SPLIT_PERM = [2, 0, 3, 1, 4]  # [batch, tokens, part, heads, width] -> [part, batch, heads, tokens, width]
_HEADS_PERM = [0, 2, 1, 3]  # [batch, tokens, heads, width] -> [batch, heads, tokens, width]
_KEYS_PERM = [0, 2, 3, 1]  # [batch, tokens, heads, width] -> [batch, heads, width, tokens]: k transposed
_LAST_TWO = [0, 1, 3, 2]
_PARTS = ("q", "k", "v")


@dataclass(frozen=True)
class _Index:
    """Who writes and who reads each tensor of a graph, its constants and its outputs."""

    producers: dict
    readers: dict
    constants: dict
    outputs: frozenset

    @classmethod
    def of(cls, nodes: list, graph) -> "_Index":
        readers: dict[str, list] = {}
        for node in nodes:
            for name in node.input:
                readers.setdefault(name, []).append(node)
        return cls({out: node for node in nodes for out in node.output}, readers,
                   {init.name: init for init in graph.initializer}, frozenset(value.name for value in graph.output))

    def constant(self, name: str) -> np.ndarray | None:
        from onnx import numpy_helper

        return numpy_helper.to_array(self.constants[name]) if name in self.constants else None

    def only_reader(self, name: str):
        """The one node that reads ``name``; None where several do, or none, or the graph gives it out."""
        readers = self.readers.get(name, [])
        return readers[0] if len(readers) == 1 and name not in self.outputs else None


@dataclass(frozen=True)
class _Projection:
    """One block's qkv projection and head split, as matched."""

    matmul: object
    weight: tuple  # ("float", weight) or ("int8", int8 weight, scales), as _weight reads it
    bias_add: object
    bias: np.ndarray
    reshape: object
    shape: np.ndarray  # [batch, tokens, 3, heads, width]
    transpose: object
    slices: tuple  # the Slice nodes, in any order
    squeezes: tuple  # per part (q, k, v): the Squeeze that gives it


@dataclass(frozen=True)
class _Part:
    """How one part (q, k or v) is read: scaled, transposed and quantized, or as it is."""

    factor: float = 1.0
    perm: tuple = tuple(_HEADS_PERM)
    fake_quantize: object = None  # the part's FakeQuantize, moved in front of the head split
    dropped: tuple = ()  # the nodes between the Squeeze and the FakeQuantize, gone with it


def split_attention_heads(graph) -> int:
    """Rewrite every matching qkv projection of ``graph`` (in place, FakeQuantize already OpenVINO's); returns how many."""
    nodes = list(graph.node)  # held here, so the ids that key ``replaced`` stay theirs
    index = _Index.of(nodes, graph)
    replaced: dict[int, list] = {}
    new_constants: list = []
    for node in nodes:
        projection = _match_projection(node, index)
        if projection is None:
            continue
        parts = tuple(_read_part(squeeze, index) for squeeze in projection.squeezes)
        split, constants = _split_nodes(projection, parts, index)
        removed = [projection.matmul, projection.bias_add, projection.reshape, *projection.slices, *projection.squeezes]
        weight = index.producers.get(projection.matmul.input[1])
        if weight is not None and index.only_reader(weight.output[0]) is projection.matmul:
            removed.append(weight)
        removed.extend(gone for part in parts for gone in part.dropped)
        replaced.update({id(gone): [] for gone in removed})
        replaced[id(projection.transpose)] = split
        new_constants.extend(constants)
    _replace(graph, nodes, replaced)
    graph.initializer.extend(new_constants)
    return sum(1 for split in replaced.values() if split)


def quantize_before_head_merge(graph) -> int:
    """Move every FakeQuantize that reads Reshape(Transpose[0, 2, 1, 3](MatMul)) to the MatMul's output; returns how many."""
    nodes = list(graph.node)
    index = _Index.of(nodes, graph)
    replaced: dict[int, list] = {}
    for fake_quantize in nodes:
        if fake_quantize.op_type != "FakeQuantize":
            continue
        reshape = index.producers.get(fake_quantize.input[0])
        if reshape is None or reshape.op_type != "Reshape" or index.only_reader(reshape.output[0]) is not fake_quantize:
            continue
        transpose = index.producers.get(reshape.input[0])
        if transpose is None or not _is_transpose(transpose, _HEADS_PERM) or index.only_reader(transpose.output[0]) is not reshape:
            continue
        matmul = index.producers.get(transpose.input[0])
        if matmul is None or matmul.op_type != "MatMul" or not _per_tensor(fake_quantize, index):
            continue
        early = _copy(fake_quantize, [matmul.output[0], *fake_quantize.input[1:]], f"{fake_quantize.output[0]}_early")
        moved_transpose = _copy(transpose, [early.output[0]], f"{transpose.output[0]}_int8")
        moved_reshape = _copy(reshape, [moved_transpose.output[0], *reshape.input[1:]], fake_quantize.output[0])
        replaced.update({id(transpose): [early, moved_transpose, moved_reshape], id(reshape): [], id(fake_quantize): []})
    _replace(graph, nodes, replaced)
    return len(replaced) // 3


def _match_projection(transpose, index: _Index) -> _Projection | None:
    """The projection whose head split is ``transpose``, if the whole pattern is there with one reader per step."""
    if not _is_transpose(transpose, _SPLIT_PERM) or transpose.output[0] in index.outputs:
        return None
    reshape = index.producers.get(transpose.input[0])
    if reshape is None or reshape.op_type != "Reshape" or index.only_reader(reshape.output[0]) is not transpose:
        return None
    shape = index.constant(reshape.input[1])
    bias_add = index.producers.get(reshape.input[0])
    if shape is None or shape.shape != (5,) or shape[2] != 3 or bias_add is None or bias_add.op_type != "Add":
        return None
    matmul, bias = _matmul_and_bias(bias_add, index)
    if matmul is None or index.only_reader(matmul.output[0]) is not bias_add or index.only_reader(bias_add.output[0]) is not reshape:
        return None
    weight = _weight(matmul, index)
    if bias.shape != (3 * shape[3] * shape[4],) or weight is None or weight[1].shape[1] != bias.shape[0]:
        return None
    squeezes = _part_squeezes(transpose, index)
    if squeezes is None:
        return None
    return _Projection(matmul, weight, bias_add, bias, reshape, shape, transpose,
                       tuple(index.readers[transpose.output[0]]), squeezes)


def _matmul_and_bias(bias_add, index: _Index):
    for data, constant in ((0, 1), (1, 0)):
        matmul, bias = index.producers.get(bias_add.input[data]), index.constant(bias_add.input[constant])
        if matmul is not None and matmul.op_type == "MatMul" and bias is not None:
            return matmul, bias.astype(np.float32)
    return None, None


def _weight(matmul, index: _Index):
    """("float", weight) or ("int8", int8 weight, scales) of a [in, out] MatMul weight; None for any other kind."""
    weight = index.constant(matmul.input[1])
    if weight is not None:
        return ("float", weight) if weight.ndim == 2 else None
    dequantize = index.producers.get(matmul.input[1])
    if dequantize is None or dequantize.op_type != "DequantizeLinear" or len(dequantize.input) > 2:
        return None  # a zero point: openvino_form drops them before this step
    values, scales = index.constant(dequantize.input[0]), index.constant(dequantize.input[1])
    axis = int_attribute(dequantize, "axis", 1)
    if values is None or scales is None or values.ndim != 2 or not (scales.ndim == 0 or (scales.shape == values.shape[1:] and axis in (1, -1))):
        return None
    return "int8", values, scales


def _part_squeezes(transpose, index: _Index) -> tuple | None:
    """(q, k, v)'s Squeeze: each part one Slice [j, j+1) on axis 0, read only by a Squeeze of axis 0."""
    found = {}
    for node in index.readers.get(transpose.output[0], []):
        if node.op_type != "Slice" or len(node.input) < 4:
            return None
        starts, ends, axes = (index.constant(name) for name in node.input[1:4])
        steps = index.constant(node.input[4]) if len(node.input) > 4 and node.input[4] else np.ones(1, np.int64)
        if any(v is None or v.size != 1 for v in (starts, ends, axes, steps)) or int(axes.item()) != 0 or int(steps.item()) != 1:
            return None
        squeeze = index.only_reader(node.output[0])
        axis = index.constant(squeeze.input[1]) if squeeze is not None and len(squeeze.input) > 1 else None
        if squeeze is None or squeeze.op_type != "Squeeze" or axis is None or axis.size != 1 or int(axis.item()) != 0:
            return None
        part = int(starts.item())
        if int(ends.item()) != part + 1 or part in found or part not in (0, 1, 2):
            return None
        found[part] = squeeze
    return tuple(found[part] for part in range(3)) if len(found) == 3 else None


def _read_part(squeeze, index: _Index) -> _Part:
    """How the part ``squeeze`` gives is read: [Mul by a scalar] [Transpose of the last two axes] FakeQuantize, one reader each."""
    node, factor, perm, dropped = index.only_reader(squeeze.output[0]), 1.0, tuple(_HEADS_PERM), []
    if node is not None and node.op_type == "Mul":
        scalar = index.constant(next((name for name in node.input if name != squeeze.output[0]), ""))
        if scalar is None or scalar.size != 1 or list(node.input).count(squeeze.output[0]) != 1:
            return _Part()
        factor = float(scalar.item())
        dropped.append(node)
        node = index.only_reader(node.output[0])
    if node is not None and _is_transpose(node, _LAST_TWO):
        perm = tuple(_KEYS_PERM)
        dropped.append(node)
        node = index.only_reader(node.output[0])
    if node is None or node.op_type != "FakeQuantize" or not _per_tensor(node, index):
        return _Part()
    return _Part(factor, perm, node, (*dropped, node))


def _per_tensor(fake_quantize, index: _Index) -> bool:
    """Whether ``fake_quantize`` has one range for the whole tensor (so it commutes with Reshape and Transpose)."""
    ranges = [index.constant(name) for name in fake_quantize.input[1:]]
    return len(ranges) == 4 and all(edge is not None and edge.size == 1 for edge in ranges)


def _split_nodes(projection: _Projection, parts: tuple, index: _Index) -> tuple[list, list]:
    """The nodes and constants that compute q, k and v apart (as ``parts`` reads them), each under its old output name."""
    from onnx import numpy_helper

    heads, width = int(projection.shape[3]), int(projection.shape[4])
    kind, *weight = projection.weight
    nodes, constants = [], []
    for number, (name, squeeze, part) in enumerate(zip(_PARTS, projection.squeezes, parts)):
        columns = slice(number * heads * width, (number + 1) * heads * width)
        stem = f"{projection.transpose.output[0]}_{name}"
        factor = np.float32(part.factor)
        if kind == "int8":
            values, scales = weight
            part_scales = (scales if scales.ndim == 0 else scales[columns]) * factor
            constants += [numpy_helper.from_array(np.ascontiguousarray(values[:, columns]), f"{stem}_weight_int8"),
                          numpy_helper.from_array(part_scales.astype(np.float32), f"{stem}_weight_scale")]
            nodes.append(_node("DequantizeLinear", [f"{stem}_weight_int8", f"{stem}_weight_scale"], f"{stem}_weight", axis=1))
        else:
            constants.append(numpy_helper.from_array((weight[0][:, columns] * factor).astype(np.float32), f"{stem}_weight"))
        shape = np.array([*projection.shape[:2], heads, width], np.int64)
        constants += [numpy_helper.from_array((projection.bias[columns] * factor).astype(np.float32), f"{stem}_bias"),
                      numpy_helper.from_array(shape, f"{stem}_shape")]
        nodes += [_node("MatMul", [projection.matmul.input[0], f"{stem}_weight"], f"{stem}_gemm"),
                  _node("Add", [f"{stem}_gemm", f"{stem}_bias"], f"{stem}_projected")]
        projected = f"{stem}_projected"
        if part.fake_quantize is not None:
            nodes.append(_copy(part.fake_quantize, [projected, *part.fake_quantize.input[1:]], f"{stem}_int8"))
            projected = f"{stem}_int8"
        allowzero = int_attribute(projection.reshape, "allowzero", 0)
        nodes.append(_node("Reshape", [projected, f"{stem}_shape"], f"{stem}_heads", allowzero=allowzero))
        output = part.fake_quantize.output[0] if part.fake_quantize is not None else squeeze.output[0]
        nodes.append(_node("Transpose", [f"{stem}_heads"], output, name=f"{stem}_split", perm=list(part.perm)))
    return nodes, constants


def _is_transpose(node, perm: list[int]) -> bool:
    return node.op_type == "Transpose" and next((list(a.ints) for a in node.attribute if a.name == "perm"), None) == perm


def _node(op_type: str, inputs: list[str], output: str, name: str | None = None, **attributes):
    from onnx import helper

    return helper.make_node(op_type, inputs, [output], name=name or output, **attributes)


def _copy(node, inputs: list[str], output: str):
    """``node`` (attributes, domain) reading ``inputs`` and writing ``output``, named after its output."""
    import onnx

    copied = onnx.NodeProto()
    copied.CopyFrom(node)
    copied.input[:] = inputs
    copied.output[:] = [output]
    copied.name = output
    return copied


def _replace(graph, nodes: list, replaced: dict[int, list]) -> None:
    """``graph``'s nodes become ``nodes``, each whose id is in ``replaced`` giving way to its list in its place
    (so the order stays topological)."""
    rewritten = []
    for node in nodes:
        rewritten.extend(replaced.get(id(node), [node]))
    del graph.node[:]
    graph.node.extend(rewritten)

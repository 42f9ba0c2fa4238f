"""Which nodes get INT8, and the Q/DQ conventions TensorRT's explicit quantization requires."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

LINEAR_SCOPE = re.compile(r"/([\w.]+): torch\.nn\.modules\.linear\.Linear")
ATTENTION_SCOPE = re.compile(r"/blocks\.(\d+)\.attn: [\w.]+Attention/")


def module_namespace(node) -> str:
    """The torch module path a node came from, as the dynamo exporter records it."""
    return next((prop.value for prop in node.metadata_props if prop.key == "namespace"), "")


def int_attribute(node, name: str, default: int) -> int:
    """An integer attribute of ``node`` (ONNX leaves defaults out of the file)."""
    return next((attribute.i for attribute in node.attribute if attribute.name == name), default)


def module_path(node) -> str | None:
    """The ``nn.Linear`` a node came from, e.g. ``blocks.3.attn.qkv``."""
    found = LINEAR_SCOPE.findall(module_namespace(node))
    return found[-1] if found else None


# Where ClcaModel keeps its token reducers: their official state-dict names, else ``reducers``.
# Written out (not read from model.reduction) so that calibration needs no torch; a test checks
# it against every reducer's state_dict_name.
REDUCER_MODULE_NAMES = ("cluster_layers", "reducers", "score_predictor")
_REDUCER_SCOPE = re.compile(r"/((?:%s)\.\d+): " % "|".join(REDUCER_MODULE_NAMES))


# GLSim's crop step (model/fgir/crop.py, StaticCrop): similarity, TopK, box and grid arithmetic and the
# GridSample. Written out, not imported (calibration needs no torch); a test checks it against
# model.fgir.crop.CROP_SCOPE.
CROP_MODULE = "clca_deploy.model.fgir.crop.StaticCrop"
_CROP_SCOPE = re.compile(r"/([\w.]+): " + re.escape(CROP_MODULE))


def in_crop_step(node) -> bool:
    """True for a node of GLSim's crop step, which every precision keeps in fp32."""
    return _CROP_SCOPE.search(module_namespace(node)) is not None


def reducer_scope(node) -> str | None:
    """The token reducer a node belongs to, e.g. ``score_predictor.0`` (DynamicViT's predictor),
    ``cluster_layers.1`` (DPC-KNN, SiT, PatchMerger) or ``reducers.3`` (EViT, Top-K, ToMe)."""
    found = _REDUCER_SCOPE.findall(module_namespace(node))
    return found[-1] if found else None


# ILA's inter-layer adapters (model/fgir/ila.py: ``encoder.ila.N`` and ``encoder.ila_ds.N``).
_ILA_ADAPTER_SCOPE = re.compile(r"/(encoder\.ila(?:_ds)?\.\d+)[.:]")


def ila_adapter_scope(node) -> str | None:
    """The ILA adapter a node belongs to, e.g. ``encoder.ila_ds.0``, None elsewhere."""
    found = _ILA_ADAPTER_SCOPE.findall(module_namespace(node))
    return found[-1] if found else None


def attention_block(node) -> int | None:
    """The block of an attention matmul (q.k^T or attn.v), None for other nodes."""
    found = ATTENTION_SCOPE.findall(module_namespace(node))
    return int(found[-1]) if found and module_path(node) is None else None


def crop_decision_nodes(model) -> set[str]:
    """Every node upstream of GLSim's crop selection (the TopK of the crop step): the global pass."""
    producer = {out: node for node in model.graph.node for out in node.output}
    found: set[str] = set()
    frontier = [name for node in model.graph.node if node.op_type == "TopK" and in_crop_step(node) for name in node.input]
    while frontier:
        parent = producer.get(frontier.pop())
        if parent is None or parent.name in found:
            continue
        found.add(parent.name)
        frontier.extend(parent.input)
    return found


@dataclass(frozen=True)
class _GraphFacts:
    """What the per-node INT8 choice looks up about the whole graph."""

    model: Any
    score_blocks: tuple[int, ...]
    score_qkv: frozenset[str]  # the qkv projections of the reducing blocks
    initializers: frozenset[str]
    producers: dict[str, str]  # tensor name -> op type of the node that computes it
    crop_deciders: frozenset[str]


@dataclass(frozen=True)
class Int8Candidate:
    """A node TensorRT and OpenVINO can run in INT8, the placement unit it belongs to, and why the
    conservative placement keeps it float (None: that placement runs it in INT8).

    A unit names a part of the model the same way in every export of it (``blocks.3.attn.qkv``,
    ``blocks.3.attn.logits`` for q.k^T, ``blocks.3.attn.probs`` for attn.v, ``head``), so a placement
    searched on one model applies to another of the same architecture; GLSim's global pass is told
    apart from the local pass that shares its weights by `` (global pass)``.
    """

    node: str
    unit: str
    float_reason: str | None

    @property
    def kept_entry(self) -> str:
        return f"{self.node} ({self.float_reason})"


def _graph_facts(model, score_blocks: tuple[int, ...]) -> _GraphFacts:
    return _GraphFacts(
        model=model,
        score_blocks=score_blocks,
        score_qkv=frozenset(f"blocks.{i}.attn.qkv" for i in score_blocks),
        initializers=frozenset(init.name for init in model.graph.initializer),
        producers={output: node.op_type for node in model.graph.node for output in node.output},
        crop_deciders=frozenset(crop_decision_nodes(model)),
    )


def int8_candidates(model, score_blocks: tuple[int, ...]) -> list[Int8Candidate]:
    """Every node that can run in INT8 (the fastest placement), in graph order, with its unit and the
    conservative placement's reason to keep it float (see ``select_int8_nodes``)."""
    facts = _graph_facts(model, score_blocks)
    found = (_candidate(node, facts) for node in model.graph.node)
    return [candidate for candidate in found if candidate is not None]


def select_int8_nodes(model, score_blocks: tuple[int, ...]) -> tuple[list[str], list[str]]:
    """The conservative placement: (nodes to quantize, nodes kept in float with the reason).

    Quantized: the weight GEMMs (patch embedding conv, qkv / proj / fc1 / fc2) and the
    attention logits matmul (q.k^T) of blocks that do not reduce, where the MACs are; the
    attention-probability matmul (attn.v) stays float (see below).
    Kept in float: LayerNorm, Softmax, GELU (never selected), the qkv projection and the
    attention matmuls of every reducing block (its q, k and softmax decide which tokens
    survive: int8 error there flips near-tie top-k choices), every MatMul of a token reducer
    (DynamicViT's predictor, DPC-KNN's score and distances, SiT's and PatchMerger's
    assignments, ToMe's matching: they decide or weigh which tokens survive; methods that
    reduce before a block show no length change inside it, so ``score_blocks`` misses them),
    the small classifier heads, ILA's inter-layer adapters and GLSim's global pass (see the
    comments below); convolutions that are not 2-D are never quantized.
    """
    facts = _graph_facts(model, score_blocks)
    quantize, kept = [], []
    for node in model.graph.node:
        if node.op_type == "Conv" and _conv_weight_rank(node, facts) not in (None, 4):
            kept.append(f"{node.name} (not a 2-D convolution)")
            continue
        candidate = _candidate(node, facts)
        if candidate is not None:
            (quantize.append(candidate.node) if candidate.float_reason is None else kept.append(candidate.kept_entry))
    return quantize, kept


def _conv_weight_rank(node, facts: _GraphFacts) -> int | None:
    if len(node.input) < 2 or node.input[1] not in facts.initializers:
        return None
    return len(next(i.dims for i in facts.model.graph.initializer if i.name == node.input[1]))


def _candidate(node, facts: _GraphFacts) -> Int8Candidate | None:
    """The node as an INT8 candidate, or None for a node that cannot run in INT8 here."""
    if not _can_run_int8(node, facts):
        return None
    return Int8Candidate(node.name, _unit(node, facts), _conservative_float_reason(node, facts))


def _unit(node, facts: _GraphFacts) -> str:
    block = attention_block(node)
    if block is not None:
        role = "probs" if facts.producers.get(node.input[0]) == "Softmax" else "logits"
        unit = f"blocks.{block}.attn.{role}"
    else:
        unit = module_path(node) or ila_adapter_scope(node) or reducer_scope(node) or node.name
    return f"{unit} (global pass)" if node.name in facts.crop_deciders else unit


def _can_run_int8(node, facts: _GraphFacts) -> bool:
    """2-D convolutions and weight GEMMs; matmuls of two activations in attention, token reducers and
    GLSim's global pass (the others, e.g. the crop step's similarity, are not worth a Q/DQ pair)."""
    has_weights = any(name in facts.initializers for name in node.input)
    if node.op_type == "Conv":
        return has_weights and _conv_weight_rank(node, facts) == 4
    if node.op_type == "MatMul" and not has_weights:
        return attention_block(node) is not None or reducer_scope(node) is not None or node.name in facts.crop_deciders
    return node.op_type in ("MatMul", "Gemm") and has_weights


def _conservative_float_reason(node, facts: _GraphFacts) -> str | None:
    """Why the conservative placement keeps a candidate float; None where it runs it in INT8."""
    scope = _float_scope(node, facts.crop_deciders)
    if scope is not None:
        return scope
    if node.op_type == "Conv":
        return None
    block = attention_block(node)
    if block is not None:
        if block in facts.score_blocks:
            return f"blocks.{block} attention: token scores"
        if facts.producers.get(node.input[0]) == "Softmax":
            # attn @ v: TensorRT's symmetric int8 spends half its range on negative
            # probabilities that never occur and rounds the many small ones to zero; on the
            # trained leaf model this alone cut INT8 agreement with FP32 from 100% to 95%.
            return f"blocks.{block} attention probabilities"
        return None
    path = module_path(node)
    if path in facts.score_qkv:
        return f"{path}: token scores"
    if path == "head" or (path or "").startswith("head."):  # CLCA's head, fgir_vit's head.head
        return "classifier head"
    return None


def _float_scope(node, crop_deciders: frozenset[str]) -> str | None:
    """Why a GEMM stays float for the part of the model it is in (crop decision, token reducer, ILA adapter)."""
    if node.name in crop_deciders and node.op_type in ("MatMul", "Gemm", "Conv"):
        # GLSim's global pass decides the crop box, as CLCA's scores decide the surviving tokens:
        # on the trained leaf GLSim model, int8 there moved the box on 5.6% of images (0.6% kept float).
        return "GLSim global pass: decides the crop"
    if node.op_type in ("MatMul", "Gemm"):
        scope = reducer_scope(node)
        if scope is not None:
            return f"{scope}: token reduction"
    adapter = ila_adapter_scope(node) if node.op_type in ("MatMul", "Gemm", "Conv") else None
    if adapter is not None:
        # The down-sampling residual sums 3x3 neighbourhoods (activations grow ~9x per adapter)
        # and the 8-channel bottleneck leaves int8 no headroom; the adapters are a few percent of
        # the MACs. On the trained leaf ILA model, keeping them (and the head) float took INT8
        # agreement with FP32 from 97.8% to 99.4% (docs/precision.md).
        return f"{adapter}: ILA adapter"
    return None


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
        axis = int_attribute(node, "axis", 1)
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
        return 0 if int_attribute(user, "transB", 0) else 1
    return 1

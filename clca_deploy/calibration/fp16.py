"""FP32 ONNX -> FP16 ONNX with the numerically sensitive ops kept in FP32."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from clca_deploy.artifacts import atomic_output, check_output_path, refuse_overwriting_inputs
from clca_deploy.calibration.source import load_fp32_export
from clca_deploy.errors import ClcaDeployError
from clca_deploy.terminal import printable
from clca_deploy.logs import log_info

# LayerNorm statistics and softmax sums overflow or lose precision in fp16; TopK decides
# which tokens survive and must see the scores exactly as the FP32 reference does.
FP32_OP_TYPES = ("LayerNormalization", "Softmax", "TopK")


@dataclass(frozen=True)
class Fp16Result:
    path: str
    precision: str
    kept_fp32_nodes: int
    seconds: float

    def to_dict(self) -> dict:
        return asdict(self)


def score_path_nodes(model) -> set[str]:
    """Nodes between each TopK and the Softmax whose attention row it ranks (CLS row, head mean),
    and GLSim's whole crop step: similarity, TopK, box and grid arithmetic, GridSample (an fp16 grid
    is off by up to 0.1 px and its integer numerators overflow fp16). The crop step's input is the
    global pass's final LayerNorm (fp32 by op type), so no walk starts there: it would keep the
    whole global encoder in fp32."""
    from clca_deploy.calibration.qdq import in_crop_step

    producer = {out: node for node in model.graph.node for out in node.output}
    keep: set[str] = {node.name for node in model.graph.node if in_crop_step(node)}
    for node in model.graph.node:
        if node.op_type != "TopK" or in_crop_step(node):
            continue
        frontier = [node.input[0]]
        while frontier:
            parent = producer.get(frontier.pop())
            if parent is None or parent.name in keep or parent.op_type == "Softmax":
                continue
            keep.add(parent.name)
            frontier.extend(parent.input)
    return keep


def to_fp16(onnx_path: str | Path, output: str | Path, log: Callable[[str], None] = log_info) -> Fp16Result:
    """An FP16 copy of an FP32 export; inputs and outputs stay FP32 so runtimes need no change."""
    from clca_deploy.extras import require

    require("onnxruntime", "FP16 conversion (onnxruntime's float16 converter)")
    from clca_deploy.metadata import metadata_props, write_metadata

    started = time.perf_counter()
    output = check_output_path(output)
    refuse_overwriting_inputs([output], [onnx_path])
    model, _ = load_fp32_export(onnx_path, "convert")
    props = metadata_props(model)
    blocked = score_path_nodes(model)
    # The converter gets the model in memory (never a path: given one, it writes a temporary file beside it).
    kept = sum(1 for n in model.graph.node if n.op_type in FP32_OP_TYPES) + len(blocked)
    converted = _convert(model, blocked, str(onnx_path))
    props["precision"] = "fp16"
    write_metadata(converted, props)
    _save_checked(converted, output, str(onnx_path))
    log(f"fp16: kept {kept} nodes in fp32 ({', '.join(FP32_OP_TYPES)} and the token-score path)")
    return Fp16Result(str(output), "fp16", kept, round(time.perf_counter() - started, 2))


def _convert(model, blocked: set[str], source: str):
    """onnxruntime's float16 converter on ``model`` (which it changes in place: pass a model of your own);
    a graph it cannot take is one line."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    try:
        converted = convert_float_to_float16(
            model, keep_io_types=True, op_block_list=list(FP32_OP_TYPES), node_block_list=sorted(blocked)
        )
    except Exception as exc:  # onnx and the converter raise their own classes (and assert)
        raise _unconvertible(exc, source) from None
    _topological_sort(converted.graph)
    # The converter leaves some value_info entries with their old fp32 types; drop them all
    # and let shape inference recompute them, or onnx.checker sees conflicting types.
    del converted.graph.value_info[:]
    return converted


def _save_checked(converted, output: Path, source: str) -> None:
    """Write ``converted`` atomically once onnx's full check passes; nothing is left at ``output`` otherwise
    (a full or read-only disk is atomic_output's one line)."""
    import onnx

    try:
        with atomic_output(output) as tmp:
            onnx.save(converted, str(tmp))
            onnx.checker.check_model(str(tmp), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise _unconvertible(exc, source) from None


def _unconvertible(exc: BaseException, source: str) -> ClcaDeployError:
    first = (str(exc).strip().splitlines() or [""])[0][:300]
    return ClcaDeployError(
        f"cannot convert {source} to FP16 ({type(exc).__name__}: {printable(first)}); nothing was written. "
        "Is it an unmodified `clca-deploy export`? Export it again."
    )


def _topological_sort(graph) -> None:
    """Reorder nodes so that every input is produced first (the converter appends its input
    casts at the end, which onnx.checker rejects)."""
    available = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        ready = [n for n in pending if all(name in available for name in n.input)]
        if not ready:
            raise ClcaDeployError("the FP16 graph has a cycle or a dangling input; please report this.")
        for node in ready:
            ordered.append(node)
            available.update(node.output)
        pending = [n for n in pending if n not in ready]
    del graph.node[:]
    graph.node.extend(ordered)

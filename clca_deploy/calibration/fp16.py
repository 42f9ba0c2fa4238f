"""FP32 ONNX -> FP16 ONNX with the numerically sensitive ops kept in FP32."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from clca_deploy.artifacts import atomic_output, check_output_path, refuse_overwriting_inputs
from clca_deploy.errors import ClcaDeployError

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


def to_fp16(onnx_path: str | Path, output: str | Path, log: Callable[[str], None] = print) -> Fp16Result:
    """An FP16 copy of an FP32 export; inputs and outputs stay FP32 so runtimes need no change."""
    from clca_deploy.extras import require

    require("onnxruntime", "FP16 conversion (onnxruntime's float16 converter)")
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    from clca_deploy.metadata import metadata_props, read_onnx_metadata, write_metadata

    started = time.perf_counter()
    output = check_output_path(output)
    refuse_overwriting_inputs([output], [onnx_path])
    info = read_onnx_metadata(onnx_path)
    if info.precision != "fp32":
        raise ClcaDeployError(f"{onnx_path} is already {info.precision}; convert the FP32 export.")
    model = onnx.load(str(onnx_path))
    props = metadata_props(model)
    blocked = score_path_nodes(model)
    converted = convert_float_to_float16(
        model, keep_io_types=True, op_block_list=list(FP32_OP_TYPES), node_block_list=sorted(blocked)
    )
    _topological_sort(converted.graph)
    # The converter leaves some value_info entries with their old fp32 types; drop them all
    # and let shape inference recompute them, or onnx.checker sees conflicting types.
    del converted.graph.value_info[:]
    props["precision"] = "fp16"
    write_metadata(converted, props)
    with atomic_output(output) as tmp:
        onnx.save(converted, str(tmp))
        onnx.checker.check_model(str(tmp), full_check=True)
    kept = sum(1 for n in model.graph.node if n.op_type in FP32_OP_TYPES) + len(blocked)
    log(f"fp16: kept {kept} nodes in fp32 ({', '.join(FP32_OP_TYPES)} and the token-score path)")
    return Fp16Result(str(output), "fp16", kept, round(time.perf_counter() - started, 2))


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

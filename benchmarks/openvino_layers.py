"""Where OpenVINO spends the time of each CPU variant, and in which precision: its own profiler.

For the ViT-B/16 448 files of `cpu_runtimes.py` (same work folder, same variants: our Q/DQ file, its
OpenVINO form, the searched placement's with ``--placement``, NNCF's IR), OpenVINO's
per-layer performance counters (PERF_COUNT) after compilation: for every executed layer its
type, the kernel OpenVINO chose (``brgemm_avx512_amx_i8``: the last word is the precision it
ran in) and its time. Summed by layer type and precision, this answers which layers of our Q/DQ
file stay float, where NNCF's placement differs, and what that costs. The variants of a keep rate are
compiled together and take turns (each turn an untimed call, then a counted one): profiled one after
the other, a variant's sum moved by up to 45% between runs on this VM, so only variants of one
run are compared, and interleaving puts them under the same drift. Each variant also records what its
compiled attention runs in (``attention_facts``).

    python benchmarks/openvino_layers.py --data ../shared/data/leaves \\
        [--placement benchmarks/work/cpu_runtimes/clca.folds.placement.json] \\
        --out benchmarks/results/openvino_layers.json
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

from clca_deploy.artifacts import write_json
from clca_deploy.bench.environment import environment
from clca_deploy.export.verify import synthetic_images

from cpu_runtimes import VARIANTS, prepare, speed_checkpoint

# Layers that carry the multiply-accumulate work; everything else is data movement or eltwise.
GEMM_TYPES = ("FullyConnected", "FullyConnectedQuantizedLegacy", "MatMul", "Convolution", "GroupConvolution")


def kernel_precision(exec_type: str) -> str:
    """``jit_avx512_amx_i8`` -> ``i8``: OpenVINO names each kernel with the precision it runs in
    (in either case: NNCF's compressed-weight layers report ``I8``)."""
    return exec_type.rsplit("_", 1)[-1].lower()


class _Profiled:
    """One variant compiled with OpenVINO's performance counters on, and its per-layer times so far."""

    def __init__(self, path: Path, precision: str):
        import openvino as ov

        self.path = path
        self.compiled = ov.Core().compile_model(str(path), "CPU", {
            "PERF_COUNT": True, "PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": precision,
        })
        self.request = self.compiled.create_infer_request()
        self.totals: dict[str, dict] = {}
        self.calls = 0

    def profiled_call(self, batch) -> None:
        """One untimed call (it absorbs the switch from the variant before), then one whose layers count."""
        self.request.infer({0: batch})
        self.request.infer({0: batch})
        self.calls += 1
        for info in self.request.profiling_info:
            if info.status != info.Status.EXECUTED:
                continue
            layer = self.totals.setdefault(info.node_name, {
                "name": info.node_name, "type": info.node_type, "kernel": info.exec_type, "ms": 0.0})
            layer["ms"] += info.real_time.total_seconds() * 1e3

    def layers(self) -> list[dict]:
        """Mean time per executed layer over the counted calls."""
        return [{**layer, "ms": layer["ms"] / self.calls} for layer in self.totals.values()]


def profile_interleaved(variants: dict[str, tuple[Path, str]], batch, iters: int) -> dict[str, tuple[list[dict], dict]]:
    """Every variant's mean layer times over ``iters`` counted calls, the variants taking turns call by call
    (each turn opened by an untimed call), so that drift on the machine reaches all of them alike; and
    each compiled program's ``attention_facts``."""
    profiled = {name: _Profiled(path, precision) for name, (path, precision) in variants.items()}
    for _ in range(iters):
        for variant in profiled.values():
            variant.profiled_call(batch)
    return {name: (variant.layers(), attention_facts(variant.path, variant.compiled)) for name, variant in profiled.items()}


def attention_facts(path: Path, compiled) -> dict:
    """Whether the file quantizes attn.v's probabilities (a FakeQuantize reading a Softmax, as OpenVINO reads
    the file), and the input precisions of the compiled program's fused "Subgraph" kernels (the attention:
    q, k, v; a FakeQuantize on the probabilities is fused inside them)."""
    import openvino as ov

    source = ov.Core().read_model(str(path)).get_ops()
    quantized_softmax = any(op.get_type_name() == "FakeQuantize"
                            and op.input(0).get_source_output().get_node().get_type_name() == "Softmax" for op in source)
    ops = compiled.get_runtime_model().get_ops()
    subgraph_inputs = sorted({tuple(op.input(i).get_element_type().get_type_name() for i in range(op.get_input_size()))
                              for op in ops if op.get_rt_info()["layerType"].astype(str) == "Subgraph"})
    return {"subgraph_input_precisions": [list(t) for t in subgraph_inputs], "fakequantize_after_softmax": quantized_softmax}


def summarise(layers: list[dict]) -> dict:
    by_type: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    gemm_count: dict[str, int] = defaultdict(int)
    for layer in layers:
        precision = kernel_precision(layer["kernel"])
        by_type[layer["type"]][precision] += layer["ms"]
        if layer["type"] in GEMM_TYPES:
            gemm_count[precision] += 1
    total = sum(layer["ms"] for layer in layers)
    gemm_ms = {p: sum(by_type[t].get(p, 0.0) for t in GEMM_TYPES) for p in gemm_count}
    float_gemms = sorted((l for l in layers if l["type"] in GEMM_TYPES and kernel_precision(l["kernel"]) != "i8"),
                         key=lambda l: -l["ms"])
    return {
        "total_layer_ms": total,
        "gemm_layers_by_precision": dict(gemm_count),
        "gemm_ms_by_precision": gemm_ms,
        "ms_by_type_and_precision": {t: dict(p) for t, p in sorted(by_type.items(), key=lambda kv: -sum(kv[1].values()))},
        "slowest_float_gemms": [{k: l[k] for k in ("name", "type", "kernel", "ms")} for l in float_gemms[:12]],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="Leaves root with train/ (calibration).")
    parser.add_argument("--keep", type=float, nargs="+", default=[1.0, 0.1])
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--calibration-images", type=int, default=64)
    parser.add_argument("--workdir", type=Path, default=Path("benchmarks/work/cpu_runtimes"))
    parser.add_argument("--placement", type=Path, help="A placement report (cpu_runtimes.py's searched one) for the ov_searched_* variants.")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/openvino_layers.json"))
    args = parser.parse_args()

    checkpoint = speed_checkpoint(args.workdir)
    batch = synthetic_images(args.batch_size, 448, seed=1)
    report = {"benchmark": "openvino_layers", "version": 1, "batch_size": args.batch_size, "iters": args.iters,
              "what_was_timed": "OpenVINO PERF_COUNT real time per executed layer, mean over iters; the variants of a keep rate take turns call by call, each turn opened by an untimed call",
              "environment": environment(), "keep": {}}
    for keep in args.keep:
        files = prepare(checkpoint, args.workdir, keep, args.data / "train", args.calibration_images, placement=args.placement)
        report["keep"][str(keep)] = {}
        variants = {name: (files[kind], precision) for name, (kind, runtime, precision) in VARIANTS.items()
                    if runtime == "openvino" and kind in files}
        for name, (layers, attention) in profile_interleaved(variants, batch, args.iters).items():
            summary = {**summarise(layers), **attention}
            report["keep"][str(keep)][name] = summary
            print(f"keep {keep} {name}: {summary['total_layer_ms']:.0f} ms in layers; GEMM layers by precision "
                  f"{summary['gemm_layers_by_precision']}, GEMM ms {({p: round(v) for p, v in summary['gemm_ms_by_precision'].items()})}; "
                  f"Subgraph inputs {attention['subgraph_input_precisions']}")
    write_json(args.out, report)
    print(json.dumps({"wrote": str(args.out)}))


if __name__ == "__main__":
    main()

"""Where OpenVINO spends the time of each CPU variant, and in which precision: its own profiler.

For the ViT-B/16 448 files of `cpu_runtimes.py` (same work folder, same variants: our Q/DQ file, its
OpenVINO form, the searched placement's with ``--placement``, NNCF's IR), OpenVINO's
per-layer performance counters (PERF_COUNT) after compilation: for every executed layer its
type, the kernel OpenVINO chose (``brgemm_avx512_amx_i8``: the last word is the precision it
ran in) and its time. Summed by layer type and precision, this answers which layers of our Q/DQ
file stay float, where NNCF's placement differs, and what that costs.

    python benchmarks/openvino_layers.py --data ../shared/data/leaves \\
        [--placement benchmarks/work/cpu_runtimes/trained/clca.searched.int8.placement.json] \\
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


def profile(path: Path, precision: str, batch, iters: int) -> list[dict]:
    """Mean time per executed layer over ``iters`` calls, after one warm-up call."""
    import openvino as ov

    compiled = ov.Core().compile_model(str(path), "CPU", {
        "PERF_COUNT": True, "PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": precision,
    })
    request = compiled.create_infer_request()
    request.infer({0: batch})
    totals: dict[str, dict] = {}
    for _ in range(iters):
        request.infer({0: batch})
        for info in request.profiling_info:
            if info.status != info.Status.EXECUTED:
                continue
            layer = totals.setdefault(info.node_name, {
                "name": info.node_name, "type": info.node_type, "kernel": info.exec_type, "ms": 0.0})
            layer["ms"] += info.real_time.total_seconds() * 1e3 / iters
    return list(totals.values())


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
              "what_was_timed": "OpenVINO PERF_COUNT real time per executed layer, mean over iters",
              "environment": environment(), "keep": {}}
    for keep in args.keep:
        files = prepare(checkpoint, args.workdir, keep, args.data / "train", args.calibration_images, placement=args.placement)
        report["keep"][str(keep)] = {}
        for name, (kind, runtime, precision) in VARIANTS.items():
            if runtime != "openvino" or kind not in files:
                continue
            summary = summarise(profile(files[kind], precision, batch, args.iters))
            report["keep"][str(keep)][name] = summary
            print(f"keep {keep} {name}: {summary['total_layer_ms']:.0f} ms in layers; GEMM layers by precision "
                  f"{summary['gemm_layers_by_precision']}, GEMM ms {({p: round(v) for p, v in summary['gemm_ms_by_precision'].items()})}")
    write_json(args.out, report)
    print(json.dumps({"wrote": str(args.out)}))


if __name__ == "__main__":
    main()

"""Whether the order in which variants take turns changes their timings: call by call against rounds.

Times onnxruntime FP32 with our OpenVINO-form INT8 file and NNCF's IR (bf16 float parts, the
files `cpu_runtimes.py` made in its work folder) in both orders: ours right after onnxruntime,
then NNCF right after it. Each order is timed two ways on the same compiled files: call by call
(each variant one call per turn, as the benchmarks did before) and in rounds (``time_in_rounds``:
ROUND_CALLS calls per turn, each turn opened by an untimed call, as ``measure_interleaved`` now
does). A harness is fair when swapping the order leaves each file's p50 where it was.

    python benchmarks/turn_order.py --repeats 2 --out benchmarks/results/turn_order.json
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from clca_deploy.artifacts import write_json
from clca_deploy.bench.environment import environment
from clca_deploy.bench.latency import ROUND_CALLS, time_in_rounds
from clca_deploy.export.verify import synthetic_images

from cpu_runtimes import made_files, open_variant

ORDERS = {"ours_after_ort": ("ort_fp32", "ov_int8_openvino_bf16", "nncf_int8_bf16"),
          "nncf_after_ort": ("ort_fp32", "nncf_int8_bf16", "ov_int8_openvino_bf16")}


def call_by_call(runs: dict, batch, warmup: int, iters: int) -> dict[str, list[float]]:
    """The former harness: every variant one timed call per turn, no untimed call between turns."""
    for _ in range(warmup):
        for run in runs.values():
            run(batch)
    samples: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(iters):
        for name, run in runs.items():
            start = time.perf_counter()
            run(batch)
            samples[name].append((time.perf_counter() - start) * 1000.0)
    return samples


HARNESSES = {"call_by_call": call_by_call, "rounds": time_in_rounds}


def one_repeat(files: dict[str, Path], batch, warmup: int, iters: int) -> dict:
    """p50 of every variant, per order and harness, on files compiled once for this repeat."""
    runners = {name: open_variant(files, name) for name in ORDERS["ours_after_ort"]}
    cells: dict = {}
    for order, names in ORDERS.items():
        ordered = {name: runners[name] for name in names}
        for harness, timer in HARNESSES.items():
            samples = timer(ordered, batch, warmup, iters)
            cells.setdefault(order, {})[harness] = {name: statistics.median(values) for name, values in samples.items()}
            print(order, harness, ", ".join(f"{n} {statistics.median(v):.1f} ms" for n, v in samples.items()), flush=True)
    for runner in runners.values():
        runner.__exit__(None, None, None)
    return cells


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("benchmarks/work/cpu_runtimes"))
    parser.add_argument("--keep", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/turn_order.json"))
    args = parser.parse_args()
    files = made_files(args.workdir, f"keep{args.keep}")
    batch = synthetic_images(args.batch_size, 448, seed=1)
    repeats = [one_repeat(files, batch, args.warmup, args.iters) for _ in range(args.repeats)]
    write_json(args.out, {
        "benchmark": "turn_order", "version": 1, "keep_rate": args.keep, "batch_size": args.batch_size,
        "iters": args.iters, "round_calls": ROUND_CALLS, "orders": {k: list(v) for k, v in ORDERS.items()},
        "what_was_timed": "p50 ms per variant; call_by_call: one call per turn; rounds: ROUND_CALLS calls per turn, "
                          "each turn opened by an untimed call; every repeat compiles the files afresh",
        "environment": environment(), "repeats": repeats,
    })


if __name__ == "__main__":
    main()

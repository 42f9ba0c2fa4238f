"""How much one `cpu_runtimes.py` speed cell moves between runs: the same files, compiled afresh each round.

`cpu_runtimes.py` has its variants take turns, which cancels drift within a run; it cannot
cancel what differs between compiles and runs (thread placement, memory layout, the VM's
neighbours). This times a few of its variants (ours, NNCF's, the onnxruntime FP32 baseline) in
ROUNDS rounds; every round opens (compiles) every variant again and times them interleaved as
`cpu_runtimes.py` does. It reuses the files `cpu_runtimes.py` made in its work folder.

    python benchmarks/speed_repeats.py --rounds 3 --out benchmarks/results/speed_repeats.json
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from clca_deploy.artifacts import write_json
from clca_deploy.bench.environment import environment
from clca_deploy.bench.latency import ROUND_CALLS

from cpu_runtimes import VARIANTS, made_files, open_variant, timed_cells

NAMES = ("ort_fp32", "ov_int8_openvino_bf16", "ov_scores_int8_openvino_bf16", "nncf_int8_bf16")


def one_round(files: dict[str, Path], batch_sizes, iters: int, warmup: int) -> dict:
    names = [n for n in NAMES if VARIANTS[n][0] in files]
    runners = {name: open_variant(files, name) for name in names}
    cells = timed_cells(runners, batch_sizes, warmup, iters)
    for runner in runners.values():
        runner.__exit__(None, None, None)
    return {size: {name: {key: cell[key] for key in ("p50_ms", "speedup_vs_ort_fp32")} for name, cell in row.items()}
            for size, row in cells.items()}


def summary(rounds: list[dict]) -> dict:
    """Per batch and variant: the speed-up of every round, their median and spread (max/min)."""
    out = {}
    for size in rounds[0]:
        for name in rounds[0][size]:
            values = [r[size][name]["speedup_vs_ort_fp32"] for r in rounds]
            out.setdefault(size, {})[name] = {"speedups": values, "median": statistics.median(values),
                                              "spread": max(values) / min(values)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("benchmarks/work/cpu_runtimes"))
    parser.add_argument("--keep", type=float, nargs="+", default=[1.0, 0.1])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--iters", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/speed_repeats.json"))
    args = parser.parse_args()
    report = {"benchmark": "speed_repeats", "version": 1, "variants": list(NAMES), "rounds": args.rounds,
              "what_was_timed": f"p50 per round, variants taking turns in rounds of {ROUND_CALLS} calls, each opened by an untimed call; every round compiles every variant afresh",
              "environment": environment(), "keeps": []}
    for keep in args.keep:
        files = made_files(args.workdir, f"keep{keep}")
        rounds = []
        for index in range(args.rounds):
            rounds.append(one_round(files, args.batch_sizes, args.iters, args.warmup))
            print(f"keep {keep} round {index + 1}: " + json.dumps({b: {n: round(c['speedup_vs_ort_fp32'], 2) for n, c in cells.items()}
                                                                   for b, cells in rounds[-1].items()}), flush=True)
        report["keeps"].append({"keep_rate": keep, "rounds": rounds, "summary": summary(rounds)})
    write_json(args.out, report)
    print(json.dumps({"wrote": str(args.out)}))


if __name__ == "__main__":
    main()

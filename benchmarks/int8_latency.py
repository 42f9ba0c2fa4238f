"""INT8 (explicit Q/DQ) against FP32 in onnxruntime on this CPU, at keep 0.1 and 1.0.

EViT + CLCA on CLIP ViT-B/16 at 448 px (README training settings, random weights: speed
does not depend on them). Each keep rate is exported with `export_onnx`, calibrated with
`quantize_int8` on the real leaf images, and both files are timed host-to-host with FP32
and INT8 taking turns in rounds (``measure_interleaved``).

    python benchmarks/int8_latency.py --data ../shared/data/leaves/train --out benchmarks/results/int8_latency.json
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from clca_deploy.artifacts import write_json
from clca_deploy.bench.environment import environment
from clca_deploy.bench.latency import ROUND_CALLS, measure_interleaved
from clca_deploy.calibration import CalibrationConfig, quantize_int8
from clca_deploy.export import ExportConfig, export_onnx
from clca_deploy.export.verify import synthetic_images
from clca_deploy.runtime import open_backend

from export_latency import SETTINGS, write_checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="Leaf images for calibration.")
    parser.add_argument("--keep", type=float, nargs="+", default=[1.0, 0.1])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--calibration-images", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/int8_latency.json"))
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = write_checkpoint(Path(tmp))
        for keep in args.keep:
            fp32 = Path(tmp) / f"keep{keep}.onnx"
            export_onnx(checkpoint, fp32, ExportConfig(keep_rate=keep, verify_images=1), log=print)
            calibration = CalibrationConfig(data=args.data, num_images=args.calibration_images, use_cache=False)
            int8 = quantize_int8(fp32, Path(tmp) / f"keep{keep}.int8.onnx", calibration, log=print)
            row = {"keep_rate": keep, "quantized_nodes": int8.quantized_nodes, "kept_float": list(int8.kept_float), "latency": {}}
            with open_backend(fp32) as fp32_backend, open_backend(int8.path) as int8_backend:
                for size in args.batch_sizes:
                    batch = synthetic_images(size, 448, seed=1)
                    iters = args.iters if size == 1 else max(4, args.iters // 2)
                    stats = measure_interleaved({"fp32": fp32_backend, "int8": int8_backend}, batch, args.warmup, iters)
                    row["latency"][str(size)] = {name: s.to_dict() for name, s in stats.items()}
                    speedup = stats["fp32"].p50_ms / stats["int8"].p50_ms
                    row["latency"][str(size)]["int8_speedup"] = speedup
                    print(f"keep {keep} batch {size}: fp32 {stats['fp32'].p50_ms:.0f} ms, int8 {stats['int8'].p50_ms:.0f} ms, x{speedup:.2f}")
            rows.append(row)
    report = {
        "benchmark": "int8_latency",
        "version": 1,
        "what_was_timed": f"host-to-host onnxruntime CPU call on a preprocessed batch, p50; fp32 and int8 take turns in rounds of {ROUND_CALLS} calls, each opened by an untimed call",
        "settings": SETTINGS,
        "calibration_images": args.calibration_images,
        "environment": environment(),
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.out, report)
    print("| keep | batch | fp32 ms | int8 ms | speed-up |\n|---|---|---|---|---|")
    for row in rows:
        for size, entry in row["latency"].items():
            print(f"| {row['keep_rate']:g} | {size} | {entry['fp32']['p50_ms']:.0f} | {entry['int8']['p50_ms']:.0f} | {entry['int8_speedup']:.2f}x |")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

"""Latency of exported EViT + CLCA graphs across keep rates: onnxruntime CPU beside PyTorch eager.

ViT-B/16 CLIP variant at 448 px with the README training settings (1 CLR, gap, recovery
at the last block, CLA head), random weights: latency does not depend on the weights.
Each keep rate goes through the real pipeline (`export_onnx`, parity-checked), then both
runtimes are timed with the project's one latency harness at batch 1 and 8.

    python benchmarks/export_latency.py --out benchmarks/results/export_latency.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch

from clca_deploy.artifacts import write_json
from clca_deploy.bench.environment import environment
from clca_deploy.bench.latency import ROUND_CALLS, measure_interleaved
from clca_deploy.export import ExportConfig, export_onnx
from clca_deploy.export.verify import onnx_session, synthetic_images
from clca_deploy.model import ClcaConfig, ClcaModel, load_checkpoint
from clca_deploy.model.flops import count_macs

SETTINGS = dict(
    model="evit_vit_base_patch16_clip_224.laion2b", input_size=448, num_classes=1110, keep_rate=[0.1],
    reduction_loc=[3, 6, 9], clc=True, num_clr=1, clc_include_gap=True, clc_pool_cls=False,
    clc_pool_clr=False, clc_recover_at_last=True, ifa_head=True, ifa_dws_conv_groups=2,
)


def write_checkpoint(folder: Path) -> Path:
    config, _ = ClcaConfig.from_args(SETTINGS)
    torch.manual_seed(0)
    model = ClcaModel(config)
    path = folder / "random_clip_b16_448.pth"
    torch.save({"model": model.state_dict(), "args": argparse.Namespace(**SETTINGS), "epoch": 0}, path)
    return path


def markdown_table(report: dict) -> str:
    """The README table: p50 latency per runtime and batch size, and the ratio to keep 1.0."""
    sizes = list(report["rows"][0]["latency"])
    header = "| keep | GMACs | " + " | ".join(
        f"torch b{b} ms | onnxruntime b{b} ms | ort/torch b{b} | ort vs keep 1.0 b{b}" for b in sizes
    ) + " |"
    lines = [header, "|" + "---|" * (2 + 4 * len(sizes))]
    for row in report["rows"]:
        cells = [f"{row['keep_rate']:g}", f"{row['gmacs']:.2f}"]
        for b in sizes:
            torch_ms = row["latency"][b]["torch_eager"]["p50_ms"]
            ort = row["latency"][b]["onnxruntime_cpu"]
            ratio = ort.get("ratio_to_keep_1.0")
            cells += [f"{torch_ms:.0f}", f"{ort['p50_ms']:.0f}", f"{ort['p50_ms'] / torch_ms:.2f}",
                      "-" if ratio is None else f"{ratio:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", type=Path, help="Only print the markdown table of an existing JSON report.")
    parser.add_argument("--keep", type=float, nargs="+", default=[1.0, 0.7, 0.5, 0.25, 0.1])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/export_latency.json"))
    args = parser.parse_args()
    if args.table:
        print(markdown_table(json.loads(args.table.read_text())))
        return

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = write_checkpoint(Path(tmp))
        trained = load_checkpoint(checkpoint)
        for keep in args.keep:
            onnx_path = Path(tmp) / f"keep{keep}.onnx"
            result = export_onnx(checkpoint, onnx_path, ExportConfig(keep_rate=keep, verify_images=2), log=print)
            torch_model = load_checkpoint(checkpoint, keep_rate=keep)
            session = onnx_session(onnx_path)
            row = {
                "keep_rate": keep,
                "gmacs": count_macs(torch_model.config).gmacs,
                "export_seconds": result.seconds,
                "parity_max_abs_error": result.parity.max_abs_error,
                "latency": {},
            }
            for batch_size in args.batch_sizes:
                batch = synthetic_images(batch_size, 448, seed=1)
                iters = max(4, args.iters // 2) if batch_size > 1 else args.iters

                def run_torch(x: np.ndarray) -> np.ndarray:
                    with torch.inference_mode():
                        return torch_model(torch.from_numpy(x)).numpy()

                def run_ort(x: np.ndarray) -> np.ndarray:
                    return session.run(None, {"images": x})[0]

                stats = measure_interleaved(
                    {"torch_eager": run_torch, "onnxruntime_cpu": run_ort}, batch, args.warmup, iters
                )
                row["latency"][str(batch_size)] = {name: s.to_dict() for name, s in stats.items()}
                print(
                    f"keep {keep} batch {batch_size}: torch {row['latency'][str(batch_size)]['torch_eager']['p50_ms']:.0f} ms, "
                    f"onnxruntime {row['latency'][str(batch_size)]['onnxruntime_cpu']['p50_ms']:.0f} ms (p50)"
                )
            rows.append(row)
        del trained

    full = {str(b): {rt: next(r for r in rows if r["keep_rate"] == 1.0)["latency"][str(b)][rt]["p50_ms"]
                     for rt in ("torch_eager", "onnxruntime_cpu")} for b in args.batch_sizes} if 1.0 in args.keep else {}
    for row in rows:
        for b, runtimes in row["latency"].items():
            for runtime, stats in runtimes.items():
                if full:
                    stats["ratio_to_keep_1.0"] = stats["p50_ms"] / full[b][runtime]
    report = {
        "benchmark": "export_latency",
        "version": 1,
        "what_was_timed": f"host-to-host forward of one preprocessed batch (no image decoding), p50 over iterations; torch and onnxruntime take turns in rounds of {ROUND_CALLS} calls (each opened by an untimed call) so machine drift hits both alike",
        "settings": SETTINGS,
        "environment": environment(),
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.out, report)
    print(markdown_table(report))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

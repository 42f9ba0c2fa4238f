"""GMACs and onnxruntime CPU latency of every static token reduction method, ViT-B/16 at 448 px.

Each method (EViT as the reference method, ToMe, DPC-KNN, DynamicViT, SiT, PatchMerger) at
keep 0.1 / 0.25 / 0.5 / 0.7 on vit_base_patch16_224 run at 448 px with the README's CLCA
settings (CLC with 1 CLR and the GAP carrier, recovery at the last block, CLA head), 15
classes, random weights (speed does not depend on them; SiT's and PatchMerger's weight
shapes do depend on the keep rate, so every row gets its own checkpoint). The plain
ViT-B/16 (no reduction, no CLCA) is the reference row.

Every graph goes through the real pipeline (`export_onnx`, parity-checked on real leaves
when ../shared is there). GMACs are `count_macs`, the official torchprofile convention.
Latency is onnxruntime on this CPU at batch 1, host-to-host, with the project's latency
harness. The machine is shared and its load swings by 2-3x within a minute, so the graphs
are timed interleaved (in rounds, ``measure_interleaved``), one keep rate at a time together with the plain ViT:
every graph of a column sees the same load, and each row also gets its ratio to the plain
ViT timed alongside it. `os.getloadavg()` is recorded around every group. A row that cannot
be exported keeps its GMACs, a status and the reason.

    nohup python benchmarks/method_latency.py > method_latency.log 2>&1 &
    python benchmarks/method_latency.py --table benchmarks/results/method_latency.json
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from clca_deploy.artifacts import write_json
from clca_deploy.bench.environment import environment
from clca_deploy.bench.latency import measure_interleaved
from clca_deploy.errors import ClcaDeployError
from clca_deploy.export import ExportConfig, export_onnx
from clca_deploy.export.verify import onnx_session, synthetic_images
from clca_deploy.model import ClcaConfig, ClcaModel, token_schedule
from clca_deploy.model.flops import count_macs

BACKBONE = "vit_base_patch16_224"
IMG_SIZE = 448
CLCA = dict(
    num_classes=15, reduction_loc=[3, 6, 9], clc=True, num_clr=1, clc_include_gap=True,
    clc_pool_cls=False, clc_pool_clr=False, clc_recover_at_last=True, ifa_head=True, ifa_dws_conv_groups=2,
)
PLAIN = dict(num_classes=15, keep_rate=[1.0], clc=False, num_clr=0, ifa_head=False)
METHODS = {"evit": "EViT", "tome": "ToMe", "dpcknn": "DPC-KNN", "dyvit": "DynamicViT", "sit": "SiT", "patchmerger": "PatchMerger"}
DEFAULT_LEAVES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "leaves" / "test"


def settings_for(method: str | None, keep: float, backbone: str, img_size: int) -> dict:
    if method is None:
        return {"model": backbone, "input_size": img_size, **PLAIN}
    return {"model": f"{method}_{backbone}", "input_size": img_size, "keep_rate": [keep], **CLCA}


def write_checkpoint(settings: dict, folder: Path) -> Path:
    config, _ = ClcaConfig.from_args(settings)
    torch.manual_seed(0)
    model = ClcaModel(config)
    path = folder / f"{settings['model']}_{settings['keep_rate'][0]}.pth"
    torch.save({"model": model.state_dict(), "args": argparse.Namespace(**settings), "epoch": 0}, path)
    return path


def export_row(method: str | None, keep: float, folder: Path, args) -> dict:
    """GMACs, token schedule and a parity-checked ONNX file (kept in ``folder``) for one row."""
    settings = settings_for(method, keep, args.backbone, args.img_size)
    config, _ = ClcaConfig.from_args(settings)
    row = {
        "method": method or "vit",
        "keep_rate": keep,
        "gmacs": count_macs(config).gmacs,
        "tokens_in_out_per_block": [[s.tokens_in, s.tokens_out] for s in token_schedule(config)],
    }
    checkpoint = write_checkpoint(settings, folder)
    onnx_path = folder / f"{checkpoint.stem}.onnx"
    data = args.data if args.data and args.data.exists() else None
    try:
        result = export_onnx(checkpoint, onnx_path, ExportConfig(verify_images=args.verify_images, data=data), log=print)
    except ClcaDeployError as exc:  # e.g. SiT/PatchMerger at 0.1: the official model outputs NaN
        row.update(status="not_exported", reason=str(exc))
        print(f"{row['method']} keep {keep}: not exported: {exc}")
        return row
    finally:
        checkpoint.unlink()
    row.update(
        status="ok",
        onnx=str(onnx_path),
        export_seconds=result.seconds,
        parity={"images": result.parity.images, "max_abs_error": result.parity.max_abs_error},
    )
    return row


def time_group(rows: list[dict], args) -> dict:
    """Time the rows' graphs interleaved (``measure_interleaved``); returns the load around the group."""
    batch = synthetic_images(1, args.img_size, seed=1)
    sessions = {id(row): onnx_session(row["onnx"]) for row in rows}
    runs = {str(id(row)): (lambda x, s=sessions[id(row)]: s.run(None, {"images": x})[0]) for row in rows}
    load_before = os.getloadavg()
    stats = measure_interleaved(runs, batch, args.warmup, args.iters)
    load_after = os.getloadavg()
    for row in rows:
        row.setdefault("onnxruntime_cpu_batch1", []).append(stats[str(id(row))].to_dict())
    return {"loadavg_before": load_before, "loadavg_after": load_after}


def summarise(row: dict, plain: dict) -> None:
    """p50 and minimum over all the row's samples, and its p50 ratio to the plain ViT timed beside it."""
    if row["status"] != "ok":
        return
    samples = [ms for group in row["onnxruntime_cpu_batch1"] for ms in group["samples_ms"]]
    row["p50_ms"] = float(np.percentile(samples, 50))
    row["min_ms"] = float(min(samples))
    group = row["onnxruntime_cpu_batch1"][-1]
    beside = next(g for g in plain["onnxruntime_cpu_batch1"] if g.get("group") == group.get("group"))
    row["ratio_to_plain_vit"] = group["p50_ms"] / beside["p50_ms"]


def markdown_table(report: dict) -> str:
    """Methods x keep rates; each cell: GMACs / onnxruntime CPU p50 ms at batch 1 (and the
    p50 ratio to the plain ViT timed interleaved with it)."""
    keeps = report["keep_rates"]
    lines = [
        "| method | " + " | ".join(f"keep {k:g}: GMACs / ms" for k in keeps) + " |",
        "|---|" + "---|" * len(keeps),
    ]
    notes = []
    for row in report["rows"]:
        if row["method"] == "vit":
            cell = _cell(row)
            lines.append(f"| {report['backbone']} at {report['img_size']} px, no reduction, no CLCA | " + " | ".join([cell] * len(keeps)) + " |")
    for method, label in METHODS.items():
        if not any(r["method"] == method for r in report["rows"]):
            continue
        cells = []
        for keep in keeps:
            row = next((r for r in report["rows"] if r["method"] == method and r["keep_rate"] == keep), None)
            cells.append("-" if row is None else _cell(row))
            if row is not None and row["status"] != "ok":
                notes.append(f"{label} at keep {keep:g}: {row['reason']}")
        lines.append(f"| {label} + CLCA | " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    if notes:
        table += "\n\n" + "\n".join(f"* {note}" for note in notes)
    return table


def _cell(row: dict) -> str:
    if row["status"] != "ok":
        return f"{row['gmacs']:.2f} / not exported*"
    if row["method"] == "vit":
        return f"{row['gmacs']:.2f} / {row['p50_ms']:.0f}"
    return f"{row['gmacs']:.2f} / {row['p50_ms']:.0f} ({row['ratio_to_plain_vit']:.2f}x)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", type=Path, help="Only print the markdown table of an existing JSON report.")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--keep", type=float, nargs="+", default=[0.1, 0.25, 0.5, 0.7])
    parser.add_argument("--data", type=Path, default=DEFAULT_LEAVES, help="Images for the export parity check.")
    parser.add_argument("--verify-images", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--iters", type=int, default=15)
    parser.add_argument("--backbone", default=BACKBONE, help="timm ViT name (a smaller one for a quick try).")
    parser.add_argument("--img-size", type=int, default=IMG_SIZE)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/method_latency.json"))
    args = parser.parse_args()
    if args.table:
        print(markdown_table(json.loads(args.table.read_text())))
        return

    started = time.time()
    groups = []
    with tempfile.TemporaryDirectory() as tmp:
        plain = export_row(None, 1.0, Path(tmp), args)
        rows = [plain] + [export_row(method, keep, Path(tmp), args) for method in args.methods for keep in args.keep]
        for keep in args.keep:
            group = [plain] + [r for r in rows[1:] if r["keep_rate"] == keep and r["status"] == "ok"]
            load = time_group(group, args)
            for row in group:
                row["onnxruntime_cpu_batch1"][-1]["group"] = keep
            groups.append({"keep_rate": keep, **load})
            print(f"keep {keep}: " + ", ".join(f"{r['method']} {r['onnxruntime_cpu_batch1'][-1]['p50_ms']:.0f} ms" for r in group))
    for row in rows:
        summarise(row, plain)
        row.pop("onnx", None)
    report = {
        "benchmark": "method_latency",
        "version": 1,
        "what_was_timed": "onnxruntime CPU, batch 1, host-to-host forward of one preprocessed image (no decoding), p50 over iterations after warm-up",
        "backbone": args.backbone,
        "img_size": args.img_size,
        "clca_settings": CLCA,
        "keep_rates": args.keep,
        "gmacs_convention": "torchprofile MACs of the official code at batch 1 (count_macs), as in the paper",
        "iterations": {"warmup": args.warmup, "iters": args.iters, "interleaved": "per keep rate, with the plain ViT"},
        "load_per_group": groups,
        "seconds": round(time.time() - started, 1),
        "environment": environment(),
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.out, report)
    print(markdown_table(report))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

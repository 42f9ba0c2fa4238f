"""Train a tiny CLCA model on the real leaves, then measure FP32 / FP16 / INT8 accuracy against it.

The issue's goals: top-1 on leaves/test >= 80% within 15 CPU minutes of training; INT8
(onnxruntime CPU) top-1 drop <= 1 point and top-1 agreement >= 97% against the FP32
reference; FP16 drop <= 0.5 point. Every step reuses its artefact in --workdir if present.

    python benchmarks/trained_leaves.py --data ../shared/data/leaves --out benchmarks/results/trained_leaves.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from clca_deploy.artifacts import write_json
from clca_deploy.bench.environment import environment
from clca_deploy.bench.run import BenchConfig, run_bench
from clca_deploy.bench.table import print_table
from clca_deploy.calibration import CalibrationConfig, quantize_int8, to_fp16
from clca_deploy.export import ExportConfig, export_onnx
from clca_deploy.train import TrainConfig, train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="Root with train/ and test/.")
    parser.add_argument("--model", default="evit_vit_tiny_patch16_224")
    parser.add_argument("--keep", type=float, default=0.1)
    parser.add_argument("--img-size", type=int, default=128)
    parser.add_argument("--minutes", type=float, default=14.0, help="Training time budget (wall clock).")
    parser.add_argument("--augment", default="strong")
    parser.add_argument("--calibration-images", type=int, default=256)
    parser.add_argument("--workdir", type=Path, default=Path("benchmarks/work/trained_leaves"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/trained_leaves.json"))
    args = parser.parse_args()

    args.workdir.mkdir(parents=True, exist_ok=True)
    checkpoint = args.workdir / "leaves.pth"
    training_json = args.workdir / "training.json"
    if not training_json.exists():
        config = TrainConfig(model=args.model, keep_rate=args.keep, img_size=args.img_size, minutes=args.minutes,
                             augment=args.augment)
        result = train(args.data, checkpoint, config, log=print)
        write_json(training_json, result.to_dict())
    training = json.loads(training_json.read_text())

    fp32 = args.workdir / "leaves.onnx"
    if not fp32.exists():
        export_onnx(checkpoint, fp32, ExportConfig(data=args.data / "test"), log=print)
    int8 = args.workdir / "leaves.int8.onnx"
    if not int8.exists():
        quantize_int8(fp32, int8, CalibrationConfig(data=args.data / "train", num_images=args.calibration_images), log=print)
    fp16 = args.workdir / "leaves.fp16.onnx"
    if not fp16.exists():
        to_fp16(fp32, fp16, log=print)

    report = run_bench(BenchConfig(models=(fp32, fp16, int8), data=args.data / "test", reference=checkpoint,
                                   batch_sizes=(1, 8), iters=20), log=print)
    print_table(report)
    rows = {row.precision if row.backend == "onnxruntime" else "torch": row for row in report.results}
    reference_top1 = rows["torch"].accuracy.top1
    goals = {}
    for precision, max_drop in (("fp32", 0.0), ("fp16", 0.5), ("int8", 1.0)):
        accuracy = rows[precision].accuracy
        drop = reference_top1 - accuracy.top1
        goals[precision] = {
            "top1": accuracy.top1, "top1_drop": drop, "top1_agreement": accuracy.top1_agreement,
            "max_abs_logit_error": accuracy.max_abs_logit_error,
            "drop_goal": max_drop if precision != "fp32" else None,
            "drop_goal_met": drop <= max_drop if precision != "fp32" else None,
            "agreement_goal_met": accuracy.top1_agreement >= 97.0 if precision == "int8" else None,
        }
    summary = {
        "benchmark": "trained_leaves",
        "version": 1,
        "command": "python benchmarks/trained_leaves.py " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()),
        "training": {k: training[k] for k in ("model", "img_size", "keep_rate", "epochs", "seconds", "cpu_seconds",
                                              "precision", "train_images", "test_images", "test_top1")},
        "training_goal_met": training["test_top1"] >= 80.0,
        "reference_top1": reference_top1,
        "precisions": goals,
        "bench": report.to_dict(),
        "environment": environment(),
    }
    write_json(args.out, summary)
    print(json.dumps({k: summary[k] for k in ("training", "reference_top1", "precisions")}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

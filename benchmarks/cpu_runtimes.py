"""CPU runtimes side by side: onnxruntime and OpenVINO, FP32 / BF16 / INT8, on the same exported files.

Speed: EViT + CLCA on CLIP ViT-B/16 at 448 px (README training settings, random weights: speed
does not depend on them), keep 1.0 and 0.1, batch 1 and 8. Each keep rate is exported with
`export_onnx` and calibrated with `quantize_int8` on the real leaves; every variant is then timed
host-to-host on the same batch, call by call in alternation (one latency harness for all).

Accuracy: a model trained on the leaves (``--trained``, e.g. the demo's model.pth), exported and
calibrated the same way, benched against its PyTorch reference on the test leaves on every
variant (`clca-deploy bench` code): top-1, top-1 agreement, max |logit error|.

With nncf installed, OpenVINO's own post-training quantization (NNCF, transformer preset) of the
same FP32 file is added to both parts, beside our explicit Q/DQ placement.

    python benchmarks/cpu_runtimes.py --data ../shared/data/leaves --trained runs/demo/model.pth \\
        --out benchmarks/results/cpu_runtimes.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from clca_deploy.artifacts import write_json
from clca_deploy.bench.environment import environment
from clca_deploy.bench.latency import measure_interleaved
from clca_deploy.bench.run import BenchConfig, run_bench
from clca_deploy.calibration import CalibrationConfig, quantize_int8
from clca_deploy.export import ExportConfig, export_onnx
from clca_deploy.export.verify import synthetic_images
from clca_deploy.runtime import RuntimeOptions, open_backend

from export_latency import SETTINGS, write_checkpoint

# name -> (file kind, runtime, OpenVINO inference precision)
VARIANTS = {
    "ort_fp32": ("fp32", "onnxruntime", None),
    "ov_fp32": ("fp32", "openvino", "f32"),
    "ov_bf16": ("fp32", "openvino", "bf16"),
    "ort_int8": ("int8", "onnxruntime", None),
    "ov_int8": ("int8", "openvino", "f32"),
    "ov_int8_bf16": ("int8", "openvino", "bf16"),
    "ov_nncf_int8": ("nncf", "openvino", "f32"),
    "ov_nncf_int8_bf16": ("nncf", "openvino", "bf16"),
}


def has_nncf() -> bool:
    import importlib.util

    return importlib.util.find_spec("nncf") is not None


def nncf_quantize(fp32: Path, data: Path, output: Path, num_images: int) -> Path:
    """OpenVINO's own INT8: NNCF post-training quantization of the FP32 file, saved as OpenVINO IR."""
    import nncf
    import openvino as ov

    from clca_deploy.data import PreprocessConfig, iter_batches, open_dataset
    from clca_deploy.metadata import read_onnx_metadata

    if output.exists():
        return output
    preprocess = PreprocessConfig.from_dict(read_onnx_metadata(fp32).preprocess)
    images = [b.images for b in iter_batches(open_dataset(data), preprocess, 1, num_images, False)]
    model = ov.Core().read_model(str(fp32))
    quantized = nncf.quantize(
        model, nncf.Dataset(images), model_type=nncf.ModelType.TRANSFORMER, subset_size=len(images)
    )
    ov.save_model(quantized, str(output))
    return output


def prepare(checkpoint: Path, folder: Path, keep: float | None, data: Path, num_images: int) -> dict[str, Path]:
    """FP32 export, our INT8 and (with nncf) NNCF's INT8 of one checkpoint; reused when present."""
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"keep{keep}" if keep is not None else "trained"
    fp32 = folder / f"{stem}.onnx"
    if not fp32.exists():
        export_onnx(checkpoint, fp32, ExportConfig(keep_rate=keep, verify_images=1), log=print)
    int8 = folder / f"{stem}.int8.onnx"
    if not int8.exists():
        quantize_int8(fp32, int8, CalibrationConfig(data=data, num_images=num_images, use_cache=False), log=print)
    files = {"fp32": fp32, "int8": int8}
    if has_nncf():
        files["nncf"] = nncf_quantize(fp32, data, folder / f"{stem}.nncf.xml", num_images)
    return files


def open_variant(files: dict[str, Path], name: str):
    kind, runtime, precision = VARIANTS[name]
    if runtime == "openvino" and kind == "nncf":
        # An IR file: opened with OpenVINO directly (the runtime reads .onnx; NNCF writes IR).
        return _IrRunner(files[kind], precision)
    return open_backend(files[kind], runtime, RuntimeOptions.from_values(inference_precision=precision or "f32"))


class _IrRunner:
    def __init__(self, path: Path, precision: str):
        import openvino as ov

        compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": precision,
                                                              "PERFORMANCE_HINT": "LATENCY"})
        self.request = compiled.create_infer_request()

    def __call__(self, batch):
        self.request.infer({0: batch})
        return self.request.get_output_tensor(0).data.copy()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.request = None


def speed_checkpoint(work: Path) -> Path:
    """The random-weight ViT-B/16 448 checkpoint the speed part exports, written once into ``work``."""
    path = work / "random_clip_b16_448.pth"
    if path.exists():
        return path
    work.mkdir(parents=True, exist_ok=True)
    return write_checkpoint(work)


def speed(args, work: Path) -> list[dict]:
    checkpoint = speed_checkpoint(work)
    rows = []
    for keep in args.keep:
        files = prepare(checkpoint, work, keep, args.data / "train", args.calibration_images)
        names = [n for n in VARIANTS if VARIANTS[n][0] in files]
        runners = {name: open_variant(files, name) for name in names}
        row = {"keep_rate": keep, "latency": {}}
        for size in args.batch_sizes:
            batch = synthetic_images(size, 448, seed=1)
            iters = args.iters if size == 1 else max(3, args.iters // 2)
            stats = measure_interleaved(runners, batch, args.warmup, iters)
            base = stats["ort_fp32"].p50_ms
            row["latency"][str(size)] = {
                name: {**s.to_dict(), "speedup_vs_ort_fp32": base / s.p50_ms} for name, s in stats.items()
            }
            print(f"keep {keep} batch {size}: " + ", ".join(f"{n} {s.p50_ms:.0f} ms x{base / s.p50_ms:.2f}" for n, s in stats.items()))
        for runner in runners.values():
            runner.__exit__(None, None, None)
        rows.append(row)
    return rows


def accuracy(args, work: Path) -> list[dict]:
    """Every variant of the trained model against its PyTorch reference, through bench's own code."""
    files = prepare(args.trained, work / "trained", None, args.data / "train", args.calibration_images)
    rows = []
    for precision in ("f32", "bf16"):
        config = BenchConfig(
            models=(files["fp32"], files["int8"]), data=args.data / "test", reference=args.trained,
            batch_sizes=(1,), warmup=0, iters=1, runtimes=("onnxruntime", "openvino") if precision == "f32" else ("openvino",),
            runtime_options=RuntimeOptions.from_values(inference_precision=precision), progress=False, power=False,
        )
        report = run_bench(config, log=lambda _: None)
        rows += [r.to_dict() for r in report.results if not (precision == "bf16" and r.is_reference)]
    if "nncf" in files:
        rows += [nncf_accuracy(files, args.trained, args.data / "test", precision) for precision in ("f32", "bf16")]
    return rows


def nncf_accuracy(files: dict[str, Path], checkpoint: Path, test: Path, precision: str) -> dict:
    """NNCF's IR is not a file the runtimes open, so its row is scored here with bench's own functions."""
    import numpy as np

    from clca_deploy.bench.accuracy import accuracy_against
    from clca_deploy.bench.labels import labels_for_model
    from clca_deploy.data import PreprocessConfig, iter_batches, open_dataset

    dataset = open_dataset(test)
    with open_backend(checkpoint) as reference:
        preprocess = PreprocessConfig.from_dict(reference.description.preprocess)
        batches = list(iter_batches(dataset, preprocess, 16, None, False))
        reference_logits = np.concatenate([reference(b.images) for b in batches])
        description = reference.description
    labels = labels_for_model(np.concatenate([b.labels for b in batches]), dataset.class_names,
                              description.class_names, description.num_classes)
    with _IrRunner(files["nncf"], precision) as runner:
        logits = np.concatenate([runner(b.images) for b in batches])
    accuracy = accuracy_against(logits, labels.labels, reference_logits)
    return {"label": f"openvino nncf-int8 ({precision}) ({files['nncf'].name})", "status": "ok",
            "inference_precision": precision, "accuracy": accuracy.to_dict()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="Leaves root with train/ and test/.")
    parser.add_argument("--trained", type=Path, help="A checkpoint trained on the leaves (accuracy part).")
    parser.add_argument("--keep", type=float, nargs="+", default=[1.0, 0.1])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--calibration-images", type=int, default=64)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--iters", type=int, default=6)
    parser.add_argument("--workdir", type=Path, default=Path("benchmarks/work/cpu_runtimes"))
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/cpu_runtimes.json"))
    args = parser.parse_args()

    report = {
        "benchmark": "cpu_runtimes", "version": 1,
        "what_was_timed": "host-to-host call on a preprocessed batch, p50; all variants alternate call by call",
        "settings": SETTINGS, "calibration_images": args.calibration_images, "nncf": has_nncf(),
        "variants": {name: dict(zip(("file", "runtime", "inference_precision"), v)) for name, v in VARIANTS.items()},
        "environment": environment(),
    }
    if args.trained is not None:
        report["accuracy"] = accuracy(args, args.workdir)
        for row in report["accuracy"]:
            acc = row["accuracy"] or {}
            print(f"{row['label']}: {row['status']} top-1 {acc.get('top1')} agree {acc.get('top1_agreement')} "
                  f"max|dlogit| {acc.get('max_abs_logit_error')}")
    if not args.skip_speed:
        report["speed"] = speed(args, args.workdir)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.out, report)
    print(json.dumps({"wrote": str(args.out)}))


if __name__ == "__main__":
    main()

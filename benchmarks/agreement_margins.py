"""Why INT8 agreement differs between image sets: the FP32 top-2 margins, and how far INT8 moves the logits.

For each trained model of `cpu_runtimes.py` (its work folder, its files), on the leaves' train, val and
test splits: the PyTorch reference's top-2 logit margin (percentiles), and for the INT8 variants our
runtimes open, the top-1 agreement, the median margin loss (how much the INT8 logits close the gap
between the FP32 top-1 class and the others) and the reference margins of the images whose top-1 flipped.

    python benchmarks/agreement_margins.py --data runs/leaves --trained clca.pth \\
        --out benchmarks/results/agreement_margins.json

With ``--fold DIR`` (repeated, the folds of `cpu_runtimes.py --fold`): every model of every fold on
its fold's test scans only, for every variant of `cpu_runtimes.py` whose file exists (the bf16 runs
and NNCF's IR included), and the flipped scans pooled over the folds per family and variant.

    python benchmarks/agreement_margins.py --fold folds/fold0 --fold folds/fold1 --fold folds/fold2 \\
        --workdir benchmarks/work/cpu_runtimes --out benchmarks/results/agreement_margins_folds.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from clca_deploy.artifacts import write_json
from clca_deploy.bench.environment import environment

from cpu_runtimes import VARIANTS, fold_checkpoints, made_files, open_variant

INT8_VARIANTS = ("ort_int8", "ort_searched", "ov_int8_openvino", "ov_searched_openvino")


def margins(logits: np.ndarray) -> np.ndarray:
    ordered = np.sort(logits, axis=1)
    return ordered[:, -1] - ordered[:, -2]


def margin_loss(reference: np.ndarray, logits: np.ndarray) -> np.ndarray:
    """Per image, the most any other class gained on the reference's top-1 class."""
    top = reference.argmax(axis=1)
    rows = np.arange(len(top))
    shift = logits - reference
    gained = shift - shift[rows, top][:, None]
    gained[rows, top] = -np.inf
    return gained.max(axis=1)


def split_images(checkpoint: Path, split: Path):
    from clca_deploy.data import PreprocessConfig, iter_batches, open_dataset
    from clca_deploy.runtime import open_backend

    with open_backend(checkpoint) as reference:
        preprocess = PreprocessConfig.from_dict(reference.description.preprocess)
        images = np.concatenate([b.images for b in iter_batches(open_dataset(split), preprocess, 16, None, False)])
        logits = np.concatenate([reference(images[i : i + 16]) for i in range(0, len(images), 16)])
    return images, logits.astype(np.float64)


def measure(checkpoint: Path, data: Path, work: Path, splits=("train", "val", "test"), variants=INT8_VARIANTS) -> dict:
    files = made_files(work, checkpoint.stem)
    result = {"checkpoint": str(checkpoint), "splits": {}}
    for split in splits:
        images, reference = split_images(checkpoint, data / split)
        row = {"images": len(images), "fp32_margin_percentiles": dict(zip(
            ("p1", "p5", "p50"), np.percentile(margins(reference), [1, 5, 50]).round(4).tolist())), "variants": {}}
        for name in variants:
            if VARIANTS[name][0] not in files:
                continue
            with open_variant(files, name) as runner:
                logits = np.concatenate([runner(images[i : i + 16]) for i in range(0, len(images), 16)]).astype(np.float64)
            flipped = logits.argmax(axis=1) != reference.argmax(axis=1)
            row["variants"][name] = {
                "top1_agreement": float((~flipped).mean() * 100),
                "median_margin_loss": float(np.median(margin_loss(reference, logits))),
                "flipped_fp32_margins": sorted(margins(reference)[flipped].round(4).tolist()),
            }
        result["splits"][split] = row
    return result


def measure_folds(folds: list[Path], work: Path) -> dict:
    """Every fold's models on its test scans, all variants; then per family and variant the flips pooled."""
    models, pooled = [], {}
    for fold in folds:
        for checkpoint in fold_checkpoints(fold):
            model = measure(checkpoint, fold / "leaves", work / "folds" / fold.name, ("test",), tuple(VARIANTS))
            models.append({**model, "fold": fold.name, "family": checkpoint.stem})
            test = model["splits"]["test"]
            for name, row in test["variants"].items():
                entry = pooled.setdefault(checkpoint.stem, {}).setdefault(name, {"images": 0, "flipped_fp32_margins": []})
                entry["images"] += test["images"]
                entry["flipped_fp32_margins"] = sorted(entry["flipped_fp32_margins"] + row["flipped_fp32_margins"])
    return {"models": models, "pooled": pooled}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="Leaves root with train/, val/ and test/.")
    parser.add_argument("--trained", type=Path, action="append", default=[])
    parser.add_argument("--fold", type=Path, action="append", default=[], help="A fold of cpu_runtimes.py --fold; repeat.")
    parser.add_argument("--workdir", type=Path, default=Path("benchmarks/work/cpu_runtimes/trained"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/agreement_margins.json"))
    args = parser.parse_args()
    report = {"benchmark": "agreement_margins", "version": 1, "environment": environment()}
    if args.fold:
        report.update(measure_folds(args.fold, args.workdir))
        print(json.dumps(report["pooled"], indent=1))
    else:
        if args.data is None or not args.trained:
            parser.error("--data and --trained, or --fold")
        report["models"] = [measure(path, args.data, args.workdir) for path in args.trained]
        print(json.dumps(report["models"], indent=1))
    write_json(args.out, report)


if __name__ == "__main__":
    main()

"""FP16 and INT8 accuracy of trained ILA and GLSim models on the real leaves, and how often GLSim's crop box moves.

For each checkpoint: export (FP32 ONNX, parity-checked), `to_fp16`, `quantize_int8` on the training
leaves; then every file runs on onnxruntime (CPU) over the test leaves. Reported per file: top-1,
top-1 agreement with the FP32 ONNX, max |dlogit|; for GLSim also the share of images whose crop box
(x0, x1, y0, y1) equals the FP32 file's, read from the graph's own box tensor (an extra output added
to an in-memory copy; the files on disk are unchanged).

    python benchmarks/fgir_precision.py --checkpoint ila.pth --checkpoint glsim.pth \
        --data ../shared/data/leaves --out benchmarks/results/fgir_precision.json
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from clca_deploy.artifacts import write_json
from clca_deploy.bench.environment import environment
from clca_deploy.calibration import CalibrationConfig, quantize_int8, to_fp16
from clca_deploy.calibration.held_out import crop_selection_tensor
from clca_deploy.data import PreprocessConfig, iter_batches, open_dataset
from clca_deploy.export import ExportConfig, export_onnx
from clca_deploy.metadata import read_onnx_metadata


def boxes_from_selection(indices: np.ndarray, img_size: int, patch: int = 16) -> np.ndarray:
    """[b, 4] boxes (x0, x1, y0, y1) by the official rule (glsim_golden/README.md), from the selected patches."""
    grid = img_size // patch
    rows, cols = indices // grid, indices % grid
    x0, y0 = rows.min(1) * patch, cols.min(1) * patch
    x1 = np.minimum(np.maximum(rows.max(1) * patch, x0 + patch), img_size)
    y1 = np.minimum(np.maximum(cols.max(1) * patch, y0 + patch), img_size)
    return np.stack([x0, x1, y0, y1], axis=1)


def _run(path: Path, images: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Logits, and crop boxes where the graph has a crop step, batch by batch on onnxruntime CPU."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(path))
    selection = crop_selection_tensor(model)
    if selection is not None:
        model.graph.output.append(onnx.helper.make_tensor_value_info(selection, onnx.TensorProto.INT64, None))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    outputs = [session.run(None, {"images": images[s : s + 16]}) for s in range(0, len(images), 16)]
    logits = np.concatenate([out[0] for out in outputs])
    if selection is None:
        return logits, None
    return logits, boxes_from_selection(np.concatenate([out[1] for out in outputs]), images.shape[-1])


def _rows(files: dict[str, Path], images: np.ndarray, labels: np.ndarray) -> dict[str, dict]:
    reference_logits, reference_boxes = _run(files["fp32"], images)
    rows = {}
    for precision, path in files.items():
        logits, boxes = (reference_logits, reference_boxes) if precision == "fp32" else _run(path, images)
        row = {
            "top1": float((logits.argmax(1) == labels).mean() * 100),
            "agreement_with_fp32": float((logits.argmax(1) == reference_logits.argmax(1)).mean() * 100),
            "max_abs_dlogit_vs_fp32": float(np.abs(logits - reference_logits).max()),
        }
        if boxes is not None:
            same = (boxes == reference_boxes).all(axis=1)
            row["crop_box_equal_to_fp32"] = float(same.mean() * 100)
            row["crop_box_max_abs_px"] = int(np.abs(boxes - reference_boxes).max())
        rows[precision] = row
    return rows


def measure(checkpoint: Path, data: Path, work: Path, calibration_images: int) -> dict:
    fp32 = work / f"{checkpoint.stem}.onnx"
    export = export_onnx(checkpoint, fp32, ExportConfig(data=data / "test"), log=lambda _: None)
    fp16 = Path(to_fp16(fp32, work / f"{checkpoint.stem}.fp16.onnx", log=lambda _: None).path)
    calibration = CalibrationConfig(data=data / "train", num_images=calibration_images)
    int8 = Path(quantize_int8(fp32, work / f"{checkpoint.stem}.int8.onnx", calibration, log=lambda _: None).path)
    info = read_onnx_metadata(fp32)
    batches = list(iter_batches(open_dataset(data / "test"), PreprocessConfig.from_dict(info.preprocess), 32))
    images = np.concatenate([b.images for b in batches])
    labels = np.concatenate([b.labels for b in batches])
    return {
        "checkpoint": str(checkpoint), "family": info.family, "model": info.model, "img_size": info.img_size,
        "test_images": len(images), "calibration_images": calibration_images,
        "export_parity_max_abs": export.parity.max_abs_error,
        "precisions": _rows({"fp32": fp32, "fp16": fp16, "int8": int8}, images, labels),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, action="append", required=True)
    parser.add_argument("--data", type=Path, required=True, help="A root with train/ and test/ ImageFolder splits.")
    parser.add_argument("--calibration-images", type=int, default=256)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/fgir_precision.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        models = [measure(path, args.data, Path(tmp), args.calibration_images) for path in args.checkpoint]
    write_json(args.out, {"models": models, "environment": environment()})
    for model in models:
        for precision, row in model["precisions"].items():
            print(model["family"], precision, row)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

"""One prepared GPU check: TensorRT engines built, compared and timed on a real NVIDIA GPU, into one JSON file.

On a machine with a GPU (under 8 minutes on a datacenter GPU; longer on a Jetson):
1. the `trt`-marked tests (real TensorRT, real GPU);
2. FP32 / FP16 / INT8 engines from a shared golden fixture and from a freshly trained tiny model,
   each engine's logits compared with onnxruntime on the ONNX file it was built from;
3. latency at batch 1 and 8 of TensorRT (each precision) against onnxruntime CUDA and PyTorch eager
   on the GPU, calls interleaved; board power and energy per image where a sensor is readable.
Every step keeps a status and a reason; the exit code is 1 if any step failed. Without a GPU it
exits with code 2 at once, saying so in one line.

    python benchmarks/gpu_check.py --out benchmarks/results/gpu_check.json [--shared ../shared]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import numpy as np

REPO = Path(__file__).resolve().parents[1]
FIXTURE = "evit_tiny_clca_k0.1_224"  # a golden checkpoint with the official code's logits beside it
PRECISIONS = ("fp32", "fp16", "int8")


def _step(steps: list[dict], name: str, run: Callable[[], dict[str, Any]]) -> dict[str, Any] | None:
    """Run one step, recording ok/failed with its seconds; a failure never stops the check."""
    started = time.perf_counter()
    try:
        details = run()
        recorded = json.loads(json.dumps(details, default=str))  # paths as text
        steps.append({"name": name, "status": "ok", "seconds": round(time.perf_counter() - started, 1), **recorded})
        print(f"[ok]     {name}", flush=True)
        return details
    except Exception as exc:  # record and go on: one run of this script should say as much as it can
        reason = f"{type(exc).__name__}: {exc}"
        steps.append({"name": name, "status": "failed", "seconds": round(time.perf_counter() - started, 1),
                      "reason": reason, "traceback": traceback.format_exc(limit=8)})
        print(f"[failed] {name}: {reason}", flush=True)
        return None


def _trt_tests() -> dict[str, Any]:
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "trt", "tests/tensorrt"]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    summary = (done.stdout.strip().splitlines() or ["no output"])[-1]
    if done.returncode != 0:
        raise RuntimeError(f"pytest -m trt exited {done.returncode}: {summary}\n{done.stdout[-3000:]}")
    return {"summary": summary}


def _leaf_images(data: Path, preprocess: dict, count: int) -> np.ndarray:
    from clca_deploy.data import PreprocessConfig, iter_batches, open_dataset

    batches = iter_batches(open_dataset(data), PreprocessConfig.from_dict(preprocess), 32, limit=count)
    return np.concatenate([batch.images for batch in batches])


def _onnx_files(checkpoint: Path, calibration_data: Path, workdir: Path) -> dict[str, Path]:
    """FP32 export, FP16 conversion and Q/DQ INT8 calibration of one checkpoint."""
    from clca_deploy.calibration import CalibrationConfig, quantize_int8, to_fp16
    from clca_deploy.export import ExportConfig, export_onnx

    quiet = lambda _: None  # noqa: E731
    fp32 = Path(export_onnx(checkpoint, workdir / "model.onnx", ExportConfig(), log=quiet).path)
    fp16 = Path(to_fp16(fp32, workdir / "model.fp16.onnx", log=quiet).path)
    int8 = Path(quantize_int8(fp32, workdir / "model.int8.onnx", CalibrationConfig(data=calibration_data, num_images=64), log=quiet).path)
    return {"fp32": fp32, "fp16": fp16, "int8": int8}


def _engines(onnx: dict[str, Path]) -> dict[str, Path]:
    from clca_deploy.pipeline.build_trt import build_trt
    from clca_deploy.tensorrt.build import EngineConfig

    engines = {}
    for precision in PRECISIONS:
        result = build_trt(onnx[precision], None, EngineConfig(precision=precision), log=lambda _: None)
        engines[precision] = Path(result.path)
    return engines


def _compare(engines: dict[str, Path], onnx: dict[str, Path], data: Path) -> dict[str, Any]:
    """Each engine against onnxruntime (CPU) on the ONNX file it was built from, and against FP32."""
    from clca_deploy.runtime import open_backend

    rows = {}
    with open_backend(onnx["fp32"]) as reference:
        images = _leaf_images(data, reference.description.preprocess, 64)
        fp32_logits = reference(images)
    for precision, engine_path in engines.items():
        with open_backend(onnx[precision]) as source, open_backend(engine_path) as engine:
            source_logits, engine_logits = source(images), engine(images)
        rows[precision] = {
            "images": len(images),
            "max_abs_vs_same_onnx": float(np.abs(engine_logits - source_logits).max()),
            "top1_agreement_vs_same_onnx": float((engine_logits.argmax(1) == source_logits.argmax(1)).mean()),
            "max_abs_vs_fp32_onnx": float(np.abs(engine_logits - fp32_logits).max()),
            "top1_agreement_vs_fp32_onnx": float((engine_logits.argmax(1) == fp32_logits.argmax(1)).mean()),
        }
    return {"comparison": rows}


def _latency(checkpoint: Path, engines: dict[str, Path], onnx_fp32: Path, data: Path) -> dict[str, Any]:
    """TensorRT (each precision) vs onnxruntime CUDA vs PyTorch eager on the GPU, calls interleaved."""
    from contextlib import ExitStack

    from clca_deploy.bench.latency import measure_interleaved
    from clca_deploy.runtime import open_backend

    with ExitStack() as stack:
        runs, notes = {}, []
        for precision, path in engines.items():
            runs[f"tensorrt {precision}"] = stack.enter_context(open_backend(path))
        try:
            runs["onnxruntime cuda fp32"] = stack.enter_context(open_backend(onnx_fp32, provider="cuda"))
        except Exception as exc:
            notes.append(f"onnxruntime CUDA not timed: {exc}")
        try:
            runs["torch eager cuda fp32"] = stack.enter_context(open_backend(checkpoint, "torch", device="cuda"))
        except Exception as exc:
            notes.append(f"PyTorch eager on the GPU not timed: {exc}")
        images = _leaf_images(data, runs["tensorrt fp32"].description.preprocess, 8)
        table = {}
        for size in (1, 8):
            batch = np.ascontiguousarray(np.resize(images, (size, *images.shape[1:])))
            stats = measure_interleaved(runs, batch, warmup=10, iters=50)
            table[size] = {name: {"p50_ms": s.p50_ms, "p90_ms": s.p90_ms, "images_per_s": s.images_per_second}
                           for name, s in stats.items()}
        power = _power(runs["tensorrt int8"], images)
    return {"latency": table, "power": power, "notes": notes}


def _power(backend, images: np.ndarray) -> dict[str, Any]:
    """Board power and energy per image of the INT8 engine at batch 8, through bench's own harness."""
    from clca_deploy.bench.latency import measure_latency
    from clca_deploy.bench.power.picker import power_sampler_for

    sampler, reason = power_sampler_for(backend)
    batch = np.ascontiguousarray(np.resize(images, (8, *images.shape[1:])))
    # 300 calls: long enough for NVML's one-second power average and tegrastats' 50 ms readings.
    stats = measure_latency(backend, batch, warmup=10, iters=300, power_sampler=sampler, power_reason=reason).to_dict()
    return {key: value for key, value in stats.items() if key != "samples_ms"}


def _train_tiny(data: Path, workdir: Path) -> Path:
    from clca_deploy.train import TrainConfig, train

    checkpoint = workdir / "tiny.pth"
    train(data / "train", checkpoint, TrainConfig(img_size=112, epochs=3), test=data / "test", log=lambda _: None)
    return checkpoint


def _model_steps(steps: list[dict], label: str, checkpoint: Path, data: Path, workdir: Path) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    onnx = _step(steps, f"{label}: export, FP16, INT8 ONNX", lambda: {"onnx": _onnx_files(checkpoint, data / "train", workdir)})
    if onnx is None:
        return
    engines = _step(steps, f"{label}: FP32/FP16/INT8 engines", lambda: {"engines": _engines(onnx["onnx"])})
    if engines is None:
        return
    _step(steps, f"{label}: engines vs onnxruntime", lambda: _compare(engines["engines"], onnx["onnx"], data / "test"))
    _step(steps, f"{label}: latency and power", lambda: _latency(checkpoint, engines["engines"], onnx["onnx"]["fp32"], data / "test"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="The JSON file to write.")
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared", help="The shared fixtures and leaves.")
    parser.add_argument("--device", type=int, default=0, help="CUDA device index.")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(REPO))
    from clca_deploy.artifacts import check_output_path, write_json
    from clca_deploy.errors import ClcaDeployError
    from clca_deploy.system.gpu import gpu_info, gpu_unavailable_reason

    reason = gpu_unavailable_reason(args.device)
    if reason:
        print(f"gpu_check: needs an NVIDIA GPU, and {reason}.", file=sys.stderr)
        return 2
    try:
        out = check_output_path(args.out)
    except ClcaDeployError as exc:
        print(f"gpu_check: {exc}", file=sys.stderr)
        return 2
    return _run_checks(args, out, gpu_info(args.device), write_json)


def _run_checks(args, out: Path, gpu, write_json) -> int:
    from clca_deploy.bench.environment import environment

    steps: list[dict] = []
    leaves = args.shared / "data" / "leaves"
    fixture = args.shared / "fixtures" / "clca_golden" / f"{FIXTURE}.pth"
    _step(steps, "pytest -m trt", _trt_tests)
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        work = Path(tmp)
        if not leaves.is_dir():
            from clca_deploy.data.synthetic import SyntheticLeafConfig, write_synthetic_dataset

            write_synthetic_dataset(work / "leaves", SyntheticLeafConfig(image_size=112))
            leaves = work / "leaves"
        if fixture.is_file():
            _model_steps(steps, f"fixture {FIXTURE}", fixture, leaves, work / "fixture")
        else:
            steps.append({"name": "fixture", "status": "skipped", "reason": f"{fixture} not found (pass --shared)"})
        trained = _step(steps, "train a tiny model (3 epochs, 112 px)", lambda: {"checkpoint": _train_tiny(leaves, work)})
        if trained is not None:
            _model_steps(steps, "trained tiny model", trained["checkpoint"], leaves, work / "trained")
    report = {"format": "clca_deploy.gpu_check/1", "gpu": gpu.to_dict(), "environment": environment(), "steps": steps}
    write_json(out, report)
    failed = [step["name"] for step in steps if step["status"] == "failed"]
    print(f"wrote {out}: {len(steps) - len(failed)} of {len(steps)} steps ok" + (f"; failed: {failed}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""The TensorRT steps: the `trt` tests, and for a freshly trained tiny model and the golden fixture their
FP32 / FP16 / INT8 ONNX files, an engine per precision on GPU N, each engine against onnxruntime on the file
it was built from, and latency with power of TensorRT against onnxruntime-gpu and PyTorch on GPU N."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from benchmarks.gpu_check.outcome import Skip, StepError, one_line
from benchmarks.gpu_check.work import Work, agreement, measure, open_ort_gpu, row, skipped_row

REPO = Path(__file__).resolve().parents[3]
PRECISIONS = ("fp32", "fp16", "int8")
TINY, FIXTURE = "tiny model", "golden fixture"
TRAIN = "tiny model: train"
quiet = lambda _: None  # noqa: E731


def _folder(work: Work, label: str) -> Path:
    folder = work.folder / label.replace(" ", "_")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _checkpoint(work: Work, label: str) -> Path:
    return Path(work.product(TRAIN) if label == TINY else work.machine.fixture)


def _torch_on_gpu(work: Work) -> bool:
    return work.settings.torch_device is not None or work.machine.torch_cuda_reason is None


def train_tiny(work: Work) -> dict[str, Any]:
    """A few epochs of the demo's ViT-Tiny on the leaf images, on GPU N where PyTorch can use it."""
    import torch

    from clca_deploy.train import TrainConfig, train

    leaves, settings = Path(work.product("leaves")), work.settings
    on_gpu = _torch_on_gpu(work) and work.torch_device.startswith("cuda")
    config = TrainConfig(img_size=settings.tiny_img_size, epochs=settings.tiny_epochs, evaluations=1,
                         device="cuda" if on_gpu else "cpu")
    output = _folder(work, TINY) / "tiny.pth"
    # TrainConfig names no GPU index: "cuda" is the current device, made GPU N for the run.
    with torch.cuda.device(work.device) if on_gpu else contextlib.nullcontext():
        result = train(leaves / "train", output, config, test=leaves / "test", log=quiet, progress=False)
    work.products[TRAIN] = output
    return {"checkpoint": output, "device": f"cuda:{work.device}" if on_gpu else "cpu", "seconds": result.seconds,
            "epochs": result.epochs_run, "test_top1": result.test_top1, "precision": result.precision}


def onnx_files(work: Work, label: str) -> dict[str, Any]:
    """FP32 export, FP16 conversion and Q/DQ INT8 calibration (on the leaf images) of one checkpoint."""
    from clca_deploy.calibration import CalibrationConfig, quantize_int8, to_fp16
    from clca_deploy.export import ExportConfig, export_onnx

    folder, train = _folder(work, label), Path(work.product("leaves")) / "train"
    fp32 = Path(export_onnx(_checkpoint(work, label), folder / "model.onnx", ExportConfig(), log=quiet).path)
    fp16 = Path(to_fp16(fp32, folder / "model.fp16.onnx", log=quiet).path)
    calibration = CalibrationConfig(data=train, num_images=work.settings.calibration_images, use_cache=False)
    int8 = Path(quantize_int8(fp32, folder / "model.int8.onnx", calibration, log=quiet).path)
    work.products[(label, "onnx")] = {"fp32": fp32, "fp16": fp16, "int8": int8}
    return {"onnx": work.products[(label, "onnx")]}


def engine(work: Work, label: str, precision: str) -> dict[str, Any]:
    """`build-trt` of the ``precision`` ONNX file on GPU N (a timing cache shared by the model's builds)."""
    from clca_deploy.pipeline.build_trt import build_trt
    from clca_deploy.tensorrt.build import EngineConfig

    onnx = work.product((label, "onnx"))[precision]
    config = EngineConfig(precision=precision, device=work.device, timing_cache=_folder(work, label) / "timing.cache")
    result = build_trt(onnx, None, config, log=quiet)
    work.products.setdefault((label, "engines"), {})[precision] = Path(result.path)
    return result.to_dict()


def _engines(work: Work, label: str) -> dict[str, Path]:
    engines = work.products.get((label, "engines"))
    if not engines:
        raise Skip("no engine of this model was built")
    return engines


def compare(work: Work, label: str) -> dict[str, Any]:
    """Each engine against onnxruntime (CPU) on the ONNX file it was built from, and against the FP32 file."""
    from clca_deploy.runtime import infer, open_backend

    engines, onnx = _engines(work, label), work.product((label, "onnx"))
    with open_backend(onnx["fp32"], "onnxruntime", provider="cpu") as fp32:
        images = work.images(fp32.description.preprocess, 64)
        fp32_logits = infer(fp32, images)
    rows = {}
    for precision, path in engines.items():
        with open_backend(onnx[precision], "onnxruntime", provider="cpu") as source:
            source_logits = infer(source, images)
        with open_backend(path, device=work.device) as built:
            engine_logits = infer(built, images)
        rows[precision] = {"vs_same_onnx": agreement(engine_logits, source_logits, f"onnxruntime CPU {precision}"),
                           "vs_fp32_onnx": agreement(engine_logits, fp32_logits, "onnxruntime CPU fp32")}
    # An FP32 engine that disagrees with its own ONNX file is a build or runtime bug, not a precision cost.
    fp32_agreement = rows["fp32"]["vs_same_onnx"]["top1_agreement"] if "fp32" in rows else 100.0
    if fp32_agreement < 95.0:
        raise StepError(f"the FP32 engine agrees with its ONNX file on only {fp32_agreement:.0f}% of the images",
                        {"comparison": rows})
    return {"comparison": rows}


def _open_ort_gpu(work: Work, label: str, stack: ExitStack) -> tuple[Any, dict[str, Any] | None]:
    """(onnxruntime on GPU N, None), or (None, the row saying why not: skipped, or failed when it fell back)."""
    name = f"onnxruntime cuda:{work.device} fp32 ({label})"
    if work.machine.ort_cuda_reason:
        return None, skipped_row(name, work.machine.ort_cuda_reason)
    try:
        return stack.enter_context(open_ort_gpu(work.product((label, "onnx"))["fp32"], work.device)), None
    except Skip as exc:
        return None, skipped_row(name, str(exc))
    except Exception as exc:  # a CPU fallback is a failed row, never a CPU timing; the TensorRT rows still count
        return None, {"label": name, "status": "failed", "reason": one_line(exc)}


def _runtimes(work: Work, label: str, stack: ExitStack) -> tuple[dict[str, tuple[Any, str]], list[dict[str, Any]]]:
    """{row label: (backend, precision)} for TensorRT at each precision, onnxruntime-gpu and PyTorch on GPU N,
    and the rows of those left out."""
    from clca_deploy.runtime import open_backend

    runs: dict[str, tuple[Any, str]] = {}
    for precision, path in _engines(work, label).items():
        backend = stack.enter_context(open_backend(path, device=work.device))
        runs[f"tensorrt cuda:{work.device} {precision} ({label})"] = (backend, precision)
    ort, left_out = _open_ort_gpu(work, label, stack)
    if ort is not None:
        runs[f"onnxruntime cuda:{work.device} fp32 ({label})"] = (ort, "fp32")
    rows = [left_out] if left_out else []
    name = f"torch {work.torch_device} fp32 ({label})"
    if _torch_on_gpu(work):
        checkpoint = _checkpoint(work, label)
        runs[name] = (stack.enter_context(open_backend(checkpoint, "torch", device=work.torch_device)), "fp32")
    else:
        rows.append(skipped_row(name, work.machine.torch_cuda_reason))
    return runs, rows


def latency(work: Work, label: str) -> dict[str, Any]:
    """Latency and power of each runtime on GPU N at each batch size, with agreement against onnxruntime CPU FP32."""
    from clca_deploy.runtime import infer, open_backend

    with ExitStack() as stack:
        runs, rows = _runtimes(work, label, stack)
        with open_backend(work.product((label, "onnx"))["fp32"], "onnxruntime", provider="cpu") as reference:
            images = work.images(reference.description.preprocess)
            expected = infer(reference, images)
        for name, (backend, precision) in runs.items():
            rows.append(row(name, runtime=backend.name, precision=precision,
                            agreement=agreement(infer(backend, images), expected, "onnxruntime CPU fp32"),
                            latency=measure(work, backend, images, on_gpu=True)))
    failed = next((entry for entry in rows if entry["status"] == "failed"), None)
    if failed:
        raise StepError(f"{failed['label']}: {failed['reason']}", {"rows": rows})
    return {"rows": rows}


# -- the `trt` tests ---------------------------------------------------------------------------------------


def junit_counts(text: str) -> dict[str, Any]:
    """Tests, failures, errors and skips in a pytest JUnit XML report, with the first few skip reasons."""
    root = ElementTree.fromstring(text)
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    keys = ("tests", "failures", "errors", "skipped")
    counts = {key: sum(int(suite.get(key, 0)) for suite in suites) for key in keys}
    reasons = {element.get("message", "") for element in root.iter("skipped")}
    problems = [(case.get("name", "?"), problem) for case in root.iter("testcase")
                for problem in (case.find("failure"), case.find("error")) if problem is not None]
    # The last line of a failure's text is its exception ("PluginValidationError: unknown hook ...").
    text = (problems[0][1].text or "") if problems else ""
    first = next((line for line in reversed(text.splitlines()) if line.strip()), None)
    counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    return {**counts, "skip_reasons": sorted(reasons)[:3], "failing": [name for name, _ in problems][:5],
            "first_failure": first or (problems[0][1].get("message") if problems else None)}


def _visible_devices(device: int) -> str:
    """CUDA_VISIBLE_DEVICES that makes GPU ``device`` (as this process numbers it) the tests' GPU 0."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible:
        entries = [entry.strip() for entry in visible.split(",") if entry.strip()]
        if device < len(entries):
            return entries[device]
    return str(device)


def run_pytest(command: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    """The seam tests replace: pytest in a child process (it must start CUDA afresh)."""
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def trt_tests(work: Work) -> dict[str, Any]:
    """`pytest -m trt tests/tensorrt` on GPU N; all of them skipped is "skipped", not "ok"."""
    junit = work.folder / "trt_tests.xml"
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "trt", "tests/tensorrt",
               f"--junitxml={junit}"]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": _visible_devices(work.device),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    timeout = max(30.0, min(work.settings.trt_tests_timeout_s, work.seconds_left()))
    try:
        done = run_pytest(command, env, timeout)
    except subprocess.TimeoutExpired:
        raise StepError(f"pytest -m trt did not finish in {timeout:.0f} s") from None
    tail = (done.stdout.strip().splitlines() or ["no output"])[-1]
    if not junit.is_file():
        raise StepError(f"pytest -m trt exited {done.returncode} without a report: {tail}",
                        {"output": done.stdout[-3000:]})
    counts = {**junit_counts(junit.read_text()), "summary": tail, "exit_code": done.returncode}
    if counts["failures"] or counts["errors"] or done.returncode not in (0, 5):
        first = f"; first failure: {counts['first_failure']}" if counts["first_failure"] else ""
        raise StepError(f"pytest -m trt: {tail}{first}", {**counts, "output": done.stdout[-3000:]})
    if counts["passed"] <= 0:
        reasons = "; ".join(counts["skip_reasons"]) or "no test was selected"
        raise Skip(f"all {counts['tests']} trt tests were skipped: {reasons}" if counts["tests"] else reasons)
    return counts

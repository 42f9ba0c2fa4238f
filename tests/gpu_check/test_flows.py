"""gpu_check end to end against fake machines: a GPU without TensorRT (the PyTorch and onnxruntime parts run
for real on a tiny ViT, the CPU standing in for GPU N), and a GPU with TensorRT where every step runs on the
fakes of tests/tensorrt/fakes on GPU 1 of two."""

from __future__ import annotations

import argparse
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from benchmarks.gpu_check import cli
from benchmarks.gpu_check.steps import trt
from tests.gpu_check.helpers import BARE_H100, FULL, GPU, TINY, TINY_VIT, by_name, fake_pytest, fake_sensor, junit, load
from tests.tensorrt import fakes


@pytest.fixture
def a_gpu(monkeypatch):
    """The driver says GPU N is there (the check refuses otherwise)."""
    monkeypatch.setattr("clca_deploy.system.gpu.gpu_unavailable_reason", lambda index=0: None)


def run_main(tmp_path, machine, *extra) -> tuple[int, dict]:
    code = cli.main(["--out", f"{tmp_path}/out/", *extra], probe=lambda device, shared: replace(machine, device=device),
                    settings=TINY)
    return code, load(tmp_path / "out" / "gpu_check.json")


def test_a_gpu_without_tensorrt_times_pytorch_and_onnxruntime_and_skips_tensorrt(tmp_path, monkeypatch, a_gpu, capsys):
    fakes.install(monkeypatch, bindings=("cuda-python",))  # only the CUDA binding; the machine has no TensorRT
    fake_sensor(monkeypatch)
    code, doc = run_main(tmp_path, BARE_H100)
    records = by_name(doc)
    assert code == 0 and doc["status"] == "finished", [(r["name"], r.get("reason")) for r in doc["steps"]]
    ran = [name for name, r in records.items() if r["status"] == "ok"]
    assert ran == ["doctor", "gpu and driver", "CUDA bindings", "NVML power", "leaf images", "ViT-B/16 448 checkpoint",
                   "torch GPU keep 0.1", "ONNX export keep 0.1", "onnxruntime CPU keep 0.1", "torch CPU keep 0.1"]
    skipped = {name: r["reason"] for name, r in records.items() if r["status"] == "skipped"}
    assert skipped.pop("onnxruntime GPU keep 0.1").endswith("onnxruntime-gpu is not installed")
    assert set(skipped.values()) == {"TensorRT cannot run here: TensorRT is not installed"} and len(skipped) == 14
    gpu_rows = records["torch GPU keep 0.1"]["result"]["rows"]
    assert [row["precision"] for row in gpu_rows] == ["fp32", "fp16 autocast"]
    fp32 = gpu_rows[0]
    assert fp32["agreement"]["top1_agreement"] == 100.0 and fp32["agreement"]["max_abs"] < 1e-4
    for size in ("1", "2"):  # power over the time-based window, energy per image beside it
        latency = fp32["latency"][size]
        assert latency["power_w"] == pytest.approx(50.0) and latency["energy_mj_per_image"] > 0
        assert latency["min_seconds"] == TINY.power_window_s and latency["timed_calls"] >= TINY.gpu_iters
    cpu = records["onnxruntime CPU keep 0.1"]["result"]["rows"][0]
    assert cpu["latency"]["1"]["power_w"] is None and "runs on the CPU" in cpu["latency"]["1"]["power_reason"]
    assert cpu["agreement"]["top1_agreement"] == 100.0
    printed = capsys.readouterr().out
    assert "torch cpu fp16 autocast keep 0.1" in printed and f"wrote {tmp_path}/out/gpu_check.json" in printed


def write_checkpoint(path: Path) -> Path:
    import torch

    from clca_deploy.model import ClcaConfig, ClcaModel

    config, _ = ClcaConfig.from_args(TINY_VIT)
    torch.manual_seed(1)
    torch.save({"model": ClcaModel(config).state_dict(), "args": argparse.Namespace(**TINY_VIT), "epoch": 0}, path)
    return path


def fake_model_steps(monkeypatch, checkpoint: Path) -> None:
    """Training and ONNX files made instantly: the tiny checkpoint, and ONNX files the fake engine computes exactly."""

    def train_tiny(work):
        work.products[trt.TRAIN] = Path(shutil.copy(checkpoint, work.folder / "tiny.pth"))
        return {"checkpoint": work.products[trt.TRAIN]}

    def onnx_files(work, label):
        folder = trt._folder(work, label)
        made = {p: fakes.tiny_onnx(folder / f"m.{p}.onnx", precision=p, img_size=32, num_classes=3) for p in trt.PRECISIONS}
        work.products[(label, "onnx")] = made
        return {"onnx": made}

    monkeypatch.setattr(trt, "train_tiny", train_tiny)
    monkeypatch.setattr(trt, "onnx_files", onnx_files)


def test_a_gpu_with_tensorrt_runs_every_step_on_gpu_1(tmp_path, monkeypatch, a_gpu):
    stack = fakes.install(monkeypatch, devices=(("FakeGPU", "8.7"), ("FakeGPU", "9.0")))
    fake_sensor(monkeypatch)
    pytest_run = fake_pytest(junit(12, skipped=2), summary="10 passed, 2 skipped in 31.0s")
    monkeypatch.setattr(trt, "run_pytest", pytest_run)
    fake_model_steps(monkeypatch, write_checkpoint(tmp_path / "fixture.pth"))
    devices = []
    allocate = stack.gpu.alloc
    monkeypatch.setattr(stack.gpu, "alloc", lambda nbytes: devices.append(stack.gpu.current()) or allocate(nbytes))
    machine = replace(FULL, gpu=GPU, fixture=str(tmp_path / "fixture.pth"), ort_providers=("CPUExecutionProvider",))

    code, doc = run_main(tmp_path, machine, "--device", "1")
    records = by_name(doc)
    assert code == 0, [(r["name"], r.get("reason")) for r in doc["steps"] if r["status"] != "ok"]
    not_ok = {name: r["status"] for name, r in records.items() if r["status"] != "ok"}
    assert not_ok == {"onnxruntime GPU keep 0.1": "skipped"}  # the one thing this machine lacks
    # Every GPU use was on GPU 1: builds, engine loads, CUDA allocations, the trt tests' child process.
    gpu_events = [event for event in stack.gpu.events if event[0] in ("build", "deserialize")]
    assert len([e for e in gpu_events if e[0] == "build"]) == 6 and {e[1] for e in gpu_events} == {1}
    assert devices and set(devices) == {1}
    assert stack.gpu.live() == {"device_allocations": 0, "pinned_buffers": 0, "streams": 0, "primary_context_refs": 0,
                                "pushed_contexts_this_thread": 0}
    bindings = records["CUDA bindings"]["result"]["bindings"]
    assert set(bindings) == {"pycuda", "cuda-python"} and {b["device"] for b in bindings.values()} == {1}
    assert pytest_run.calls[0]["env"]["CUDA_VISIBLE_DEVICES"] == "1"
    assert records["trt tests"]["result"]["passed"] == 10
    comparison = records["tiny model: engines vs onnxruntime"]["result"]["comparison"]
    assert {p: c["vs_same_onnx"]["top1_agreement"] for p, c in comparison.items()} == {"fp32": 100.0, "fp16": 100.0, "int8": 100.0}
    rows = {row["label"]: row for row in records["golden fixture: latency and power"]["result"]["rows"]}
    assert set(rows) == {"tensorrt cuda:1 fp32 (golden fixture)", "tensorrt cuda:1 fp16 (golden fixture)",
                         "tensorrt cuda:1 int8 (golden fixture)", "onnxruntime cuda:1 fp32 (golden fixture)",
                         "torch cpu fp32 (golden fixture)"}
    assert rows["onnxruntime cuda:1 fp32 (golden fixture)"]["status"] == "skipped"
    engine_b2 = rows["tensorrt cuda:1 int8 (golden fixture)"]["latency"]["2"]
    assert engine_b2["power_w"] == pytest.approx(50.0) and engine_b2["power_source"] == "fake meter"


def test_the_trt_tests_all_skipped_make_a_skipped_step(tmp_path, monkeypatch, a_gpu):
    fakes.install(monkeypatch)
    monkeypatch.setattr(trt, "run_pytest", fake_pytest(junit(7, skipped=7, reason="needs ../shared")))
    machine = replace(FULL, bindings=(), power_reason="no sensor", torch_reason="no torch", torch_cuda_reason="no torch",
                      ort_providers=("CPUExecutionProvider",))
    code, doc = run_main(tmp_path, machine)
    record = by_name(doc)["trt tests"]
    assert code == 0 and record["status"] == "skipped"
    assert record["reason"] == "all 7 trt tests were skipped: needs ../shared"


def test_main_refuses_a_missing_gpu_n_in_one_line_with_a_json(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("clca_deploy.system.gpu.gpu_unavailable_reason",
                        lambda index=0: f"there is no CUDA GPU {index}: this machine has 1 GPU (use 0..0)")
    probed = []
    code = cli.main(["--out", str(tmp_path / "r.json"), "--device", "3"], probe=lambda *a: probed.append(a), settings=TINY)
    err = capsys.readouterr().err
    assert code == 2 and not probed
    assert err == "gpu_check: needs an NVIDIA GPU, and there is no CUDA GPU 3: this machine has 1 GPU (use 0..0).\n"
    doc = load(tmp_path / "r.json")
    assert doc["status"] == "refused" and doc["device"] == 3 and "no CUDA GPU 3" in doc["reason"] and doc["steps"] == []


@pytest.mark.parametrize("argv, message", [
    (["--out", "x.json", "--device", "-1"], "gpu_check: --device must be a CUDA device index (0, 1, ...), got -1\n"),
    (["--out", "x.json", "--budget-s", "nan"], "gpu_check: --budget-s must be a positive number of seconds, got nan\n"),
    (["--out", "x.json", "--device", "one"], "gpu_check: argument --device: invalid int value: 'one'\n"),
    ([], "gpu_check: the following arguments are required: --out\n"),
])
def test_bad_options_are_one_line(tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    assert cli.main(argv, probe=lambda *a: pytest.fail("probed"), settings=TINY) == 2
    assert capsys.readouterr().err == message and list(tmp_path.iterdir()) == []

"""Fake machine profiles, tiny settings and a fake power sensor for the gpu_check tests."""

from __future__ import annotations

import json
import subprocess
from dataclasses import replace
from pathlib import Path

from benchmarks.gpu_check.machine import Machine
from benchmarks.gpu_check.plan import Settings
from clca_deploy.bench.power.meter import ThreadedPowerSampler

# The tests' ViT (tests/model/test_checkpoint.py's TINY): the CPU parts of the check run for real on it.
TINY_VIT = dict(model="evit_vit_tiny_patch16_224", input_size=32, num_classes=3, keep_rate=[0.5],
                reduction_loc=[3, 6, 9], clc=True, num_clr=1, clc_include_gap=True, clc_pool_cls=False,
                clc_pool_clr=False, clc_recover_at_last=True, ifa_head=True, ifa_dws_conv_groups=2)
# PyTorch's "GPU N" is the CPU here; power windows just over window.MIN_WINDOW_S so a figure comes out.
TINY = Settings(vit_args=TINY_VIT, keeps=(0.1,), batch_sizes=(1, 2), images=4, gpu_warmup=1, gpu_iters=2, cpu_iters=2,
                power_window_s=0.6, binding_bytes=4096, binding_repeats=2, matmul_size=128, synthetic_size=32,
                synthetic_per_class=(2, 2), torch_device="cpu", trt_tests_timeout_s=60)
GPU = {"index": 0, "name": "Fake H100", "compute_capability": "9.0", "total_memory_bytes": 80 << 30,
       "integrated": False, "driver_version": "13.0"}

NO_GPU = Machine(device=0, gpu=None, gpu_reason="no CUDA GPU on this machine (libcuda.so.1 not found: no NVIDIA driver)",
                 tensorrt_reason="no CUDA GPU on this machine", torch="2.14", torch_reason=None,
                 torch_cuda_reason="PyTorch 2.14 (a CPU build) sees no CUDA GPU", onnxruntime="1.30",
                 onnxruntime_reason=None, ort_providers=("CPUExecutionProvider",), pytest=True)
# machine (b): a bare lent H100 with PyTorch for CUDA, CPU onnxruntime, cuda-bindings, NVML; no TensorRT, no ../shared.
BARE_H100 = Machine(device=0, gpu=GPU, torch="2.11.0+cu130", torch_reason=None, torch_cuda_reason=None,
                    onnxruntime="1.30.0", onnxruntime_reason=None, ort_providers=("CPUExecutionProvider",),
                    tensorrt_reason="TensorRT is not installed", bindings=("cuda-python",), power_reason=None,
                    pytest=False, fixture=None, fixture_reason="../shared/... not found (pass --shared)")
# machine (a): a GPU server with everything, ../shared included.
FULL = replace(BARE_H100, tensorrt_reason=None, bindings=("pycuda", "cuda-python"), pytest=True,
               ort_providers=("CUDAExecutionProvider", "CPUExecutionProvider"), fixture="fixture.pth",
               fixture_reason=None)


class Watts(ThreadedPowerSampler):
    """A sensor that always reads 50 W (a real ThreadedPowerSampler, so windows are time-based)."""

    source = "fake meter"

    def _run(self, emit) -> None:
        while not self._stopping.is_set():
            emit(50.0)
            self._stopping.wait(0.01)


def fake_sensor(monkeypatch) -> None:
    monkeypatch.setattr("clca_deploy.bench.power.picker.pick_power_sampler", lambda device=0: (Watts(), None))


def junit(tests: int, failures: int = 0, skipped: int = 0, reason: str = "TensorRT is not installed") -> str:
    cases = "".join(f'<testcase name="t{i}"><skipped message="{reason}"/></testcase>' for i in range(skipped))
    cases += "".join(f'<testcase name="f{i}"><failure message="boom"/></testcase>' for i in range(failures))
    cases += "".join(f'<testcase name="p{i}"/>' for i in range(tests - skipped - failures))
    return (f'<testsuites><testsuite name="pytest" tests="{tests}" failures="{failures}" errors="0" '
            f'skipped="{skipped}">{cases}</testsuite></testsuites>')


def fake_pytest(text: str, code: int = 0, summary: str = "summary line"):
    """A ``run_pytest`` that writes ``text`` as the JUnit report and exits ``code``; records its calls."""
    calls = []

    def run(command, env, timeout):
        calls.append({"command": command, "env": env, "timeout": timeout})
        Path(command[-1].split("=", 1)[1]).write_text(text)
        return subprocess.CompletedProcess(command, code, f"{summary}\n", "")

    run.calls = calls
    return run


def load(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def by_name(doc: dict) -> dict[str, dict]:
    return {record["name"]: record for record in doc["steps"]}

"""Single gpu_check steps where they judge: the CUDA binding check, the trt tests' JUnit report, the
onnxruntime CUDA provider check, and the pytest child's GPU."""

from __future__ import annotations

import re
from dataclasses import replace
from types import SimpleNamespace

import pytest

from benchmarks.gpu_check.outcome import Skip, StepError
from benchmarks.gpu_check.steps import probes, trt
from benchmarks.gpu_check.work import Work, open_ort_gpu, ort_gpu_settings
from tests.conftest import REPO_ROOT
from tests.gpu_check.helpers import FULL, TINY, fake_pytest, junit
from tests.tensorrt import fakes


def test_cuda_bindings_on_gpu_1_copy_and_release_everything(tmp_path, monkeypatch):
    stack = fakes.install(monkeypatch, devices=(("A", "8.7"), ("B", "9.0")))
    result = probes.cuda_bindings(Work(replace(FULL, device=1), TINY, tmp_path))
    for name in ("pycuda", "cuda-python"):
        entry = result["bindings"][name]
        assert entry["status"] == "ok" and entry["device"] == 1 and entry["bytes"] == TINY.binding_bytes
        assert entry["round_trips"] == TINY.binding_repeats and entry["h2d_gb_per_s"] > 0
        assert entry["context_device"].startswith("not asked")  # the fakes have no cuCtxGetDevice
    assert stack.gpu.counts["alloc"] == stack.gpu.counts["free"] == 2 and stack.gpu.live()["primary_context_refs"] == 0


def test_a_binding_that_fails_keeps_the_others_result(tmp_path, monkeypatch):
    fakes.install(monkeypatch, devices=(("A", "8.7"),))
    with pytest.raises(StepError) as error:
        probes.cuda_bindings(Work(replace(FULL, device=1, bindings=("pycuda", "cuda-python")), TINY, tmp_path))
    rows = error.value.result["bindings"]
    assert {name: row["status"] for name, row in rows.items()} == {"pycuda": "failed", "cuda-python": "failed"}
    assert str(error.value).startswith("CUDA binding pycuda, cuda-python failed: ")


def test_a_context_on_another_gpu_fails(tmp_path, monkeypatch):
    fakes.install(monkeypatch, devices=(("A", "8.7"), ("B", "9.0")))
    monkeypatch.setattr(probes, "_context_device", lambda binding: 0)
    with pytest.raises(StepError, match="the context is on GPU 0, not GPU 1"):
        probes.cuda_bindings(Work(replace(FULL, device=1, bindings=("cuda-python",)), TINY, tmp_path))


@pytest.mark.parametrize("report, code, outcome", [
    (junit(9, skipped=2), 0, {"passed": 7, "skipped": 2}),
    (junit(9, failures=1, skipped=2), 1, StepError("pytest -m trt: the summary; first failure: boom")),
    (junit(4, skipped=4, reason="TensorRT is not installed"), 0, Skip("all 4 trt tests were skipped: TensorRT is not installed")),
    (junit(0), 5, Skip("no test was selected")),
])
def test_the_trt_tests_step_reads_the_junit_report(tmp_path, monkeypatch, report, code, outcome):
    monkeypatch.setattr(trt, "run_pytest", fake_pytest(report, code, summary="the summary"))
    work = Work(FULL, TINY, tmp_path)
    if isinstance(outcome, Exception):
        with pytest.raises(type(outcome)) as error:
            trt.trt_tests(work)
        assert str(error.value) == str(outcome)
    else:
        result = trt.trt_tests(work)
        assert {key: result[key] for key in outcome} == outcome and result["summary"] == "the summary"


def test_the_trt_tests_child_sees_gpu_n_as_its_gpu_0(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert trt._visible_devices(2) == "2"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,6")  # the parent's GPU 1 is the driver's GPU 6
    assert trt._visible_devices(1) == "6"


def test_the_trt_tests_step_runs_pytest_for_real(tmp_path, monkeypatch):
    """The step's own child process and report on this machine, where every trt test skips."""
    from clca_deploy.tensorrt.toolkit import tensorrt_unavailable_reason

    reason = tensorrt_unavailable_reason(0)
    if reason is None:
        pytest.skip("TensorRT runs here: the trt tests would take minutes")
    calls, real = [], trt.run_pytest
    monkeypatch.setattr(trt, "run_pytest", lambda command, env, timeout: calls.append(env) or real(command, env, timeout))
    with pytest.raises(Skip) as skipped:
        trt.trt_tests(Work(FULL, TINY, tmp_path))
    assert re.fullmatch(r"all \d+ trt tests were skipped: .+", str(skipped.value)), str(skipped.value)
    assert reason.split(" (")[0] in str(skipped.value)
    assert calls[0]["CUDA_VISIBLE_DEVICES"] == "0" and str(REPO_ROOT) in calls[0]["PYTHONPATH"]


class FakeSession:
    def __init__(self, providers):
        self.providers = providers

    def get_providers(self):
        return list(self.providers)


def fake_ort(providers, device_index):
    backend = SimpleNamespace(session=FakeSession(providers), providers=tuple(providers), device_index=device_index,
                              closed=False)
    backend.close = lambda: setattr(backend, "closed", True)
    return backend


def test_onnxruntime_on_the_gpu_is_verified_in_the_session(tmp_path, monkeypatch):
    opened = []

    def open_backend(path, runtime, **settings):
        opened.append(settings)
        return backend

    monkeypatch.setattr("clca_deploy.runtime.open_backend", open_backend)
    backend = fake_ort(["CPUExecutionProvider"], None)  # a session that fell back to the CPU
    with pytest.raises(StepError, match="runs on CPUExecutionProvider .device None., not CUDAExecutionProvider on GPU 0"):
        open_ort_gpu(tmp_path / "m.onnx", 0)
    assert backend.closed and opened == [{"provider": "cuda", "device": 0}]
    backend = fake_ort(["CUDAExecutionProvider", "CPUExecutionProvider"], 0)
    assert open_ort_gpu(tmp_path / "m.onnx", 0) is backend


def test_onnxruntime_runs_on_the_gpu_asked_for():
    assert ort_gpu_settings(1) == {"provider": "cuda", "device": 1}

"""onnxruntime's default provider (issue 26, item 3): the GPU where onnxruntime-gpu has CUDA and the GPU works,
the CPU otherwise, said in a log line; and the device in every bench label.

No GPU here: FakeOnnxRuntime (tests/runtime/test_onnxruntime_gpu.py) stands in for onnxruntime-gpu, and
``gpu_problem`` (the driver check) is replaced by what each scenario's machine would answer.
"""

from __future__ import annotations

import logging
import sys

import numpy as np
import pytest
from PIL import Image

from clca_deploy.errors import ClcaDeployError
from clca_deploy.logs import LOGGER_NAME
from clca_deploy.runtime import onnxruntime_backend, open_backend
from clca_deploy.runtime.onnxruntime_backend import OnnxRuntimeOptions, auto_choice
from clca_deploy.system import jetson
from tests.runtime.test_onnxruntime_gpu import ALL_GPU, CPU, FakeOnnxRuntime
from tests.tensorrt.fakes.model import tiny_onnx

CUDA = "CUDAExecutionProvider"


class Lines(logging.Handler):
    """The clca_deploy logger's records, whatever handlers and propagation the CLI left on it."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)

    def at(self, level: int) -> list[str]:
        return [record.getMessage() for record in self.records if record.levelno == level]


@pytest.fixture
def logged():
    logger, handler = logging.getLogger(LOGGER_NAME), Lines()
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


@pytest.fixture
def machine(monkeypatch):
    """Install onnxruntime-gpu (fake) on a machine whose GPU check answers ``problem`` (None: the GPU works)."""

    def install(problem=None, **settings) -> FakeOnnxRuntime:
        fake = FakeOnnxRuntime(**settings)
        monkeypatch.setitem(sys.modules, "onnxruntime", fake)
        monkeypatch.setitem(sys.modules, "onnxruntime.capi.build_and_package_info", fake.build_info)
        monkeypatch.setattr(onnxruntime_backend, "gpu_problem", lambda device: problem)
        return fake

    monkeypatch.setattr(jetson, "is_jetson", lambda: False)
    return install


@pytest.fixture
def model(tmp_path):
    return tiny_onnx(tmp_path / "m.onnx")


def test_the_default_is_auto_and_a_wrong_name_is_refused():
    assert OnnxRuntimeOptions().provider == "auto"
    with pytest.raises(ClcaDeployError, match="use auto, cpu, cuda or tensorrt"):
        OnnxRuntimeOptions(provider="gpu")


@pytest.mark.parametrize("available, problem, providers, why", [
    ([CPU], None, [CPU], "this onnxruntime has no CUDA provider"),
    (list(ALL_GPU), "no CUDA GPU on this machine", [CPU], "onnxruntime-gpu is installed but no CUDA GPU on this machine"),
    (list(ALL_GPU), None, [CUDA, CPU], "onnxruntime-gpu has CUDA and the GPU works"),  # never TensorRT unasked
])
def test_auto_choice(available, problem, providers, why):
    chosen, reason = auto_choice(available, problem)
    assert chosen == providers and reason.startswith(why)


def test_a_gpu_machine_runs_on_cuda_and_says_so(machine, model, logged):
    fake = machine(loads=(CUDA, CPU), preload_says=None)
    with open_backend(model, "onnxruntime") as backend:  # no --provider: the default
        assert backend.providers == (CUDA, CPU) and backend.device_label == "CUDA:0"
        assert backend(np.zeros((1, 3, 32, 32), np.float32)).shape == (1, 15)
    assert fake.asked == [[CUDA, CPU]]
    (line,) = logged.at(logging.INFO)
    assert line == "m.onnx: onnxruntime on CUDA:0 (--provider auto: onnxruntime-gpu has CUDA and the GPU works; " \
                   "--provider cpu for the CPU)"


def test_onnxruntime_gpu_without_a_working_gpu_stays_on_the_cpu_and_says_why(machine, model, logged, recwarn):
    fake = machine(problem="no CUDA GPU on this machine (libcuda.so.1 not found: no NVIDIA driver)")
    with open_backend(model, "onnxruntime") as backend:
        assert backend.providers == (CPU,) and backend.device_label == "CPU"
    assert fake.asked == [[CPU]] and fake.preloads == 0  # no CUDA session tried, no CUDA library loaded
    (line,) = logged.at(logging.INFO)
    assert line.startswith("m.onnx: onnxruntime on CPU (--provider auto: onnxruntime-gpu is installed but no CUDA GPU")
    assert not [w for w in recwarn if "runs on the CPU" in str(w.message)]  # a choice, not a failure


def test_a_cpu_build_says_it_only_at_debug_level(model, logged, monkeypatch):
    pytest.importorskip("onnxruntime")
    checked = []
    monkeypatch.setattr(onnxruntime_backend, "gpu_problem", lambda device: checked.append(device))
    monkeypatch.setattr("onnxruntime.get_available_providers", lambda: [CPU])  # this machine's build, made certain
    with open_backend(model, "onnxruntime") as backend:
        assert backend.device_label == "CPU"
    assert checked == []  # no CUDA provider: the GPU is not even looked for
    assert logged.at(logging.INFO) == []
    assert logged.at(logging.DEBUG) == ["m.onnx: onnxruntime on CPU (--provider auto: this onnxruntime has no CUDA "
                                        "provider; the GPU build is onnxruntime-gpu)"]


def test_a_gpu_that_fails_under_auto_warns_and_logs_no_choice(machine, model, logged):
    machine()  # CUDA listed, its libraries missing: the session gets the CPU only
    with pytest.warns(UserWarning, match="--provider auto runs on the CPU"):
        backend = open_backend(model, "onnxruntime")
    with backend:
        assert backend.device_label == "CPU"
    assert logged.at(logging.INFO) == []  # the warning says it; no second, contradicting line


def test_the_tensorrt_provider_is_named_in_the_label(machine, model):
    machine(loads=ALL_GPU, preload_says=None)
    with open_backend(model, "onnxruntime", provider="tensorrt", device=1) as backend:
        assert backend.device_label == "TensorRT-EP CUDA:1"


def test_bench_labels_name_the_device(machine, model, tmp_path):
    from clca_deploy.bench.run import BenchConfig, run_bench
    from clca_deploy.runtime.registry import RuntimeOptions

    machine(loads=(CUDA, CPU), preload_says=None)
    data = tmp_path / "data" / "a"
    data.mkdir(parents=True)
    Image.fromarray(np.full((40, 40, 3), 90, dtype=np.uint8)).save(data / "leaf.png")
    rows = []
    for provider in ("auto", "cpu"):
        config = BenchConfig(models=(model,), data=tmp_path / "data", batch_sizes=(1,), warmup=0, iters=1,
                             progress=False, power=False, runtime_options=RuntimeOptions.from_values(provider=provider))
        rows += run_bench(config, log=lambda _: None).results
    assert [row.label for row in rows] == ["onnxruntime CUDA:0 (m.onnx)", "onnxruntime CPU (m.onnx)"]
    assert [row.providers[0] for row in rows] == [CUDA, CPU]

"""onnxruntime-gpu that lists CUDA but runs on the CPU: refused by name, recorded under 'auto', a failed bench
row, and a doctor row that names the cause and the fix (issue 24, items 6 and 7).

No GPU here: a fake `onnxruntime` module stands in for onnxruntime-gpu. Its sessions run the model on the
real CPU onnxruntime and report only the providers the scenario lets "load", as a real GPU build does when
its CUDA or cuDNN libraries are missing (it lists CUDA in get_available_providers all the same).
"""

from __future__ import annotations

import importlib
import importlib.machinery
import json
import sys
import types

import numpy as np
import pytest
from PIL import Image

from clca_deploy.errors import ClcaDeployError
from clca_deploy.runtime import onnxruntime_backend, open_backend
from clca_deploy.runtime.onnxruntime_backend import ProviderFallbackError
from clca_deploy.system import checks, jetson
from clca_deploy.system.checks import Context
from clca_deploy.system.gpu import GpuInfo
from clca_deploy.system.jetson import JetsonInfo
from tests.tensorrt.fakes.model import tiny_onnx

REAL_ORT = pytest.importorskip("onnxruntime")
ALL_GPU = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
CPU = "CPUExecutionProvider"
# What onnxruntime-gpu's preload_dlls prints (1.27+, CUDA 13) when no CUDA 13 runtime is installed.
CUDART_MISSING = "Failed to load libcudart.so.13: libcudart.so.13: cannot open shared object file: No such file or directory"
H100_CUDA_12 = GpuInfo(0, "NVIDIA H100 80GB HBM3", "9.0", 85_520_809_984, False, "12.6")
H100_CUDA_13 = GpuInfo(0, "NVIDIA H100 80GB HBM3", "9.0", 85_520_809_984, False, "13.0")


class FakeSession:
    """An InferenceSession that got only the providers in ``loads`` of those it was asked for."""

    def __init__(self, fake, model, options=None, providers=None, **kwargs):
        # As onnxruntime takes them: a name, or (name, provider options) such as {"device_id": 1}.
        named = [provider if isinstance(provider, tuple) else (provider, {}) for provider in providers]
        fake.asked.append([name for name, _ in named])
        model = model if isinstance(model, bytes) else str(model)
        self._real = REAL_ORT.InferenceSession(model, options, providers=[CPU])
        self._providers = [name for name, _ in named if name in fake.loads]
        self._options = {name: {key: str(value) for key, value in chosen.items()} for name, chosen in named}
        self._run_error = fake.run_error
        self.fallback = True
        fake.sessions.append(self)

    def get_providers(self):
        return list(self._providers)

    def get_provider_options(self):
        return {provider: ({} if provider == CPU else {"device_id": "0", **self._options[provider]}) for provider in self._providers}

    def get_inputs(self):
        return self._real.get_inputs()

    def disable_fallback(self):
        self.fallback = False

    def run(self, names, feed):
        if self._run_error:
            raise RuntimeError(self._run_error)
        return self._real.run(names, feed)


class FakeOnnxRuntime(types.ModuleType):
    """onnxruntime-gpu 1.31.1 (CUDA 13.0) as `import onnxruntime` sees it; ``loads`` are the providers that load."""

    def __init__(self, loads=(CPU,), cuda_version="13.0", preload_says=CUDART_MISSING, run_error=None):
        super().__init__("onnxruntime")
        self.__spec__ = importlib.machinery.ModuleSpec("onnxruntime", None)  # find_spec() answers from sys.modules
        self.__version__ = "1.31.1"
        self.SessionOptions = REAL_ORT.SessionOptions
        self.loads, self.run_error, self.preload_says = set(loads), run_error, preload_says
        self.asked, self.sessions, self.preloads = [], [], 0
        self.build_info = types.ModuleType("onnxruntime.capi.build_and_package_info")
        self.build_info.package_name, self.build_info.__version__ = "onnxruntime-gpu", "1.31.1"
        if cuda_version is not None:
            self.build_info.cuda_version = cuda_version

    def get_available_providers(self):
        return list(ALL_GPU)  # a GPU build lists them whether or not their libraries load

    def preload_dlls(self):
        self.preloads += 1
        if self.preload_says:
            print(self.preload_says)  # onnxruntime prints its load failures on stdout

    def InferenceSession(self, model, options=None, providers=None, **kwargs):  # noqa: N802 (onnxruntime's name)
        return FakeSession(self, model, options, providers, **kwargs)


@pytest.fixture
def fake_ort(monkeypatch):
    """Install a FakeOnnxRuntime (configure it through the returned function) in place of onnxruntime."""

    def install(**settings) -> FakeOnnxRuntime:
        fake = FakeOnnxRuntime(**settings)
        monkeypatch.setitem(sys.modules, "onnxruntime", fake)
        monkeypatch.setitem(sys.modules, "onnxruntime.capi.build_and_package_info", fake.build_info)
        return fake

    monkeypatch.setattr(jetson, "is_jetson", lambda: False)
    # The machine the fake stands in for has a GPU that works (--provider auto asks for CUDA only then).
    monkeypatch.setattr(onnxruntime_backend, "gpu_problem", lambda device: None)
    return install


@pytest.fixture
def model(tmp_path):
    return tiny_onnx(tmp_path / "m.onnx")


def _images(folder, count=2):
    folder.mkdir()
    for index in range(count):
        Image.fromarray(np.full((40, 40, 3), 40 * index, dtype=np.uint8)).save(folder / f"leaf_{index}.png")
    return folder


def _cli(monkeypatch, capsys, argv) -> tuple[int, str, str]:
    from clca_deploy import cli

    monkeypatch.setattr(sys, "argv", ["clca-deploy", *argv])
    try:
        cli.main()
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_predict_cuda_that_fell_back_is_refused_in_one_line(fake_ort, model, tmp_path, monkeypatch, capsys):
    fake = fake_ort()
    code, out, err = _cli(monkeypatch, capsys, ["predict", str(model), str(_images(tmp_path / "leaves")), "--provider", "cuda"])
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("error: --provider cuda: ")
    # What was asked, what the session got, the likely cause (with onnxruntime's own words) and the install line.
    assert "offers CUDAExecutionProvider but the session got only CPUExecutionProvider" in err
    assert "CUDA 13.x and cuDNN 9 libraries are missing or of another major" in err
    assert "driver is older than CUDA 13" in err and "libcudart.so.13" in err
    assert 'pip install "onnxruntime-gpu[cuda,cudnn]==1.31.1"' in err
    assert fake.asked == [["CUDAExecutionProvider", CPU]] and fake.preloads == 1


def test_tensorrt_request_that_fell_back_names_tensorrt_libraries(fake_ort, model):
    fake_ort(loads=("CUDAExecutionProvider", CPU), preload_says=None)
    with pytest.raises(ProviderFallbackError) as error:
        open_backend(model, "onnxruntime", provider="tensorrt")
    message = str(error.value)
    assert message.startswith("--provider tensorrt: ") and "\n" not in message
    assert "offers TensorrtExecutionProvider but the session got only CPUExecutionProvider" in message
    assert "libnvinfer.so.10" in message


def test_auto_runs_on_what_it_got_and_records_it(fake_ort, model, tmp_path, monkeypatch, capsys):
    fake = fake_ort()
    argv = ["predict", str(model), str(_images(tmp_path / "leaves")), "--provider", "auto", "--json"]
    with pytest.warns(UserWarning) as warned:
        code, out, err = _cli(monkeypatch, capsys, argv)
    assert code == 0, err
    assert json.loads(out)["predictions"] and "libcudart" not in out  # onnxruntime's prints kept off --json
    (warning,) = [str(w.message) for w in warned if "runs on the CPU" in str(w.message)]
    assert warning.startswith("--provider auto runs on the CPU: ") and "libcudart.so.13" in warning
    assert fake.asked == [["CUDAExecutionProvider", CPU]]  # never the TensorRT provider unless named
    with pytest.warns(UserWarning, match="runs on the CPU"):
        backend = open_backend(model, "onnxruntime", provider="auto")
    with backend:
        assert backend.providers == (CPU,) and backend.device_index is None
        assert fake.sessions[-1].fallback is False  # no silent switch to the CPU later, in run()


def test_auto_and_cuda_that_load_are_kept_quietly(fake_ort, model, recwarn):
    fake_ort(loads=("CUDAExecutionProvider", CPU), preload_says=None)
    with open_backend(model, "onnxruntime", provider="auto") as backend:  # CUDA there: no warning
        assert backend.providers == ("CUDAExecutionProvider", CPU) and backend.device_index == 0
        logits = backend(np.zeros((2, 3, 32, 32), dtype=np.float32))
        assert logits.shape == (2, 15)
    with open_backend(model, "onnxruntime", provider="cuda") as backend:
        assert backend.providers == ("CUDAExecutionProvider", CPU)
    assert not [w for w in recwarn if "runs on the CPU" in str(w.message)]


def test_cpu_request_loads_no_cuda_libraries(fake_ort, model):
    fake = fake_ort()
    with open_backend(model, "onnxruntime", provider="cpu") as backend:
        assert backend.providers == (CPU,)
    assert fake.preloads == 0 and fake.asked == [[CPU]]


def test_bench_row_of_a_cuda_request_that_fell_back_is_failed(fake_ort, model, tmp_path):
    from clca_deploy.bench.run import BenchConfig, run_bench
    from clca_deploy.runtime.registry import RuntimeOptions

    fake_ort()
    data = tmp_path / "data"
    data.mkdir()
    _images(data / "class_a")
    config = BenchConfig(
        models=(model,), data=data, batch_sizes=(1,), warmup=0, iters=1, progress=False, power=False,
        runtime_options=RuntimeOptions.from_values(provider="cuda"),
    )
    (row,) = run_bench(config, log=lambda _: None).results
    assert row.status == "failed" and row.latency == {}
    assert "session got only CPUExecutionProvider" in row.reason and "onnxruntime-gpu[cuda,cudnn]" in row.reason


def _gpu_build(monkeypatch, version="1.31.1"):
    """pip reports onnxruntime-gpu ``version`` and no other onnxruntime (nor torch: doctor would import it)."""
    real_version = checks.dist_version
    hidden = (*onnxruntime_backend.DISTRIBUTIONS, "torch")
    monkeypatch.setattr(checks, "dist_version", lambda name: version if name == "onnxruntime-gpu" else (
        None if name in hidden else real_version(name)))


def test_doctor_table_shows_the_fallback_and_its_fix(fake_ort, monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)  # the table at its natural width (pytest-xdist's workers set 80)
    from clca_deploy.doctor.report import format_report, run_doctor

    _gpu_build(monkeypatch)
    fake_ort()
    table = format_report(run_doctor(Context(jetson=None, gpus=(H100_CUDA_13,), gpu_reason=None)))
    row = next(line for line in table.splitlines() if line.lstrip().startswith("error") and "onnxruntime" in line)
    assert "the CUDA provider does not load" in row and "libcudart.so.13" in row
    assert '-> pip install "onnxruntime-gpu[cuda,cudnn]==1.31.1"' in table


def test_doctor_says_the_cuda_provider_does_not_load(fake_ort, monkeypatch):
    _gpu_build(monkeypatch)
    fake = fake_ort()
    check = onnxruntime_backend.probe(Context(jetson=None, gpus=(H100_CUDA_13,), gpu_reason=None))
    assert check.status == "error"
    assert check.detail.startswith("onnxruntime-gpu 1.31.1; providers: Tensorrt, CUDA, CPU; the CUDA provider does not load")
    assert "fell back to CPUExecutionProvider" in check.detail and "libcudart.so.13" in check.detail
    assert check.fix == 'pip install "onnxruntime-gpu[cuda,cudnn]==1.31.1" (its CUDA 13 and cuDNN 9 libraries)'
    assert fake.asked == [["CUDAExecutionProvider", CPU]]  # a real session, not the provider list
    orin = JetsonInfo(model=None, l4t="36.4.3", jetpack="6.2", power_mode=None)
    on_jetson = onnxruntime_backend.probe(Context(jetson=orin, gpus=(H100_CUDA_13,), gpu_reason=None))
    assert (on_jetson.status, on_jetson.fix) == ("error", onnxruntime_backend.JETSON_HINT)  # no PyPI line there


def test_doctor_names_a_cuda_provider_that_loads_but_cannot_run(fake_ort, monkeypatch):
    _gpu_build(monkeypatch)
    fake_ort(loads=ALL_GPU, run_error="CUDA failure 209: no kernel image is available for execution on the device\nmore")
    check = onnxruntime_backend.probe(Context(jetson=None, gpus=(H100_CUDA_13,), gpu_reason=None))
    assert check.status == "error" and "a CUDA session cannot run: CUDA failure 209: no kernel image" in check.detail
    assert "\n" not in check.detail


@pytest.mark.parametrize("build_cuda", ["13.0", "12.8"])  # a driver newer than the build is fine
def test_doctor_ok_when_a_cuda_session_runs_on_the_gpu(fake_ort, monkeypatch, build_cuda):
    _gpu_build(monkeypatch)
    fake = fake_ort(loads=ALL_GPU, preload_says=None, cuda_version=build_cuda)
    check = onnxruntime_backend.probe(Context(jetson=None, gpus=(H100_CUDA_13,), gpu_reason=None))
    assert (check.status, check.fix) == ("ok", None)
    assert check.detail.endswith("; a CUDA session runs on GPU 0")
    assert fake.sessions[0].fallback is False  # its test run cannot quietly happen on the CPU


@pytest.mark.parametrize("on_jetson, fix", [
    (False, 'pip install "clca-deploy[gpu-cu12]" (onnxruntime-gpu built for CUDA 12), or a driver for CUDA 13 (r580 or newer)'),
    (True, onnxruntime_backend.JETSON_HINT),
])
def test_doctor_on_a_driver_older_than_the_builds_cuda(fake_ort, monkeypatch, on_jetson, fix):
    _gpu_build(monkeypatch)
    fake = fake_ort(loads=ALL_GPU)
    info = JetsonInfo(model=None, l4t="36.4.3", jetpack="6.2", power_mode=None) if on_jetson else None
    check = onnxruntime_backend.probe(Context(jetson=info, gpus=(H100_CUDA_12,), gpu_reason=None))
    assert check.status == "error"
    assert check.detail.endswith("built for CUDA 13.0, but the driver supports CUDA 12: the CUDA provider cannot start")
    assert check.fix == fix
    assert fake.asked == []  # the mismatch alone explains it: no session tried


def test_doctor_without_the_builds_cuda_version_still_tries_a_session(fake_ort, monkeypatch):
    """onnxruntime-gpu before 1.21 records no CUDA version: no driver comparison, the session still tells."""
    _gpu_build(monkeypatch, "1.20.1")
    fake = fake_ort(cuda_version=None)
    fake.__version__ = "1.20.1"
    check = onnxruntime_backend.probe(Context(jetson=None, gpus=(H100_CUDA_12,), gpu_reason=None))
    assert check.status == "error" and "the CUDA provider does not load" in check.detail
    assert check.fix == "put the CUDA and cuDNN libraries onnxruntime-gpu 1.20.1 was built for on LD_LIBRARY_PATH"


def test_doctor_without_a_gpu_tries_no_session(fake_ort, monkeypatch):
    _gpu_build(monkeypatch)
    fake = fake_ort()
    check = onnxruntime_backend.probe(Context(jetson=None, gpus=(), gpu_reason="no GPU"))
    assert check.status == "ok" and fake.asked == []


def test_build_cuda_version_reads_the_wheels_build_info(fake_ort):
    fake = fake_ort(cuda_version="12.8")
    assert onnxruntime_backend.build_cuda_version() == "12.8"
    fake.build_info.cuda_version = ""  # what a CPU build's validation code gives
    assert onnxruntime_backend.build_cuda_version() is None
    fake.build_info.cuda_version = "12.8\nrm -rf"  # not a version: not trusted
    assert onnxruntime_backend.build_cuda_version() is None


def test_the_fake_uses_onnxruntimes_real_names():
    """The names the fakes stand in for exist in the installed onnxruntime (a rename would fail here first)."""
    for name in ("get_available_providers", "InferenceSession", "SessionOptions", "preload_dlls", "__version__"):
        assert hasattr(REAL_ORT, name), name
    for name in ("get_providers", "get_provider_options", "get_inputs", "run", "disable_fallback"):
        assert callable(getattr(REAL_ORT.InferenceSession, name)), name
    assert importlib.import_module("onnxruntime.capi.build_and_package_info").package_name


def test_a_session_that_cannot_be_created_is_one_line_even_without_a_message(fake_ort, model, monkeypatch):
    from clca_deploy.errors import ClcaDeployError

    fake = fake_ort()

    def refuse(*args, **kwargs):
        raise RuntimeError("")  # onnxruntime's pybind errors are sometimes empty

    monkeypatch.setattr(fake, "InferenceSession", refuse)
    with pytest.raises(ClcaDeployError, match=r"^onnxruntime cannot load .*m\.onnx: RuntimeError$"):
        open_backend(model, "onnxruntime", provider="cuda")


def test_a_gpu_provider_that_fails_while_running_is_an_error_not_a_cpu_retry(fake_ort, model):
    fake_ort(loads=("CUDAExecutionProvider", CPU), preload_says=None, run_error="EPFail: CUDNN_STATUS_EXECUTION_FAILED\nat")
    with open_backend(model, "onnxruntime", provider="cuda") as backend:
        with pytest.raises(ProviderFallbackError, match=r"^onnxruntime's CUDAExecutionProvider failed while running: "
                                                        r"EPFail: CUDNN_STATUS_EXECUTION_FAILED$"):
            backend(np.zeros((1, 3, 32, 32), dtype=np.float32))


def test_the_cuda_provider_runs_on_the_device_asked_for(fake_ort, model):
    """--device reaches the CUDA provider's options, and device_index (power, serve's placement) follows it."""
    fake_ort(loads=("CUDAExecutionProvider", CPU), preload_says=None)
    with open_backend(model, "onnxruntime", provider="cuda", device=1) as backend:
        assert backend.device_index == 1
    with pytest.raises(ClcaDeployError, match="--device must be a CUDA device index"):
        open_backend(model, "onnxruntime", provider="cuda", device=-1)

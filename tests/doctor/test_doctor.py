"""`clca-deploy doctor`: rows and hints on a plain server, on a (recorded) Jetson, and when a probe breaks."""

from __future__ import annotations

import json
import sys
import types

import pytest
from typer.testing import CliRunner

from clca_deploy import extras
from clca_deploy.cli import app
from clca_deploy.doctor import probes
from clca_deploy.doctor import report as doctor
from clca_deploy.doctor.report import DoctorReport, format_report, run_doctor
from clca_deploy.runtime import onnxruntime_backend, openvino_backend, tensorrt_backend
from clca_deploy.system import checks, gpu, jetson
from clca_deploy.system.checks import Check, Context
from clca_deploy.system.gpu import GpuInfo
from clca_deploy.system.jetson import JetsonInfo
from tests.system.test_gpu import ORIN, FakeDriver
from tests.system.test_jetson import NVPMODEL_CONF, RELEASE_36_4_3

runner = CliRunner()

TRT_SERVER_HINT = 'pip install "clca-deploy[trt]"'
TRT_JETSON_HINT = (
    "use JetPack's TensorRT: create the venv with --system-site-packages "
    "(sudo apt install nvidia-jetpack if missing); see docs/jetson.md"
)
CUDA_JETSON_HINT = 'pip install "cuda-bindings>=12.8,<13" (or pycuda built with nvcc)'
NO_GPU = "no CUDA GPU on this machine (libcuda.so.1 not found: no NVIDIA driver)"
H100 = GpuInfo(0, "NVIDIA H100 80GB HBM3", "9.0", 85_520_809_984, False, "12.6")


def rows(report: DoctorReport) -> dict[str, Check]:
    return {check.name: check for check in report.checks}


@pytest.fixture(autouse=True)
def isolated(monkeypatch):
    """No real nvidia-smi, and a fresh GPU cache, whatever machine runs the tests."""
    monkeypatch.setattr(gpu, "query_nvidia_smi", lambda timeout=2.0: None)
    gpu._probe.cache_clear()
    yield
    gpu._probe.cache_clear()


def pretend(monkeypatch, modules=(), versions=None, hide_torch=True):
    """Make exactly ``modules`` importable among the optional ones and pip report ``versions``."""
    versions = dict(versions or {})
    real_has_module, real_version = extras.has_module, checks.dist_version
    optional = ("tensorrt", "pycuda", "cuda.bindings", "cuda.cuda")
    monkeypatch.setattr(extras, "has_module", lambda name: name in modules if name in optional else real_has_module(name))

    def version(name):
        if name in versions:
            return versions[name]
        if hide_torch and name == "torch":  # keeps these tests from importing torch
            return None
        return None if name in ("tensorrt", "pycuda", "cuda-bindings", "cuda-python") else real_version(name)

    monkeypatch.setattr(checks, "dist_version", version)


def test_server_without_gpu_or_tensorrt(monkeypatch):
    pretend(monkeypatch)
    report = run_doctor(Context(jetson=None, gpus=(), gpu_reason=NO_GPU))
    found = rows(report)
    assert (found["TensorRT"].status, found["TensorRT"].fix) == ("missing", TRT_SERVER_HINT)
    assert (found["CUDA bindings"].status, found["CUDA bindings"].fix) == ("missing", TRT_SERVER_HINT)
    assert (found["GPU"].status, found["GPU"].detail) == ("missing", NO_GPU)
    assert (found["Jetson"].status, found["Jetson"].detail) == ("note", "not a Jetson")
    assert (found["torch"].status, found["torch"].fix) == ("missing", 'pip install "clca-deploy[export]"')
    assert found["Python"].status == "ok"
    data = json.loads(json.dumps(report.to_dict()))
    assert data["format"] == "clca_deploy.doctor/1"
    assert data["jetson"] is None and data["gpus"] == []


def test_jetson_from_recorded_files_gets_jetpack_hints(tmp_path, monkeypatch):
    for relative, content in (
        ("proc/device-tree/model", "NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super\x00"),
        ("etc/nv_tegra_release", RELEASE_36_4_3),
        ("var/lib/nvpmodel/status", "pmode:0002 fmode:quiet\n"),
        ("etc/nvpmodel.conf", NVPMODEL_CONF),
    ):
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text(content)
    monkeypatch.setattr(jetson, "ROOT", tmp_path)
    monkeypatch.setattr(gpu, "_load_driver", lambda: FakeDriver([ORIN]))
    monkeypatch.setattr(probes.platform, "python_version", lambda: "3.12.3")
    pretend(monkeypatch, versions={"numpy": "2.2.6"})

    report = run_doctor()
    found = rows(report)
    assert found["TensorRT"] == Check(
        "TensorRT", "missing",
        "not installed: needed for build-trt and .engine files; this JetPack ships TensorRT 10.3.0", TRT_JETSON_HINT,
    )
    assert (found["CUDA bindings"].status, found["CUDA bindings"].fix) == ("missing", CUDA_JETSON_HINT)
    assert found["GPU"] == Check("GPU", "ok", "Orin, compute 8.7, 7.4 GiB shared with the CPU, CUDA driver 12.6")
    assert found["Jetson"].detail == "NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super"
    assert found["JetPack"] == Check("JetPack", "ok", "JetPack 6.2 (L4T 36.4.3), ships TensorRT 10.3.0")
    assert found["power mode"] == Check("power mode", "ok", "MAXN_SUPER")
    assert found["Python"].status == "note" and "Python 3.10" in found["Python"].detail
    assert found["Python"].fix == "create the venv from the system Python: /usr/bin/python3 -m venv --system-site-packages .venv"
    assert found["numpy"].status == "note"
    assert report.to_dict()["jetson"]["jetpack"] == "6.2"


def test_jetpack_6_0_is_told_to_upgrade(monkeypatch):
    pretend(monkeypatch)
    info = JetsonInfo(model="NVIDIA Jetson AGX Orin Developer Kit", l4t="36.3.0", jetpack="6.0", power_mode=None)
    found = rows(run_doctor(Context(jetson=info, gpus=(), gpu_reason=NO_GPU)))
    assert found["JetPack"].status == "note"
    assert found["JetPack"].detail == (
        "JetPack 6.0 (L4T 36.3.0) ships TensorRT 8.6.2, older than build-trt needs"
    )
    assert found["JetPack"].fix == "upgrade to JetPack 6.1 or newer (TensorRT 10.3); see docs/jetson.md"
    assert found["power mode"].status == "note"


def test_python_310_on_jetpack_6_is_fine(monkeypatch):
    monkeypatch.setattr(probes.platform, "python_version", lambda: "3.10.12")
    info = JetsonInfo(model=None, l4t="36.4.3", jetpack="6.2", power_mode="MAXN")
    check = probes.probe_python(Context(jetson=info, gpus=(), gpu_reason=NO_GPU))
    assert check.status == "ok" and check.fix is None


def test_both_onnxruntime_distributions_are_flagged(monkeypatch):
    pretend(monkeypatch, versions={"onnxruntime": "1.20.1", "onnxruntime-gpu": "1.20.1"})
    check = onnxruntime_backend.probe(Context(jetson=None, gpus=(), gpu_reason=NO_GPU))
    assert check.status == "error"
    assert check.fix == (
        'pip uninstall -y onnxruntime onnxruntime-gpu, then install one: '
        'pip install "clca-deploy[cpu]" or "clca-deploy[gpu]"'
    )


def test_missing_onnxruntime_hint_follows_the_gpu(monkeypatch):
    pretend(monkeypatch, versions={"onnxruntime": None})
    monkeypatch.setattr(onnxruntime_backend, "DISTRIBUTIONS", ("onnxruntime",))
    assert onnxruntime_backend.probe(Context(None, (), NO_GPU)).fix == 'pip install "clca-deploy[cpu]"'
    # The H100's driver supports CUDA 12.6: the build for CUDA 12, not PyPI's default CUDA 13 one.
    assert onnxruntime_backend.probe(Context(None, (H100,), None)).fix == 'pip install "clca-deploy[gpu-cu12]"'


def test_cuda_bindings_13_on_a_cuda_12_driver(monkeypatch):
    pretend(monkeypatch, modules=("cuda.bindings",), versions={"cuda-bindings": "13.0.1"})
    check = tensorrt_backend.probe_cuda_bindings(Context(jetson=None, gpus=(H100,), gpu_reason=None))
    assert check.status == "error"
    assert check.fix == 'pip install "cuda-bindings>=12.8,<13"'
    pretend(monkeypatch, modules=("cuda.bindings", "pycuda"), versions={"cuda-bindings": "12.9.0", "pycuda": "2024.1"})
    check = tensorrt_backend.probe_cuda_bindings(Context(jetson=None, gpus=(H100,), gpu_reason=None))
    assert (check.status, check.detail) == ("ok", "pycuda 2024.1, cuda-bindings 12.9.0")


@pytest.mark.parametrize("summary, status", [("mode for TensorRT", "ok"), ("unsupported: too old", "error")])
def test_installed_tensorrt_reports_the_build_mode(monkeypatch, summary, status):
    pretend(monkeypatch, modules=("tensorrt",))
    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__="10.3.0.30"))
    monkeypatch.setattr(tensorrt_backend, "build_mode_summary", lambda version: f"{summary} {version}")
    check = tensorrt_backend.probe_tensorrt(Context(jetson=None, gpus=(H100,), gpu_reason=None))
    assert (check.status, check.detail) == (status, f"10.3.0.30: build-trt is {summary} (10, 3, 0)")


def test_tensorrt_that_does_not_import(monkeypatch):
    pretend(monkeypatch, modules=("tensorrt",))
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # makes `import tensorrt` raise ImportError
    check = tensorrt_backend.probe_tensorrt(Context(jetson=None, gpus=(), gpu_reason=NO_GPU))
    assert (check.status, check.fix) == ("error", TRT_SERVER_HINT)
    assert check.detail.startswith("installed but does not import:")


def gpu_with_driver(driver: str) -> Context:
    return Context(jetson=None, gpus=(GpuInfo(0, "NVIDIA L4", "8.9", 24 << 30, False, driver),), gpu_reason=None)


CU13_WHEELS = {name: "10.13.3.9.post1" for name in ("tensorrt", "tensorrt-cu13", "tensorrt-cu13-libs", "tensorrt-cu13-bindings")}
CU12_WHEELS = {name: "10.13.3.9.post1" for name in ("tensorrt-cu12", "tensorrt-cu12-libs", "tensorrt-cu12-bindings")}


def test_tensorrt_built_for_a_newer_cuda_than_the_driver_is_an_error(monkeypatch):
    pretend(monkeypatch, modules=("tensorrt",), versions=CU13_WHEELS)
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # the row is decided before any import
    check = tensorrt_backend.probe_tensorrt(gpu_with_driver("12.4"))
    assert check == Check(
        "TensorRT", "error",
        "TensorRT from tensorrt-cu13 10.13.3.9.post1 is built for CUDA 13, but this NVIDIA driver supports CUDA 12.4 "
        "at most: build-trt and .engine files cannot start",
        "pip uninstall -y tensorrt tensorrt-cu13 tensorrt-cu13-libs tensorrt-cu13-bindings, "
        'then pip install "clca-deploy[trt-cu12]" (or update the NVIDIA driver to r580 or newer)',
    )


@pytest.mark.parametrize("driver, wheels", [("13.0", CU13_WHEELS), ("13.0", CU12_WHEELS), ("12.2", CU12_WHEELS), (None, CU13_WHEELS)])
def test_tensorrt_wheels_the_driver_runs_are_ok(monkeypatch, driver, wheels):
    pretend(monkeypatch, modules=("tensorrt",), versions=wheels)
    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__="10.13.3.9"))
    ctx = gpu_with_driver(driver) if driver else Context(jetson=None, gpus=(), gpu_reason=NO_GPU)
    check = tensorrt_backend.probe_tensorrt(ctx)
    assert check.status == "ok" and check.detail.startswith("10.13.3.9: build-trt is "), check


def test_tensorrt_wheels_of_two_cuda_majors_are_an_error(monkeypatch):
    pretend(monkeypatch, modules=("tensorrt",), versions={**CU12_WHEELS, **CU13_WHEELS})
    check = tensorrt_backend.probe_tensorrt(gpu_with_driver("12.8"))
    assert check.status == "error" and "TensorRT wheels for CUDA 12 and CUDA 13 are both installed" in check.detail
    assert check.fix.endswith('tensorrt-cu13-bindings, then pip install "clca-deploy[trt-cu12]"'), check.fix


@pytest.mark.parametrize("driver, fix", [
    ("12.6", 'pip install "clca-deploy[trt-cu12]"'), ("13.1", 'pip install "clca-deploy[trt-cu13]"'),
    ("11.8", "update the NVIDIA driver (r535 or newer for CUDA 12, r580 or newer for CUDA 13)"),
])
def test_missing_tensorrt_hint_follows_the_driver(monkeypatch, driver, fix):
    pretend(monkeypatch)
    assert tensorrt_backend.probe_tensorrt(gpu_with_driver(driver)).fix == fix
    assert tensorrt_backend.probe_cuda_bindings(gpu_with_driver(driver)).fix == fix


def test_cuda_python_before_12_8_beside_cuda_bindings_is_an_error(monkeypatch):
    """cuda-python 12.6.2.post1 (what `cuda-python>=12.6.2,<13` resolved to beside torch 2.11) ships cuda/bindings itself."""
    pretend(monkeypatch, modules=("cuda.bindings",), versions={"cuda-python": "12.6.2.post1", "cuda-bindings": "13.0.3"})
    check = tensorrt_backend.probe_cuda_bindings(gpu_with_driver("13.0"))
    assert check == Check(
        "CUDA bindings", "error",
        "cuda-python 12.6.2.post1 and cuda-bindings 13.0.3 both install the cuda.bindings module and overwrote "
        "each other's files",
        'pip uninstall -y cuda-python cuda-bindings, then pip install "cuda-bindings>=13,<14"',
    )
    pretend(monkeypatch, modules=("cuda.bindings",), versions={"cuda-python": "12.9.10", "cuda-bindings": "12.9.10"})
    check = tensorrt_backend.probe_cuda_bindings(gpu_with_driver("13.0"))
    assert (check.status, check.detail) == ("ok", "cuda-bindings 12.9.10")  # 12.8 on, cuda-python is a metapackage


def test_a_probe_that_raises_becomes_its_row(monkeypatch):
    def broken():
        raise RuntimeError("driver exploded")

    monkeypatch.setattr(gpu, "list_gpus", broken)
    real_version = checks.dist_version

    def version(name):
        if name == "matplotlib":
            raise ValueError("bad metadata")
        return None if name == "torch" else real_version(name)

    monkeypatch.setattr(checks, "dist_version", version)
    found = rows(run_doctor())
    assert found["GPU"] == Check("GPU", "error", "error: RuntimeError: driver exploded")
    assert found["matplotlib"] == Check("matplotlib", "error", "error: ValueError: bad metadata")
    assert found["Python"].status == "ok" and found["PyTriton"].status != "error"


def test_table_layout():
    report = DoctorReport(
        checks=(Check("Python", "ok", "3.10.12"), Check("TensorRT", "missing", "not installed", "pip install x")),
        platform="Linux-test", machine="aarch64", jetson=None, gpus=(),
    )
    assert format_report(report) == (
        "clca-deploy doctor: Linux-test\n"
        "  ok       Python    3.10.12\n"
        "  missing  TensorRT  not installed\n"
        "                     -> pip install x\n"
        "1 ok, 1 missing, 0 note, 0 error"
    )


def test_cli_doctor_json_on_this_machine():
    """A real run: every probe, this machine's libraries and driver (torch included); exit 0 whatever is missing."""
    result = runner.invoke(app, ["doctor", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["format"] == "clca_deploy.doctor/1"
    names = [check["name"] for check in data["checks"]]
    for name in ("Python", "numpy", "onnx", "onnxruntime", "torch", "TensorRT", "CUDA bindings", "PyTriton"):
        assert name in names
    assert all(check["status"] in ("ok", "missing", "note", "error") for check in data["checks"])
    assert not [check for check in data["checks"] if check["detail"].startswith("error:")], data["checks"]
    if not data["gpus"]:
        assert next(c for c in data["checks"] if c["name"] == "GPU")["status"] == "missing"


def test_cli_doctor_table(monkeypatch):
    pretend(monkeypatch)
    monkeypatch.setattr(doctor, "gather_context", lambda: Context(jetson=None, gpus=(), gpu_reason=NO_GPU))
    result = runner.invoke(app, ["doctor"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("clca-deploy doctor: ")
    assert "  missing  TensorRT       not installed: needed for build-trt and .engine files\n" in result.output
    assert f"-> {TRT_SERVER_HINT}\n" in result.output


def test_openvino_row_names_its_extra_when_missing_and_its_bf16_when_present(monkeypatch):
    ctx = Context(jetson=None, gpus=(), gpu_reason="no GPU")
    monkeypatch.setattr(checks, "dist_version", lambda name: None)
    missing = openvino_backend.probe(ctx)
    assert missing.status == "note" and missing.fix == 'pip install "clca-deploy[openvino]"'
    pytest.importorskip("openvino")
    monkeypatch.setattr(checks, "dist_version", lambda name: "2026.4.1")
    present = openvino_backend.probe(ctx)
    assert present.status == "ok" and present.detail.startswith("2026.4.1, ") and "bf16" in present.detail

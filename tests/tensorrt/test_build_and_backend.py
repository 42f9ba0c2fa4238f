"""Engine building and the TensorRT backend.

Three layers: CPU tests of the "TensorRT missing" paths; CPU tests that drive build_engine and
TensorRTBackend through small fakes of tensorrt and pycuda.driver (call order, buffers, files); and
`trt`-marked tests that build real engines from the golden fixture and compare with onnxruntime.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import json
import sys
import types

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import clca_deploy.capabilities as capabilities
from clca_deploy.errors import ClcaDeployError, UnsupportedError
from clca_deploy.tensorrt.build import EngineConfig, build_engine
from clca_deploy.tensorrt.plan import BatchProfile
from clca_deploy.tensorrt.sidecar import sidecar_path
from clca_deploy.runtime import open_backend
from clca_deploy.runtime import tensorrt_backend
from clca_deploy.runtime.tensorrt_backend import TensorRTBackend
from tests.conftest import load_golden

WEIGHTS = (np.arange(45, dtype=np.float32).reshape(3, 15) - 20) / 10  # the fake engine's "model"


def tiny_onnx(path, precision="fp32", batch=None):
    """A small ONNX file with clca-deploy metadata (the fakes never look at its graph)."""
    dims = [batch or "batch", 3, 224, 224]
    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["images"], ["logits"])], "tiny",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch or "batch", 3, 1, 1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    props = {
        "clca_deploy.format": "1", "clca_deploy.version": "0.1.0", "model": "evit_deit_tiny_patch16_224",
        "method": "evit", "backbone": "deit_tiny", "keep_rate": "[0.5, 0.5, 0.5]", "trained_keep_rate": "[0.5]",
        "reduction_loc": "[3, 6, 9]", "token_schedule": "[[197, 197]]", "img_size": "224", "resize_size": "256",
        "interpolation": "bicubic", "mean": "[0.5, 0.5, 0.5]", "std": "[0.5, 0.5, 0.5]", "num_classes": "15",
        "clca_config": "{}", "precision": precision,
    }
    for key, value in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))
    return path


# ---------------------------------------------------------------- fakes of tensorrt and pycuda.driver


def _module(name):
    module = types.ModuleType(name)
    module.__spec__ = importlib.machinery.ModuleSpec(name, None)  # find_spec() probes (torch does) need one
    return module


class _Names:
    def __init__(self, *names):
        for index, name in enumerate(names):
            setattr(self, name, index)


class FakeEngine:
    num_io_tensors = 2

    def __init__(self, trt):
        self.trt = trt

    def get_tensor_name(self, i):
        return ("images", "logits")[i]

    def get_tensor_mode(self, name):
        return self.trt.TensorIOMode.INPUT if name == "images" else self.trt.TensorIOMode.OUTPUT

    def get_tensor_shape(self, name):
        return [-1, 3, 224, 224] if name == "images" else [-1, 15]

    def get_tensor_dtype(self, name):
        return np.float32

    def create_execution_context(self):
        return FakeContext(self.trt)


class FakeContext:
    def __init__(self, trt):
        self.trt, self.shape, self.addresses = trt, None, {}

    def set_input_shape(self, name, shape):
        self.shape = tuple(shape)
        return 1 <= shape[0] <= 32

    def get_tensor_shape(self, name):
        return [self.shape[0], 15]

    def set_tensor_address(self, name, address):
        self.addresses[name] = address

    def execute_async_v3(self, stream_handle):
        memory = self.trt.driver.memory
        count = self.shape[0]
        images = memory[self.addresses["images"]][: count * 3 * 224 * 224 * 4].view(np.float32).reshape(self.shape)
        logits = images.mean(axis=(2, 3)) @ WEIGHTS
        memory[self.addresses["logits"]][: logits.nbytes] = logits.astype(np.float32).view(np.uint8).reshape(-1)
        return True


class FakeBuilder:
    def __init__(self, trt):
        self.trt = trt

    def create_network(self, flags):
        self.trt.calls.append(("create_network", flags))
        return object()

    def create_builder_config(self):
        return FakeConfig(self.trt)

    def create_optimization_profile(self):
        trt = self.trt
        return types.SimpleNamespace(set_shape=lambda *args: trt.calls.append(("set_shape", *args)))

    def build_serialized_network(self, network, config):
        self.trt.calls.append(("build",))
        return None if self.trt.fail_build else bytearray(b"PLAN-" + self.trt.__version__.encode())


class FakeConfig:
    def __init__(self, trt):
        self.trt, self.cache = trt, None

    def set_memory_pool_limit(self, pool, size):
        self.trt.calls.append(("workspace", size))

    def set_flag(self, flag):
        self.trt.calls.append(("flag", flag))

    def add_optimization_profile(self, profile):
        self.trt.calls.append(("add_profile",))

    def create_timing_cache(self, data):
        return types.SimpleNamespace(serialize=lambda: bytearray(bytes(data) + b"+timed"))

    def set_timing_cache(self, cache, ignore_mismatch):
        self.cache = cache
        return True

    def get_timing_cache(self):
        return self.cache


def make_fake_tensorrt(version):
    trt = _module("tensorrt")
    trt.__version__, trt.calls, trt.fail_build, trt.parser_errors = version, [], False, []
    trt.Logger = type("Logger", (), {"WARNING": 2, "__init__": lambda self, severity=2: None})
    trt.TensorIOMode = _Names("NONE", "INPUT", "OUTPUT")
    trt.NetworkDefinitionCreationFlag = _Names("STRONGLY_TYPED")
    trt.MemoryPoolType = _Names("WORKSPACE")
    trt.BuilderFlag = types.SimpleNamespace(FP16="FP16", INT8="INT8")
    trt.nptype = lambda dtype: dtype
    trt.Builder = lambda logger: FakeBuilder(trt)

    class OnnxParser:
        def __init__(self, network, logger):
            self.num_errors = len(trt.parser_errors)

        def parse_from_file(self, path):
            return not trt.parser_errors

        def get_error(self, i):
            return trt.parser_errors[i]

    def deserialize(plan):
        trt.calls.append(("deserialize",))
        return FakeEngine(trt)

    trt.OnnxParser = OnnxParser
    trt.Runtime = lambda logger: types.SimpleNamespace(deserialize_cuda_engine=deserialize)
    return trt


def make_fake_pycuda(trt, gpu=("FakeGPU", (8, 7))):
    driver = _module("pycuda.driver")
    driver.memory, driver.depth, driver.freed, driver.detached = {}, [0], [], []
    driver.init = lambda: None

    class Context:
        def push(self):
            driver.depth[0] += 1

        @staticmethod
        def pop():
            driver.depth[0] -= 1

        def detach(self):
            driver.detached.append(True)

    class Allocation:
        def __init__(self, nbytes):
            self.address = 4096 * (len(driver.memory) + 1)
            driver.memory[self.address] = np.zeros(nbytes, np.uint8)

        def __int__(self):
            return self.address

        def free(self):
            driver.freed.append(self.address)

    driver.Context = Context
    driver.Device = lambda i: types.SimpleNamespace(
        name=lambda: gpu[0], compute_capability=lambda: gpu[1], retain_primary_context=Context
    )
    driver.pagelocked_empty = lambda shape, dtype: np.empty(shape, dtype)
    driver.mem_alloc = Allocation
    driver.Stream = lambda: types.SimpleNamespace(handle=1, synchronize=lambda: None)

    def htod(dest, src, stream):
        assert driver.depth[0] > 0, "copy outside the CUDA context"
        driver.memory[int(dest)][: src.nbytes] = np.ascontiguousarray(src).view(np.uint8).reshape(-1)

    def dtoh(dest, src, stream):
        dest.view(np.uint8).reshape(-1)[:] = driver.memory[int(src)][: dest.nbytes]

    driver.memcpy_htod_async, driver.memcpy_dtoh_async = htod, dtoh
    trt.driver = driver
    package = _module("pycuda")
    package.driver = driver
    return package, driver


@pytest.fixture
def fake_trt(monkeypatch):
    """Install fake tensorrt (10.13 unless changed) and pycuda; return a function to switch versions."""

    def install(version="10.13.0.35", gpu=("FakeGPU", (8, 7))):
        trt = make_fake_tensorrt(version)
        package, driver = make_fake_pycuda(trt, gpu)
        monkeypatch.setitem(sys.modules, "tensorrt", trt)
        monkeypatch.setitem(sys.modules, "pycuda", package)
        monkeypatch.setitem(sys.modules, "pycuda.driver", driver)
        monkeypatch.setattr(capabilities, "tensorrt_skip_reason", lambda: None)
        monkeypatch.setattr(tensorrt_backend, "_runtime_skip_reason", lambda: None)
        monkeypatch.setattr("clca_deploy.tensorrt.build._gpu_identity", lambda: (gpu[0], "{}.{}".format(*gpu[1])))
        return trt

    return install


# ---------------------------------------------------------------- TensorRT missing (this machine, CI)


def _build_without_tensorrt(tmp_path):
    onnx_path = tiny_onnx(tmp_path / "m.onnx")
    with pytest.raises(ClcaDeployError, match=r"TensorRT.*clca-deploy\[trt\]"):
        build_engine(onnx_path, tmp_path / "m.engine", EngineConfig(timing_cache=tmp_path / "cache"), log=lambda _: None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


def test_build_engine_without_tensorrt_fails_before_writing(tmp_path):
    if capabilities.tensorrt_skip_reason() is None:
        pytest.skip("TensorRT and a GPU are usable here; the patched variants below still run")
    _build_without_tensorrt(tmp_path)


@pytest.mark.parametrize("reason", ['TensorRT is not installed (pip install "clca-deploy[trt]")', "no CUDA GPU on this machine"])
def test_build_engine_names_what_is_missing(tmp_path, monkeypatch, reason):
    monkeypatch.setattr(capabilities, "tensorrt_skip_reason", lambda: reason)
    _build_without_tensorrt(tmp_path)


def test_engine_without_sidecar_is_an_error_not_a_skip(tmp_path):
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"plan")
    with pytest.raises(ClcaDeployError, match="no sidecar.*build-trt") as err:
        open_backend(engine)
    assert not isinstance(err.value, UnsupportedError)


def test_engine_without_tensorrt_is_skipped_with_install_hint(tmp_path, monkeypatch):
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"plan")
    sidecar_path(engine).write_text(json.dumps({"format": "clca_deploy.engine/1", "tensorrt_version": "10.3.0", "gpu_name": "Orin"}))
    if capabilities.tensorrt_skip_reason() is None:
        monkeypatch.setattr(capabilities, "tensorrt_skip_reason", lambda: "no CUDA GPU on this machine")
    with pytest.raises(UnsupportedError, match=r"built for TensorRT 10\.3\.0 on Orin.*clca-deploy\[trt\]"):
        open_backend(engine)


# ---------------------------------------------------------------- build_engine and the backend on fakes


def test_fake_build_fp16_on_tensorrt_10_writes_engine_sidecar_and_cache(tmp_path, fake_trt):
    trt = fake_trt("10.13.0.35")
    onnx_path = tiny_onnx(tmp_path / "m.onnx")
    cache = tmp_path / "timing.cache"
    result = build_engine(onnx_path, tmp_path / "m.engine", EngineConfig("fp16", timing_cache=cache), log=lambda _: None)
    assert ("create_network", 0) in trt.calls and ("flag", "FP16") in trt.calls
    assert ("workspace", 2 << 30) in trt.calls and ("add_profile",) in trt.calls
    assert ("set_shape", "images", (1, 3, 224, 224), (8, 3, 224, 224), (32, 3, 224, 224)) in trt.calls
    plan = (tmp_path / "m.engine").read_bytes()
    sidecar = json.loads(sidecar_path(tmp_path / "m.engine").read_text())
    assert plan == b"PLAN-10.13.0.35" and sidecar["engine_sha256"] == hashlib.sha256(plan).hexdigest()
    assert sidecar["onnx_sha256"] == hashlib.sha256(onnx_path.read_bytes()).hexdigest()
    assert (sidecar["precision"], sidecar["builder_flags"], sidecar["strongly_typed"]) == ("fp16", ["FP16"], False)
    assert (sidecar["gpu_name"], sidecar["compute_capability"], sidecar["tensorrt_version"]) == ("FakeGPU", "8.7", "10.13.0.35")
    assert sidecar["io"][1] == {"name": "logits", "mode": "output", "dtype": "float32", "shape": [-1, 15]}
    assert sidecar["profiles"] == [{"min": 1, "opt": 8, "max": 32}] and sidecar["keep_rate"] == [0.5, 0.5, 0.5]
    assert sidecar["onnx_metadata"]["precision"] == "fp32"
    assert cache.read_bytes() == b"+timed" and result.notes and result.precision == "fp16"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.engine", "m.engine.json", "m.onnx", "timing.cache"]


def test_fake_build_on_tensorrt_11_sets_no_precision_flags(tmp_path, fake_trt):
    trt = fake_trt("11.0.0.1")
    onnx_path = tiny_onnx(tmp_path / "m.onnx", precision="int8")
    build_engine(onnx_path, tmp_path / "m.engine", EngineConfig("int8"), log=lambda _: None)
    assert not [c for c in trt.calls if c[0] == "flag"] and ("create_network", 0) in trt.calls
    assert json.loads(sidecar_path(tmp_path / "m.engine").read_text())["strongly_typed"] is True
    with pytest.raises(ClcaDeployError, match="calibrate --fp16"):
        build_engine(onnx_path, tmp_path / "other.engine", EngineConfig("fp16"), log=lambda _: None)
    assert not (tmp_path / "other.engine").exists()


def test_fake_build_fixed_batch_and_profile_conflict(tmp_path, fake_trt):
    trt = fake_trt()
    onnx_path = tiny_onnx(tmp_path / "m.onnx", batch=4)
    build_engine(onnx_path, tmp_path / "m.engine", EngineConfig(), log=lambda _: None)
    assert ("add_profile",) not in trt.calls  # a static input needs no profile
    assert json.loads(sidecar_path(tmp_path / "m.engine").read_text())["profiles"] == [{"min": 4, "opt": 4, "max": 4}]
    with pytest.raises(ClcaDeployError, match="exported for batch 4 only"):
        build_engine(onnx_path, tmp_path / "x.engine", EngineConfig(batch=BatchProfile(1, 8, 32)), log=lambda _: None)


def test_fake_parser_and_builder_failures_write_nothing(tmp_path, fake_trt):
    trt = fake_trt()
    onnx_path = tiny_onnx(tmp_path / "m.onnx")
    trt.parser_errors = ["In node 7 (Einsum): UNSUPPORTED_NODE"]
    with pytest.raises(ClcaDeployError, match=r"cannot parse .*m\.onnx: In node 7 \(Einsum\): UNSUPPORTED_NODE"):
        build_engine(onnx_path, tmp_path / "m.engine", EngineConfig(), log=lambda _: None)
    trt.parser_errors, trt.fail_build = [], True
    with pytest.raises(ClcaDeployError, match="could not build"):
        build_engine(onnx_path, tmp_path / "m.engine", EngineConfig(), log=lambda _: None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


def test_fake_engine_and_sidecar_land_together_or_not_at_all(tmp_path, fake_trt):
    fake_trt()
    onnx_path = tiny_onnx(tmp_path / "m.onnx")
    sidecar_path(tmp_path / "m.engine").mkdir()  # the sidecar cannot be written
    with pytest.raises(ClcaDeployError, match="is a folder"):
        build_engine(onnx_path, tmp_path / "m.engine", EngineConfig(), log=lambda _: None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.engine.json", "m.onnx"]


@pytest.fixture
def fake_engine(tmp_path, fake_trt):
    fake_trt("10.3.0.26", gpu=("Orin", (8, 7)))
    engine = tmp_path / "m.engine"
    build_engine(tiny_onnx(tmp_path / "m.onnx"), engine, EngineConfig(batch=BatchProfile(1, 4, 8)), log=lambda _: None)
    return engine


def test_fake_backend_runs_any_batch_and_frees_its_memory(fake_engine, fake_trt):
    trt = fake_trt("10.3.0.26", gpu=("Orin", (8, 7)))
    images = np.random.default_rng(0).standard_normal((19, 3, 224, 224)).astype(np.float32)
    expected = images.mean(axis=(2, 3)) @ WEIGHTS
    with open_backend(fake_engine) as backend:
        assert backend.input_spec.batch is None and backend.description.precision == "fp32"
        assert backend.description.num_classes == 15 and "Orin" in backend.providers[0]
        np.testing.assert_allclose(backend(images[:5]), expected[:5], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(backend(images), expected, rtol=1e-5, atol=1e-5)  # 19 > max 8: chunked
        first = backend(images[:2])
        backend(images[2:4])
        np.testing.assert_allclose(first, expected[:2], rtol=1e-5, atol=1e-5)  # not overwritten by the next call
    driver = trt.driver
    assert driver.depth == [0] and sorted(driver.freed) == sorted(driver.memory) and driver.detached == [True]


def test_fake_backend_checks_the_sidecar_before_deserializing(fake_engine, fake_trt):
    trt = fake_trt("10.13.0.35", gpu=("Orin", (8, 7)))
    with pytest.raises(ClcaDeployError) as err:
        TensorRTBackend(fake_engine)
    assert str(err.value) == (
        "engine built for TensorRT 10.3.0 on Orin (8.7); this machine runs TensorRT 10.13.0 on Orin (8.7): "
        "rebuild it here with `clca-deploy build-trt`."
    )
    assert ("deserialize",) not in trt.calls


def test_fake_backend_refuses_an_engine_its_sidecar_does_not_describe(fake_engine, fake_trt):
    fake_trt("10.3.0.26", gpu=("Orin", (8, 7)))
    fake_engine.write_bytes(b"another plan")
    with pytest.raises(ClcaDeployError, match="does not match its sidecar"):
        TensorRTBackend(fake_engine)


def test_fake_backend_warns_on_another_gpu_model(fake_engine, fake_trt):
    fake_trt("10.3.0.26", gpu=("Orin NX", (8, 7)))
    with pytest.warns(UserWarning, match="tuned on the other GPU"):
        backend = TensorRTBackend(fake_engine)
    with backend:
        assert backend.description.extra["warnings"]


# ---------------------------------------------------------------- real TensorRT (GPU machines only)

GOLDEN = "evit_deit_tiny_plain_k0.5_224"


@pytest.fixture(scope="module")
def real_engines(tmp_path_factory):
    """The golden fixture exported to ONNX, and fp32/fp16 engines built from it."""
    from clca_deploy.export import ExportConfig, export_onnx

    checkpoint, _, _ = load_golden(GOLDEN)
    folder = tmp_path_factory.mktemp("trt")
    onnx_path = folder / "plain.onnx"
    export_onnx(checkpoint, onnx_path, ExportConfig(), log=lambda _: None)
    engines = {
        precision: build_engine(onnx_path, folder / f"plain.{precision}.engine", EngineConfig(precision, BatchProfile(1, 2, 4)),
                                log=lambda _: None).path
        for precision in ("fp32", "fp16")
    }
    return onnx_path, engines


def _reference(onnx_path, images):
    with open_backend(onnx_path, "onnxruntime") as backend:
        return backend(images)


def _assert_close(logits, expected, relative):
    """Within ``relative`` of the logit scale (this fixture's logits are ~0.06); top-1 equal where the margin allows."""
    atol = relative * np.abs(expected).max()
    np.testing.assert_allclose(logits, expected, atol=atol, rtol=0)
    top2 = np.sort(expected, axis=1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 2 * atol
    assert (logits.argmax(1) == expected.argmax(1))[clear].all()


@pytest.mark.trt
@pytest.mark.parametrize("precision, relative", [("fp32", 0.02), ("fp16", 0.05)])  # fp32 allows TF32 matmuls
def test_real_engine_matches_onnxruntime(real_engines, precision, relative):
    onnx_path, engines = real_engines
    images = load_golden(GOLDEN)[2]["input"]
    batch = np.concatenate([images] * 3)  # 6 images: also crosses the profile's max of 4
    with open_backend(engines[precision]) as backend:
        logits = backend(batch)
        assert backend.description.precision == precision
    _assert_close(logits, _reference(onnx_path, batch), relative)


@pytest.mark.trt
def test_real_sidecar_describes_the_engine(real_engines):
    import tensorrt as trt

    sidecar = json.loads(sidecar_path(real_engines[1]["fp16"]).read_text())
    assert sidecar["tensorrt_version"] == trt.__version__ and sidecar["precision"] == "fp16"
    assert [e["name"] for e in sidecar["io"]] == ["images", "logits"] and sidecar["io"][0]["shape"][0] == -1
    assert sidecar["profiles"] == [{"min": 1, "opt": 2, "max": 4}]


@pytest.mark.trt
def test_real_engine_from_another_tensorrt_version_is_refused(real_engines, tmp_path):
    source = real_engines[1]["fp32"]
    engine = tmp_path / "old.engine"
    engine.write_bytes(open(source, "rb").read())
    sidecar = json.loads(sidecar_path(source).read_text())
    sidecar["tensorrt_version"] = "10.2.99"
    sidecar_path(engine).write_text(json.dumps(sidecar))
    with pytest.raises(ClcaDeployError, match=r"engine built for TensorRT 10\.2\.99 .* rebuild it here"):
        open_backend(engine)


@pytest.mark.trt
def test_real_int8_engine_from_qdq_onnx(real_engines, tmp_path, leaves_dir):
    calibration = pytest.importorskip("clca_deploy.calibration")
    onnx_path, _ = real_engines
    qdq = tmp_path / "plain.int8.onnx"
    calibration.quantize_int8(onnx_path, qdq, calibration.CalibrationConfig(data=leaves_dir, num_images=32), log=lambda _: None)
    engine = build_engine(qdq, tmp_path / "plain.int8.engine", EngineConfig("int8", BatchProfile(1, 2, 4)), log=lambda _: None)
    images = load_golden(GOLDEN)[2]["input"]
    expected = _reference(qdq, images)  # the same Q/DQ file on onnxruntime
    with open_backend(engine.path) as backend:
        logits = backend(images)
    _assert_close(logits, expected, 0.25)  # same Q/DQ math, different int8 kernels and fusions

"""Engine building, build-trt and the TensorRT backend.

Four layers: the "TensorRT missing" paths as this machine really is; build_engine, build_trt and the
backend driven through the strict fakes of tests/tensorrt/fakes/ (TensorRT 10.3 / 10.13 / 11.4, pycuda
and cuda-python over one fake GPU); the build-trt CLI options that messages mention; and `trt`-marked
tests that build real engines from the golden fixture on a GPU machine.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from pathlib import Path

import numpy as np
import pytest

from clca_deploy.errors import ClcaDeployError, UnsupportedError
from clca_deploy.runtime import open_backend
from clca_deploy.runtime.tensorrt_backend import TensorRTBackend, TensorRTOptions
from clca_deploy.tensorrt.build import EngineConfig, build_engine
from clca_deploy.tensorrt.plan import PRECISIONS, BatchProfile, plan_build
from clca_deploy.tensorrt.sidecar import sidecar_path
from clca_deploy.tensorrt.toolkit import tensorrt_unavailable_reason
from tests.conftest import load_golden
from tests.tensorrt import fakes
from tests.tensorrt.fakes import expected_logits, tiny_onnx

V10_3, V10_13, V11_4 = "10.3.0", "10.13.3.9.post1", "11.4.0.106"
BINDINGS = ("pycuda", "cuda-python")
quiet = lambda _: None  # noqa: E731


@pytest.fixture
def fake(monkeypatch):
    """``fake(version, devices=..., bindings=...)`` installs the fakes and returns the FakeStack."""
    return lambda version=V10_13, **options: fakes.install(monkeypatch, version, **options)


def names_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def images(count: int, seed: int = 0, img_size: int = 32) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((count, 3, img_size, img_size)).astype(np.float32)


def read_sidecar(engine) -> dict:
    return json.loads(sidecar_path(engine).read_text())


def plan_of(engine) -> dict:
    data = Path(engine).read_bytes()
    assert data.startswith(fakes.PLAN_MAGIC)
    return json.loads(data[len(fakes.PLAN_MAGIC):])


# ---------------------------------------------------------------- TensorRT missing (this machine, CI)


def _assert_missing(error: pytest.ExceptionInfo, what: str) -> None:
    message = str(error.value)
    assert isinstance(error.value, UnsupportedError) and "\n" not in message, message
    # [trt] where no driver answers (here, CI); the extra of the driver's CUDA major where one does.
    assert what in message and re.search(r'pip install "clca-deploy\[trt(-cu1[23])?\]"', message), message


def test_build_on_this_machine_without_tensorrt_fails_before_writing(tmp_path):
    reason = tensorrt_unavailable_reason()
    if reason is None:
        pytest.skip("TensorRT and a GPU are usable here; the patched variants below still run")
    onnx_path = tiny_onnx(tmp_path / "m.onnx")
    with pytest.raises(ClcaDeployError) as error:
        build_engine(onnx_path, tmp_path / "m.engine", EngineConfig(timing_cache=tmp_path / "cache"), log=quiet)
    _assert_missing(error, reason)
    assert names_in(tmp_path) == ["m.onnx"]


@pytest.mark.parametrize("missing, what", [
    ("gpu", "no CUDA GPU on this machine"), ("tensorrt", "TensorRT is not installed"),
    ("binding", "no CUDA Python binding is installed (cuda-python or pycuda)"),
])
def test_build_and_backend_name_what_is_missing(tmp_path, monkeypatch, missing, what):
    from clca_deploy.pipeline.build_trt import build_trt

    toolkit = "clca_deploy.tensorrt.toolkit"
    monkeypatch.setattr(f"{toolkit}.gpu_unavailable_reason", lambda i=0: what if missing == "gpu" else None)
    monkeypatch.setattr(f"{toolkit}._has_tensorrt", lambda: missing != "tensorrt")
    monkeypatch.setattr(f"{toolkit}.installed_bindings", lambda: () if missing == "binding" else ("pycuda",))
    monkeypatch.setattr("clca_deploy.calibration.to_fp16", lambda *a, **k: pytest.fail("converted before checking TensorRT"))
    onnx_path = tiny_onnx(tmp_path / "m.onnx")
    with pytest.raises(ClcaDeployError) as error:
        build_engine(onnx_path, tmp_path / "m.engine", EngineConfig(timing_cache=tmp_path / "cache"), log=quiet)
    _assert_missing(error, what)
    with pytest.raises(ClcaDeployError) as error:
        build_trt(onnx_path, None, EngineConfig("fp16"), log=quiet)
    _assert_missing(error, what)
    assert names_in(tmp_path) == ["m.onnx"]

    engine = tmp_path / "m.engine"
    engine.write_bytes(b"plan")
    sidecar_path(engine).write_text(json.dumps(_complete_sidecar(onnx_path, "10.3.0", "Orin")))  # a damaged one is refused first
    with pytest.raises(ClcaDeployError, match=r"^cannot run m\.engine \(built for TensorRT 10\.3\.0 on Orin\)") as error:
        open_backend(engine)
    _assert_missing(error, what)


def _complete_sidecar(onnx_path: Path, tensorrt_version: str, gpu_name: str) -> dict:
    """The sidecar `build-trt` would write for ``onnx_path`` (32 px, 15 classes), without building anything."""
    from clca_deploy.metadata import load_onnx_structure, metadata_props
    from clca_deploy.tensorrt.sidecar import build_sidecar

    return build_sidecar(
        tensorrt_version=tensorrt_version, gpu_name=gpu_name, compute_capability="8.7",
        plan=plan_build((10, 3, 0), "fp32", "fp32"),
        io=[{"name": "images", "mode": "input", "dtype": "float32", "shape": [-1, 3, 32, 32]},
            {"name": "logits", "mode": "output", "dtype": "float32", "shape": [-1, 15]}],
        profiles=[BatchProfile(1, 8, 32)], onnx_sha256="ab" * 32, keep_rate=(0.5,),
        onnx_metadata=metadata_props(load_onnx_structure(onnx_path)), engine_sha256="cd" * 32,
    )


def test_engine_without_sidecar_is_an_error_not_a_skip(tmp_path):
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"plan")
    with pytest.raises(ClcaDeployError, match="no sidecar.*build-trt") as error:
        open_backend(engine)
    assert not isinstance(error.value, UnsupportedError)


# ---------------------------------------------------------------- build_engine on the fakes


@pytest.mark.parametrize("version, flags", [(V10_3, 1 << 1), (V10_13, 1 << 1), (V11_4, 0)])
@pytest.mark.parametrize("precision", PRECISIONS)
def test_build_is_strongly_typed_by_default(tmp_path, fake, version, flags, precision):
    stack = fake(version)
    onnx_path = tiny_onnx(tmp_path / "m.onnx", precision=precision)
    result = build_engine(onnx_path, tmp_path / "m.engine", EngineConfig(precision), log=quiet)
    calls = stack.controls.calls
    assert ("create_network", flags) in calls and not [c for c in calls if c[0] == "set_flag"], calls
    assert (result.strongly_typed, result.builder_flags, result.precision) == (True, (), precision)
    assert plan_of(result.path)["compute"] == precision and read_sidecar(result.path)["strongly_typed"] is True
    assert stack.controls.errors == []


@pytest.mark.parametrize("version", [V10_3, V10_13])
@pytest.mark.parametrize("precision, onnx_precision, flag", [("fp16", "fp32", "FP16"), ("int8", "int8", "INT8"), ("fp32", "fp32", None)])
def test_weak_typing_on_tensorrt_10_sets_the_builder_flag(tmp_path, fake, version, precision, onnx_precision, flag):
    stack = fake(version)
    onnx_path = tiny_onnx(tmp_path / "m.onnx", precision=onnx_precision)
    result = build_engine(onnx_path, tmp_path / "m.engine", EngineConfig(precision, weak_typing=True), log=quiet)
    assert ("create_network", 0) in stack.controls.calls
    assert [c[1] for c in stack.controls.calls if c[0] == "set_flag"] == ([flag] if flag else [])
    sidecar = read_sidecar(result.path)
    assert (sidecar["strongly_typed"], sidecar["builder_flags"], sidecar["precision"]) == (False, [flag] if flag else [], precision)
    assert plan_of(result.path)["compute"] == precision
    assert any("deprecated since TensorRT 10.12" in note for note in result.notes) == (version == V10_13)


def test_weak_typing_is_refused_on_tensorrt_11_before_building(tmp_path, fake):
    stack = fake(V11_4)
    onnx_path = tiny_onnx(tmp_path / "m.onnx")
    with pytest.raises(ClcaDeployError, match="drop --weak-typing"):
        build_engine(onnx_path, tmp_path / "m.engine", EngineConfig("fp16", weak_typing=True), log=quiet)
    assert stack.controls.calls == [] and names_in(tmp_path) == ["m.onnx"]


def test_build_writes_engine_sidecar_and_timing_cache(tmp_path, fake):
    fake(V10_13, devices=(("FakeGPU", "8.9"),))
    onnx_path = tiny_onnx(tmp_path / "m.onnx")
    cache = tmp_path / "timing.cache"
    logs = []
    result = build_engine(onnx_path, tmp_path / "m.engine", EngineConfig(timing_cache=cache, workspace_gib=1.5), log=logs.append)
    plan, sidecar = (tmp_path / "m.engine").read_bytes(), read_sidecar(tmp_path / "m.engine")
    assert sidecar["engine_sha256"] == hashlib.sha256(plan).hexdigest()
    assert sidecar["onnx_sha256"] == hashlib.sha256(onnx_path.read_bytes()).hexdigest()
    assert (sidecar["gpu_name"], sidecar["compute_capability"], sidecar["tensorrt_version"]) == ("FakeGPU", "8.9", V10_13)
    assert sidecar["io"] == [
        {"name": "images", "mode": "input", "dtype": "float32", "shape": [-1, 3, 32, 32]},
        {"name": "logits", "mode": "output", "dtype": "float32", "shape": [-1, 15]},
    ]
    assert sidecar["profiles"] == [{"min": 1, "opt": 8, "max": 32}] and sidecar["keep_rate"] == [0.5, 0.5, 0.5]
    assert sidecar["onnx_metadata"]["precision"] == "fp32" and result.size_bytes == len(plan)
    assert plan_of(result.path)["profile"] == {"images": [[1, 3, 32, 32], [8, 3, 32, 32], [32, 3, 32, 32]]}
    assert plan_of(result.path)["workspace"] == int(1.5 * (1 << 30)) and plan_of(result.path)["device"] == 0
    assert cache.read_bytes().startswith(fakes.CACHE_MAGIC) and not any("timing cache" in line for line in logs)
    assert names_in(tmp_path) == ["m.engine", "m.engine.json", "m.onnx", "timing.cache"]
    build_engine(onnx_path, tmp_path / "again.engine", EngineConfig(timing_cache=cache), log=logs.append)
    assert json.loads(cache.read_bytes()[len(fakes.CACHE_MAGIC):])["entries"] == 2  # read, used and updated
    assert not any("timing cache" in line for line in logs)


@pytest.mark.parametrize("cache_bytes", [b"not a timing cache", "another version"])
def test_a_foreign_timing_cache_falls_back_to_a_new_one(tmp_path, fake, monkeypatch, cache_bytes):
    onnx_path, cache = tiny_onnx(tmp_path / "m.onnx"), tmp_path / "timing.cache"
    if cache_bytes == "another version":
        fake(V10_3)
        build_engine(onnx_path, tmp_path / "old.engine", EngineConfig(timing_cache=cache), log=quiet)
    else:
        cache.write_bytes(cache_bytes)
    stack = fake(V10_13)
    logs = []
    build_engine(onnx_path, tmp_path / "m.engine", EngineConfig(timing_cache=cache), log=logs.append)
    assert [line for line in logs if "timing cache" in line] == [f"timing cache {cache} does not fit this TensorRT/GPU; starting a new one."]
    assert any("timing cache mismatch" in e for e in stack.controls.errors)
    assert json.loads(cache.read_bytes()[len(fakes.CACHE_MAGIC):]) == {"origin": f"{V10_13}/8.7", "entries": 1}


def test_parser_and_builder_failures_write_nothing(tmp_path, fake):
    stack = fake()
    onnx_path = tiny_onnx(tmp_path / "m.onnx")
    config = EngineConfig(timing_cache=tmp_path / "timing.cache")
    stack.controls.parser_errors = ["In node 7 (Einsum): UNSUPPORTED_NODE"]
    with pytest.raises(ClcaDeployError, match=r"cannot parse .*m\.onnx: In node 7 \(Einsum\): UNSUPPORTED_NODE"):
        build_engine(onnx_path, tmp_path / "m.engine", config, log=quiet)
    stack.controls.parser_errors, stack.controls.fail_build = [], True
    with pytest.raises(ClcaDeployError, match="could not build"):
        build_engine(onnx_path, tmp_path / "m.engine", config, log=quiet)
    assert names_in(tmp_path) == ["m.onnx"] and stack.gpu.live() == fakes.FakeGpu().live()


def test_engine_and_sidecar_land_together_or_not_at_all(tmp_path, fake):
    fake()
    onnx_path = tiny_onnx(tmp_path / "m.onnx")
    sidecar_path(tmp_path / "m.engine").mkdir()  # the sidecar cannot be written
    with pytest.raises(ClcaDeployError, match="is a folder"):
        build_engine(onnx_path, tmp_path / "m.engine", EngineConfig(), log=quiet)
    assert names_in(tmp_path) == ["m.engine.json", "m.onnx"]  # no engine, no temporary file


def test_build_on_device_1_runs_inside_device_1s_context(tmp_path, fake):
    stack = fake(devices=(("GPU zero", "8.0"), ("GPU one", "8.9")))
    result = build_engine(tiny_onnx(tmp_path / "m.onnx"), tmp_path / "m.engine", EngineConfig(device=1), log=quiet)
    assert ("build_serialized_network", 1) in stack.controls.calls and plan_of(result.path)["device"] == 1
    sidecar = read_sidecar(result.path)
    assert (sidecar["gpu_name"], sidecar["compute_capability"]) == ("GPU one", "8.9")
    assert stack.gpu.live()["primary_context_refs"] == 0  # the binding opened for the build was released
    with open_backend(result.path, device=1) as backend:
        np.testing.assert_allclose(backend(images(3)), expected_logits(images(3), 15), rtol=1e-5, atol=1e-6)
    with pytest.raises(ClcaDeployError, match=r"on GPU one \(8\.9\); this machine runs .* on GPU zero \(8\.0\)"):
        open_backend(result.path, device=0)


def test_fixed_batch_onnx_gets_its_own_profile_and_refuses_another(tmp_path, fake):
    stack = fake()
    onnx_path = tiny_onnx(tmp_path / "m.onnx", batch=4)
    result = build_engine(onnx_path, tmp_path / "m.engine", EngineConfig(), log=quiet)
    assert not [c for c in stack.controls.calls if c[0] == "add_optimization_profile"]  # a static input needs none
    assert read_sidecar(result.path)["profiles"] == [{"min": 4, "opt": 4, "max": 4}]
    with pytest.raises(ClcaDeployError, match="exported for batch 4 only"):
        build_engine(onnx_path, tmp_path / "x.engine", EngineConfig(batch=BatchProfile(1, 8, 32)), log=quiet)
    assert "x.engine" not in names_in(tmp_path)
    with open_backend(result.path) as backend:
        assert backend.input_spec.batch == 4
        np.testing.assert_allclose(backend(images(4)), expected_logits(images(4), 15), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- build_trt (the build-trt orchestrator) and the CLI


@pytest.fixture
def counted(monkeypatch):
    """Counts load_toolkit calls through every module that may call it; fakes the FP16 converter."""
    import clca_deploy.tensorrt.toolkit as toolkit

    calls, conversions = [], []
    real = toolkit.load_toolkit

    def load_toolkit(device=0):
        calls.append(device)
        return real(device)

    for module in ("clca_deploy.tensorrt.toolkit", "clca_deploy.tensorrt.build", "clca_deploy.pipeline.build_trt"):
        monkeypatch.setattr(f"{module}.load_toolkit", load_toolkit)

    def to_fp16(onnx_path, output, log=print):
        import onnx

        model = onnx.load(str(onnx_path))
        for entry in model.metadata_props:
            if entry.key == "precision":
                entry.value = "fp16"
        onnx.save(model, str(output))
        conversions.append((Path(onnx_path).name, Path(output).name))
        return type("Fp16Result", (), {"path": str(output), "precision": "fp16"})()

    monkeypatch.setattr("clca_deploy.calibration.to_fp16", to_fp16)
    return calls, conversions


@pytest.mark.parametrize("version", [V10_3, V11_4])
def test_build_trt_fp16_converts_an_fp32_onnx_first_and_checks_tensorrt_once(tmp_path, fake, counted, version):
    from clca_deploy.pipeline.build_trt import build_trt

    stack = fake(version)
    calls, conversions = counted
    logs = []
    result = build_trt(tiny_onnx(tmp_path / "m.onnx"), None, EngineConfig("fp16"), log=logs.append)
    assert conversions == [("m.onnx", "m.fp16.onnx")] and calls == [0]
    assert f"building from {tmp_path / 'm.fp16.onnx'}" in logs and result.path == str(tmp_path / "m.fp16.engine")
    sidecar = read_sidecar(result.path)
    assert sidecar["onnx_sha256"] == hashlib.sha256((tmp_path / "m.fp16.onnx").read_bytes()).hexdigest()
    assert sidecar["onnx_metadata"]["precision"] == "fp16" and sidecar["strongly_typed"] is True
    assert plan_of(result.path)["compute"] == "fp16" and not [c for c in stack.controls.calls if c[0] == "set_flag"]


def test_build_trt_weak_fp16_on_tensorrt_10_builds_the_fp32_file_with_the_flag(tmp_path, fake, counted):
    from clca_deploy.pipeline.build_trt import build_trt

    stack = fake(V10_3)
    calls, conversions = counted
    result = build_trt(tiny_onnx(tmp_path / "m.onnx"), tmp_path / "w.engine", EngineConfig("fp16", weak_typing=True), log=quiet)
    assert conversions == [] and calls == [0] and ("set_flag", "FP16") in stack.controls.calls
    assert read_sidecar(result.path)["onnx_metadata"]["precision"] == "fp32"
    fake(V11_4)
    with pytest.raises(ClcaDeployError, match="drop --weak-typing"):
        build_trt(tmp_path / "m.onnx", tmp_path / "x.engine", EngineConfig("fp16", weak_typing=True), log=quiet)
    assert conversions == [] and "x.engine" not in names_in(tmp_path)
    with pytest.raises(ClcaDeployError, match="--int8 from an FP32 ONNX needs calibration images: pass --data DIR"):
        build_trt(tmp_path / "m.onnx", tmp_path / "x.engine", EngineConfig("int8"), log=quiet)


def test_cli_build_trt_fp16_on_the_fakes(tmp_path, fake, counted):
    from typer.testing import CliRunner

    from clca_deploy.cli import app

    fake(V11_4)
    calls, conversions = counted
    onnx_path = tiny_onnx(tmp_path / "m.onnx")
    result = CliRunner().invoke(app, ["build-trt", str(onnx_path), "--fp16", "--batch", "1,2,4", "--timing-cache", str(tmp_path / "t.cache")])
    assert result.exit_code == 0, result.output
    assert f"wrote {tmp_path / 'm.fp16.engine'}" in result.output and "(fp16, strongly typed, TensorRT 11.4.0.106)" in result.output
    assert calls == [0] and conversions == [("m.onnx", "m.fp16.onnx")]
    assert read_sidecar(tmp_path / "m.fp16.engine")["profiles"] == [{"min": 1, "opt": 2, "max": 4}]


def build_trt_options() -> set[str]:
    import typer.main

    from clca_deploy.cli import app

    params = typer.main.get_command(app).commands["build-trt"].params
    return {option for param in params for option in (*param.opts, *param.secondary_opts) if option.startswith("--")}


def _mentioned_options(text: str) -> set[str]:
    return set(re.findall(r"build-trt`?\s+(--[a-z][a-z0-9-]*)", text))


def test_every_build_trt_option_the_library_mentions_exists():
    root = Path(__file__).resolve().parents[2] / "clca_deploy"
    mentioned = {
        f"{path.relative_to(root.parent)}: {option}"
        for path in root.rglob("*.py") for option in _mentioned_options(path.read_text())
    }
    assert mentioned, "the pattern no longer finds `build-trt --batch` in the runtime's hint"
    options = build_trt_options()
    assert [m for m in sorted(mentioned) if m.rsplit(": ", 1)[1] not in options] == [], f"build-trt has only {sorted(options)}"


def test_every_build_trt_option_in_plan_messages_exists():
    """The plan's errors compose `build-trt --{precision}`: render each one and check the option."""
    messages = []
    for version in ((10, 3, 0), (11, 4, 0)):
        for precision in PRECISIONS:
            for onnx_precision in PRECISIONS:
                for weak in (False, True):
                    try:
                        plan_build(version, precision, onnx_precision, weak_typing=weak)
                    except ClcaDeployError as exc:
                        messages.append(str(exc))
    options = build_trt_options()
    wrong = sorted({f"{option} in: {text}" for text in messages for option in _mentioned_options(text) if option not in options})
    assert wrong == [], f"build-trt has only {sorted(options)}"


# ---------------------------------------------------------------- the backend on both CUDA bindings


@pytest.fixture
def engine(tmp_path, fake):
    """An engine for batches 2..8 built on the fake 10.3 'Orin', and a function to reinstall the fakes."""
    fake(V10_3, devices=(("Orin", "8.7"),))
    path = tmp_path / "m.engine"
    build_engine(tiny_onnx(tmp_path / "m.onnx"), path, EngineConfig(batch=BatchProfile(2, 4, 8)), log=quiet)
    return path


@pytest.mark.parametrize("binding", BINDINGS)
def test_backend_runs_any_batch_in_the_profile_and_frees_everything(engine, fake, binding):
    stack = fake(V10_3, devices=(("Orin", "8.7"),))
    batch = images(19)
    expected = expected_logits(batch, 15)
    with open_backend(engine, cuda_binding=binding) as backend:
        assert backend.input_spec.batch is None and backend.description.precision == "fp32"
        assert backend.description.num_classes == 15 and backend.providers[0].endswith(f"Orin (8.7), {binding}")
        for count in (2, 5, 8):
            np.testing.assert_allclose(backend(batch[:count]), expected[:count], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(backend(batch), expected, rtol=1e-5, atol=1e-6)  # 19 > max 8: split in 8, 8, 3
        first = backend(batch[:2])
        backend(batch[2:4])
        np.testing.assert_allclose(first, expected[:2], rtol=1e-5, atol=1e-6)  # not overwritten by the next call
        with pytest.raises(ClcaDeployError, match=r"built for batches of 2\.\.8, got 1.*build-trt --batch"):
            backend(batch[:1])
        backend.close()
        backend.close()  # twice is harmless
    assert stack.gpu.live() == {key: 0 for key in stack.gpu.live()}
    assert stack.gpu.counts["alloc"] == stack.gpu.counts["free"] == 2 and stack.gpu.counts["stream"] == 1
    assert stack.controls.errors == [] and ("deserialize", 0) in stack.gpu.events


@pytest.mark.parametrize("binding", BINDINGS)
def test_backend_checks_the_sidecar_before_deserializing(engine, fake, binding):
    stack = fake(V10_13, devices=(("Orin", "8.7"),))
    with pytest.raises(ClcaDeployError) as error:
        TensorRTBackend(engine, TensorRTOptions(cuda_binding=binding))
    assert str(error.value) == (
        "engine built for TensorRT 10.3.0 on Orin (8.7); this machine runs TensorRT 10.13.3 on Orin (8.7): "
        "rebuild it here with `clca-deploy build-trt`."
    )
    stack = fake(V10_3, devices=(("Thor", "11.0"),))
    with pytest.raises(ClcaDeployError, match=r"on Orin \(8\.7\); this machine runs TensorRT 10\.3\.0 on Thor \(11\.0\)"):
        TensorRTBackend(engine, TensorRTOptions(cuda_binding=binding))
    assert not [e for e in stack.gpu.events if e[0] == "deserialize"] and stack.gpu.live()["primary_context_refs"] == 0
    stack = fake(V10_3, devices=(("Orin NX", "8.7"),))
    with pytest.warns(UserWarning, match="tuned on the other GPU"):
        backend = TensorRTBackend(engine, TensorRTOptions(cuda_binding=binding))
    with backend:
        assert backend.description.extra["warnings"] and backend(images(2)).shape == (2, 15)


@pytest.mark.parametrize("binding", BINDINGS)
def test_backend_refuses_an_engine_its_sidecar_does_not_describe(engine, fake, binding):
    stack = fake(V10_3, devices=(("Orin", "8.7"),))
    engine.write_bytes(engine.read_bytes() + b" ")
    with pytest.raises(ClcaDeployError, match="does not match its sidecar"):
        TensorRTBackend(engine, TensorRTOptions(cuda_binding=binding))
    assert not [e for e in stack.gpu.events if e[0] == "deserialize"]


@pytest.mark.parametrize("binding", BINDINGS)
def test_backend_serialises_calls_from_eight_threads(engine, fake, binding):
    stack = fake(V10_3, devices=(("Orin", "8.7"),))
    stack.gpu.delay = 5e-4
    wrong, lock = [], threading.Lock()
    with open_backend(engine, cuda_binding=binding) as backend:

        def work(seed):
            for count in (2, 7, 3, 12):
                batch = images(count, seed=seed * 10 + count)
                try:
                    ok = np.allclose(backend(batch), expected_logits(batch, 15), rtol=1e-5, atol=1e-6)
                except Exception as exc:  # noqa: BLE001 (reported below)
                    ok = repr(exc)
                if ok is not True:
                    with lock:
                        wrong.append((seed, count, ok))

        threads = [threading.Thread(target=work, args=(seed,)) for seed in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert wrong == [] and stack.gpu.live() == {key: 0 for key in stack.gpu.live()}


def test_backend_with_a_binding_that_is_not_installed(engine, fake):
    stack = fake(V10_3, devices=(("Orin", "8.7"),), bindings=("cuda-python",))
    with pytest.raises(UnsupportedError, match="the CUDA binding pycuda is not installed"):
        open_backend(engine, cuda_binding="pycuda")
    with open_backend(engine) as backend:
        assert backend.providers[0].endswith("cuda-python")
    assert stack.gpu.live()["primary_context_refs"] == 0


# ---------------------------------------------------------------- TensorRT's CUDA major against the driver's

CU13_WHEELS = {"tensorrt": V11_4, "tensorrt-cu13": V11_4, "tensorrt-cu13-libs": V11_4, "tensorrt-cu13-bindings": V11_4}
CU12_WHEELS = {"tensorrt-cu12": V10_13, "tensorrt-cu12-libs": V10_13, "tensorrt-cu12-bindings": V10_13}
CU13_ON_12_4 = (
    "TensorRT from tensorrt-cu13 11.4.0.106 is built for CUDA 13, but this NVIDIA driver supports CUDA 12.4 at most; "
    "pip uninstall -y tensorrt tensorrt-cu13 tensorrt-cu13-libs tensorrt-cu13-bindings, "
    'then pip install "clca-deploy[trt-cu12]" (or update the NVIDIA driver to r580 or newer)'
)


def on_driver(monkeypatch, stack, driver: str, wheels: dict[str, str]) -> None:
    """The fake GPU reports CUDA driver ``driver``; pip reports exactly ``wheels`` among TensorRT's distributions."""
    from dataclasses import replace

    from clca_deploy.system import checks
    from clca_deploy.tensorrt.toolkit import TENSORRT_DISTRIBUTIONS

    monkeypatch.setattr("clca_deploy.tensorrt.toolkit.gpu_info", lambda i=0: replace(stack.gpu_info(i), driver_version=driver))
    real = checks.dist_version
    monkeypatch.setattr(checks, "dist_version", lambda name: wheels.get(name) if name in TENSORRT_DISTRIBUTIONS else real(name))


def test_build_trt_refuses_a_tensorrt_built_for_a_newer_cuda_than_the_driver(tmp_path, fake, counted, monkeypatch, capsys):
    import sys

    from clca_deploy import cli
    from clca_deploy.pipeline.build_trt import build_trt

    stack = fake(V11_4)
    on_driver(monkeypatch, stack, "12.4", CU13_WHEELS)
    _, conversions = counted
    onnx_path = tiny_onnx(tmp_path / "m.onnx")
    with pytest.raises(UnsupportedError) as error:
        build_engine(onnx_path, tmp_path / "m.engine", EngineConfig(), log=quiet)
    assert str(error.value) == f"TensorRT cannot run here: {CU13_ON_12_4}."
    with pytest.raises(UnsupportedError) as error:
        build_trt(onnx_path, None, EngineConfig("fp16"), log=quiet)
    assert str(error.value) == f"TensorRT cannot run here: {CU13_ON_12_4}."
    monkeypatch.setattr(sys, "argv", ["clca-deploy", "build-trt", str(onnx_path), "--fp16"])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    assert exit_info.value.code == 2 and capsys.readouterr().err == f"error: TensorRT cannot run here: {CU13_ON_12_4}.\n"
    assert conversions == [] and names_in(tmp_path) == ["m.onnx"]
    assert "Builder" not in stack.recorders["tensorrt"].names and stack.gpu.live()["primary_context_refs"] == 0


@pytest.mark.parametrize("driver, wheels", [("12.4", CU12_WHEELS), ("13.0", CU12_WHEELS), ("13.0", CU13_WHEELS), ("12.4", {})])
def test_a_tensorrt_the_driver_runs_builds(tmp_path, fake, monkeypatch, driver, wheels):
    """CUDA 12 wheels on a CUDA 12 or 13 driver, CUDA 13 ones on a 13 driver; JetPack's TensorRT (no wheels) unchecked."""
    stack = fake(V10_13)
    on_driver(monkeypatch, stack, driver, wheels)
    result = build_engine(tiny_onnx(tmp_path / "m.onnx"), tmp_path / "m.engine", EngineConfig(), log=quiet)
    assert Path(result.path).is_file() and tensorrt_unavailable_reason() is None


def test_tensorrt_wheels_of_two_cuda_majors_are_refused(tmp_path, fake, monkeypatch):
    stack = fake(V10_13)
    on_driver(monkeypatch, stack, "13.0", {**CU12_WHEELS, **CU13_WHEELS})
    with pytest.raises(UnsupportedError) as error:
        build_engine(tiny_onnx(tmp_path / "m.onnx"), tmp_path / "m.engine", EngineConfig(), log=quiet)
    assert str(error.value) == (
        "TensorRT cannot run here: TensorRT wheels for CUDA 12 and CUDA 13 are both installed (tensorrt-cu12 "
        "10.13.3.9.post1 and tensorrt-cu13 11.4.0.106) and overwrite each other's tensorrt module; pip uninstall -y "
        "tensorrt tensorrt-cu12 tensorrt-cu12-libs tensorrt-cu12-bindings tensorrt-cu13 tensorrt-cu13-libs "
        'tensorrt-cu13-bindings, then pip install "clca-deploy[trt-cu13]".'
    )


def test_backend_refuses_a_tensorrt_built_for_a_newer_cuda_before_loading(engine, fake, monkeypatch):
    stack = fake(V10_3, devices=(("Orin", "8.7"),))
    on_driver(monkeypatch, stack, "12.4", CU13_WHEELS)
    with pytest.raises(UnsupportedError) as error:
        open_backend(engine)
    assert str(error.value) == f"cannot run m.engine (built for TensorRT 10.3.0 on Orin): TensorRT cannot run here: {CU13_ON_12_4}."
    assert not [e for e in stack.gpu.events if e[0] == "deserialize"] and stack.gpu.live()["primary_context_refs"] == 0


def null_factory(monkeypatch, stack, name: str, how: str) -> None:
    """``trt.<name>(logger)`` gives what TensorRT's bindings give when it cannot start CUDA: None, or pybind11's TypeError."""

    def factory(logger):
        if how == "raises":
            raise TypeError("pybind11::init(): factory function returned nullptr")
        return None

    monkeypatch.setattr(stack.trt, name, fakes.Namespace(stack.recorders["tensorrt"], name, constructor=factory))


STARTUP = (
    "TensorRT 10.13.3.9.post1 could not create its {name} on FakeGPU (CUDA driver 12.6): it could not start CUDA "
    "(this TensorRT is {built}); its messages above say why, and `clca-deploy doctor` checks the install."
)


@pytest.mark.parametrize("how", ["returns None", "raises"])
@pytest.mark.parametrize("name", ["Builder", "Runtime"])
def test_build_when_tensorrt_cannot_start_cuda_is_one_line(tmp_path, fake, monkeypatch, name, how):
    stack = fake(V10_13)
    null_factory(monkeypatch, stack, name, how)
    with pytest.raises(UnsupportedError) as error:
        build_engine(tiny_onnx(tmp_path / "m.onnx"), tmp_path / "m.engine", EngineConfig(), log=quiet)
    assert str(error.value) == STARTUP.format(name=name, built="not a pip wheel, so its CUDA is unknown here")
    assert names_in(tmp_path) == ["m.onnx"] and stack.gpu.live() == {key: 0 for key in stack.gpu.live()}


@pytest.mark.parametrize("how", ["returns None", "raises"])
def test_backend_when_tensorrt_cannot_start_cuda_is_one_line_and_frees_everything(tmp_path, fake, monkeypatch, how):
    stack = fake(V10_13)
    path = build_engine(tiny_onnx(tmp_path / "m.onnx"), tmp_path / "m.engine", EngineConfig(), log=quiet).path
    on_driver(monkeypatch, stack, "12.6", CU12_WHEELS)
    null_factory(monkeypatch, stack, "Runtime", how)
    with pytest.raises(UnsupportedError) as error:
        open_backend(path)
    assert str(error.value) == STARTUP.format(name="Runtime", built="built for CUDA 12")
    assert stack.gpu.live() == {key: 0 for key in stack.gpu.live()}


def test_other_type_errors_from_tensorrt_are_not_taken_for_a_cuda_failure(tmp_path, fake, monkeypatch):
    stack = fake(V10_13)

    def builder(logger):
        raise TypeError("__init__(): incompatible constructor arguments")

    monkeypatch.setattr(stack.trt, "Builder", fakes.Namespace(stack.recorders["tensorrt"], "Builder", constructor=builder))
    with pytest.raises(TypeError, match="incompatible constructor arguments"):
        build_engine(tiny_onnx(tmp_path / "m.onnx"), tmp_path / "m.engine", EngineConfig(), log=quiet)


# ---------------------------------------------------------------- real TensorRT (GPU machines only)

GOLDEN = "evit_deit_tiny_plain_k0.5_224"


@pytest.fixture(scope="module")
def real_engines(tmp_path_factory):
    """The golden fixture exported to ONNX, and fp32/fp16 engines built through build-trt's pipeline.

    FP16 goes through build_trt, which converts the FP32 ONNX first: build_engine alone refuses to
    build FP16 from an FP32 file (strongly typed builds; TensorRT 11 has no FP16 flag at all).
    """
    from clca_deploy.export import ExportConfig, export_onnx
    from clca_deploy.pipeline.build_trt import build_trt

    checkpoint, _, _ = load_golden(GOLDEN)
    folder = tmp_path_factory.mktemp("trt")
    onnx_path = folder / "plain.onnx"
    export_onnx(checkpoint, onnx_path, ExportConfig(), log=quiet)
    engines = {
        precision: build_trt(onnx_path, folder / f"plain.{precision}.engine", EngineConfig(precision, BatchProfile(1, 2, 4)), log=quiet).path
        for precision in ("fp32", "fp16")
    }
    return onnx_path, engines


def _reference(onnx_path, batch):
    with open_backend(onnx_path, "onnxruntime") as backend:
        return backend(batch)


def _assert_close(logits, expected, relative):
    """Within ``relative`` of the logit scale (this fixture's logits are ~0.06); top-1 equal where the margin allows."""
    atol = relative * np.abs(expected).max()
    np.testing.assert_allclose(logits, expected, atol=atol, rtol=0)
    top2 = np.sort(expected, axis=1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 2 * atol
    assert (logits.argmax(1) == expected.argmax(1))[clear].all()


@pytest.mark.trt
@pytest.mark.parametrize("precision, relative", [("fp32", 0.02), ("fp16", 0.05)])  # fp32 allows TF32 matmuls
@pytest.mark.parametrize("binding", BINDINGS)
def test_real_engine_matches_onnxruntime(real_engines, precision, relative, binding):
    from clca_deploy.tensorrt.cuda import installed_bindings

    if binding not in installed_bindings():
        pytest.skip(f"{binding} is not installed")
    onnx_path, engines = real_engines
    batch = np.concatenate([load_golden(GOLDEN)[2]["input"]] * 3)  # 6 images: also crosses the profile's max of 4
    with open_backend(engines[precision], cuda_binding=binding) as backend:
        logits = backend(batch)
        assert backend.description.precision == precision
    _assert_close(logits, _reference(onnx_path, batch), relative)


@pytest.mark.trt
def test_real_sidecar_describes_the_engine(real_engines):
    import tensorrt as trt

    sidecar = read_sidecar(real_engines[1]["fp16"])
    assert sidecar["tensorrt_version"] == trt.__version__ and sidecar["precision"] == "fp16" and sidecar["strongly_typed"]
    assert sidecar["onnx_metadata"]["precision"] == "fp16" and sidecar["builder_flags"] == []
    assert [e["name"] for e in sidecar["io"]] == ["images", "logits"] and sidecar["io"][0]["shape"][0] == -1
    assert sidecar["profiles"] == [{"min": 1, "opt": 2, "max": 4}]


@pytest.mark.trt
def test_real_engine_from_another_tensorrt_version_is_refused(real_engines, tmp_path):
    source = real_engines[1]["fp32"]
    engine = tmp_path / "old.engine"
    engine.write_bytes(Path(source).read_bytes())
    sidecar = read_sidecar(source)
    sidecar["tensorrt_version"] = "10.2.99"
    sidecar_path(engine).write_text(json.dumps(sidecar))
    with pytest.raises(ClcaDeployError, match=r"engine built for TensorRT 10\.2\.99 .* rebuild it here"):
        open_backend(engine)


@pytest.mark.trt
def test_real_int8_engine_from_qdq_onnx(real_engines, tmp_path, leaves_dir):
    calibration = pytest.importorskip("clca_deploy.calibration")
    onnx_path, _ = real_engines
    qdq = tmp_path / "plain.int8.onnx"
    calibration.quantize_int8(onnx_path, qdq, calibration.CalibrationConfig(data=leaves_dir, num_images=32), log=quiet)
    engine = build_engine(qdq, tmp_path / "plain.int8.engine", EngineConfig("int8", BatchProfile(1, 2, 4)), log=quiet)
    batch = load_golden(GOLDEN)[2]["input"]
    expected = _reference(qdq, batch)  # the same Q/DQ file on onnxruntime
    with open_backend(engine.path) as backend:
        logits = backend(batch)
    _assert_close(logits, expected, 0.25)  # same Q/DQ math, different int8 kernels and fusions

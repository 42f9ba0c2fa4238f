"""`build-trt --optimization-level` and `--dla-core`: the pure decisions, then the build and the backend on the fakes.

The decisions (clca_deploy.tensorrt.plan) take plain values: the TensorRT version, the engine's precision, whether
this is a Jetson, how many DLA cores the builder reports. The fake TensorRT carries the documented API they drive
(IBuilderConfig.builder_optimization_level, default_device_type, DLA_core, BuilderFlag.GPU_FALLBACK,
Builder.num_DLA_cores, Runtime.DLA_core), whose names test_binding_conformance checks against the real bindings.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from clca_deploy.errors import ClcaDeployError
from clca_deploy.runtime import open_backend
from clca_deploy.tensorrt.build import EngineConfig, build_engine
from clca_deploy.tensorrt.plan import check_builder_options, check_dla_cores, on_dla, plan_build
from clca_deploy.tensorrt.sidecar import load_sidecar, sidecar_path
from tests.tensorrt import fakes
from tests.tensorrt.fakes import expected_logits, tiny_onnx

V10_3, V11_4 = "10.3.0", "11.4.0.106"
JETPACK6 = (10, 3, 0)
quiet = lambda _: None  # noqa: E731


# ---------------------------------------------------------------- the decisions, without TensorRT


@pytest.mark.parametrize("level", [0, 3, 5])
@pytest.mark.parametrize("version", [(8, 6, 0), JETPACK6, (11, 4, 0)])
def test_optimization_level_from_tensorrt_8_6_on(version, level):
    check_builder_options(version, "fp32", None, level, on_jetson=False)


@pytest.mark.parametrize("version", [(8, 5, 3), (8, 4, 0)])
def test_optimization_level_is_refused_before_tensorrt_8_6(version):
    with pytest.raises(ClcaDeployError, match=r"^--optimization-level needs TensorRT 8\.6 or newer .*: drop it\.$"):
        check_builder_options(version, "fp32", None, 3, on_jetson=False)


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_dla_core_on_a_jetson_with_fp16_or_int8(precision):
    check_builder_options(JETPACK6, precision, 0, None, on_jetson=True)
    check_dla_cores(1, 2)


def test_dla_core_off_a_jetson_is_refused_in_one_line():
    with pytest.raises(ClcaDeployError) as error:
        check_builder_options(JETPACK6, "fp16", 0, None, on_jetson=False)
    assert str(error.value) == (
        "--dla-core needs a Jetson with DLA cores (AGX Orin, Orin NX); this machine is not a Jetson: drop --dla-core."
    )


def test_dla_core_for_an_fp32_engine_is_refused():
    with pytest.raises(ClcaDeployError, match=r"DLA runs fp16 and int8 layers only, so a fp32 engine .*add --fp16 or --int8"):
        check_builder_options(JETPACK6, "fp32", 1, None, on_jetson=True)


@pytest.mark.parametrize("core, available, message", [
    (0, 0, r"^--dla-core 0: TensorRT's builder reports no DLA core on this device .*: drop --dla-core\.$"),
    (2, 2, r"^--dla-core 2: this device has 2 DLA cores, 0\.\.1: pick one of them\.$"),
])
def test_dla_core_the_builder_does_not_report_is_refused(core, available, message):
    with pytest.raises(ClcaDeployError, match=message):
        check_dla_cores(core, available)


def test_no_dla_core_asks_nothing():
    check_builder_options(JETPACK6, "fp32", None, None, on_jetson=False)
    check_dla_cores(None, 0)
    plan = plan_build(JETPACK6, "fp32", "fp32")
    assert on_dla(plan, None) == plan


def test_dla_adds_gpu_fallback_to_the_plan():
    plan = on_dla(plan_build(JETPACK6, "fp16", "fp16"), 1)
    assert plan.builder_flags == ("GPU_FALLBACK",) and "DLA core 1" in plan.notes[-1]
    weak = on_dla(plan_build(JETPACK6, "fp16", "fp32", weak_typing=True), 0)
    assert weak.builder_flags == ("FP16", "GPU_FALLBACK")


@pytest.mark.parametrize("field, value, message", [
    ("optimization_level", 6, r"--optimization-level must be 0\.\.5"),
    ("optimization_level", -1, r"--optimization-level must be 0\.\.5"),
    ("optimization_level", True, r"--optimization-level must be 0\.\.5"),
    ("dla_core", -1, r"--dla-core must be a DLA core index"),
    ("dla_core", 16, r"--dla-core must be a DLA core index"),
])
def test_engine_config_refuses_out_of_range_options(field, value, message):
    with pytest.raises(ClcaDeployError, match=message):
        EngineConfig(**{field: value}).validate()


# ---------------------------------------------------------------- building on the fakes


@pytest.fixture
def fake(monkeypatch):
    """``fake(version, jetson=..., dla_cores=...)``: the fakes installed, this machine a Jetson or not."""

    def install(version=V10_3, jetson=True, dla_cores=2, **options):
        stack = fakes.install(monkeypatch, version, **options)
        stack.controls.dla_cores = dla_cores
        monkeypatch.setattr("clca_deploy.system.jetson.is_jetson", lambda: jetson)
        return stack

    return install


def plan_of(engine) -> dict:
    data = open(engine, "rb").read()
    return json.loads(data[len(fakes.PLAN_MAGIC):])


@pytest.mark.parametrize("version", [V10_3, V11_4])
def test_optimization_level_is_set_and_recorded(tmp_path, fake, version):
    fake(version)
    onnx_path = tiny_onnx(tmp_path / "m.onnx")
    result = build_engine(onnx_path, tmp_path / "m.engine", EngineConfig(optimization_level=1), log=quiet)
    assert plan_of(result.path)["optimization_level"] == 1 and result.optimization_level == 1
    sidecar = json.loads(sidecar_path(result.path).read_text())
    assert (sidecar["optimization_level"], sidecar["dla_core"]) == (1, None)
    default = build_engine(onnx_path, tmp_path / "d.engine", EngineConfig(), log=quiet)
    # What the builder used is recorded even when not asked for: TensorRT's default, 3.
    assert load_sidecar(default.path).optimization_level == 3 == plan_of(default.path)["optimization_level"]


@pytest.mark.parametrize("version", [V10_3, V11_4])
def test_dla_build_sets_the_device_the_core_and_gpu_fallback_and_runs_there(tmp_path, fake, version):
    stack = fake(version)
    onnx_path = tiny_onnx(tmp_path / "m.onnx", precision="fp16")
    result = build_engine(onnx_path, tmp_path / "m.engine", EngineConfig("fp16", dla_core=1), log=quiet)
    plan = plan_of(result.path)
    assert (plan["device_type"], plan["dla_core"], plan["flags"]) == ("DLA", 1, ["GPU_FALLBACK"])
    sidecar = load_sidecar(result.path)
    assert (sidecar.dla_core, sidecar.builder_flags, result.dla_core) == (1, ("GPU_FALLBACK",), 1)
    assert any("fall back to the GPU" in note for note in result.notes)
    batch = np.random.default_rng(0).standard_normal((3, 3, 32, 32)).astype(np.float32)
    with open_backend(result.path) as backend:  # the runtime runs it on the core its sidecar records
        np.testing.assert_allclose(backend(batch), expected_logits(batch, 15), rtol=1e-5, atol=1e-6)
        assert backend.description.extra["dla_core"] == 1
    with open_backend(result.path, dla_core=0) as backend:  # --dla-core picks another core
        backend(batch)
    deserialized = [call[1] for call in stack.controls.calls if call[0] == "deserialize_cuda_engine"]
    assert deserialized[-2:] == [1, 0] and stack.controls.errors == []


def test_dla_off_a_jetson_is_refused_before_tensorrt_builds(tmp_path, fake):
    stack = fake(jetson=False)
    onnx_path = tiny_onnx(tmp_path / "m.onnx", precision="fp16")
    with pytest.raises(ClcaDeployError, match="this machine is not a Jetson: drop --dla-core"):
        build_engine(onnx_path, tmp_path / "m.engine", EngineConfig("fp16", dla_core=0), log=quiet)
    assert stack.controls.calls == [] and sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


@pytest.mark.parametrize("cores, core, message", [
    (0, 0, "TensorRT's builder reports no DLA core on this device"),
    (2, 3, "this device has 2 DLA cores, 0..1"),
])
def test_dla_core_the_builder_lacks_is_refused_before_parsing(tmp_path, fake, cores, core, message):
    stack = fake(dla_cores=cores)
    onnx_path = tiny_onnx(tmp_path / "m.onnx", precision="int8")
    with pytest.raises(ClcaDeployError, match=message):
        build_engine(onnx_path, tmp_path / "m.engine", EngineConfig("int8", dla_core=core), log=quiet)
    assert [call for call in stack.controls.calls if call[0] == "create_network"] == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


def test_runtime_dla_core_on_a_device_without_dla_is_refused(tmp_path, fake):
    fake(dla_cores=0)
    engine = build_engine(tiny_onnx(tmp_path / "m.onnx"), tmp_path / "m.engine", EngineConfig(), log=quiet).path
    with pytest.raises(ClcaDeployError, match=r"^--dla-core 1: TensorRT's runtime reports no DLA core .*: drop --dla-core\.$"):
        open_backend(engine, dla_core=1)


def test_build_trt_refuses_dla_before_converting(tmp_path, fake, monkeypatch):
    from clca_deploy.pipeline.build_trt import build_trt

    fake(jetson=False)
    monkeypatch.setattr("clca_deploy.calibration.to_fp16", lambda *a, **k: pytest.fail("converted before checking --dla-core"))
    with pytest.raises(ClcaDeployError, match="not a Jetson"):
        build_trt(tiny_onnx(tmp_path / "m.onnx"), None, EngineConfig("fp16", dla_core=0), log=quiet)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


def test_cli_build_trt_with_dla_core_and_optimization_level(tmp_path, fake):
    from typer.testing import CliRunner

    from clca_deploy.cli import app

    fake()
    onnx_path = tiny_onnx(tmp_path / "m.onnx", precision="fp16")
    args = ["build-trt", str(onnx_path), "--dla-core", "1", "--optimization-level", "4", "-o", str(tmp_path / "m.engine")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "(fp16, strongly typed, DLA core 1, TensorRT 10.3.0)" in result.output
    assert (plan_of(tmp_path / "m.engine")["optimization_level"], load_sidecar(tmp_path / "m.engine").dla_core) == (4, 1)


@pytest.mark.parametrize("args, message", [
    (["--optimization-level", "6"], "--optimization-level must be 0..5"),
    (["--dla-core", "0"], "this machine is not a Jetson: drop --dla-core"),
])
def test_cli_build_trt_refusals_are_one_line(tmp_path, fake, monkeypatch, capsys, args, message):
    from clca_deploy import cli

    fake(jetson=False)
    onnx_path = tiny_onnx(tmp_path / "m.onnx", precision="fp16")
    monkeypatch.setattr(sys, "argv", ["clca-deploy", "build-trt", str(onnx_path), *args])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.startswith("error: ") and err.count("\n") == 1 and message in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]

"""The engine sidecar, without TensorRT: its contents, reading it back, and the compatibility check."""

from __future__ import annotations

import json

import pytest

from clca_deploy.errors import ClcaDeployError
from clca_deploy.tensorrt.plan import BatchProfile, plan_build
from clca_deploy.tensorrt.sidecar import (
    SIDECAR_FORMAT,
    build_sidecar,
    check_sidecar_matches,
    load_sidecar,
    parse_sidecar,
    sidecar_path,
    trt_release,
)

JETPACK6 = (10, 3, 0)
# What `clca-deploy export` writes for a 224 px, 15-class model (the keys parse_metadata requires).
METADATA = {
    "clca_deploy.format": "1", "clca_deploy.version": "0.1.0", "family": "clca", "model": "evit_deit_tiny_patch16_224",
    "method": "evit", "backbone": "deit_tiny_patch16_224", "keep_rate": "[0.5]", "trained_keep_rate": "[0.5]",
    "reduction_loc": "[3, 6, 9]", "token_schedule": "[[197, 197], [197, 99]]", "img_size": "224", "resize_size": "256",
    "interpolation": "bicubic", "mean": "[0.485, 0.456, 0.406]", "std": "[0.229, 0.224, 0.225]", "num_classes": "15",
    "clca_config": "{}", "precision": "fp32",
}


def _checked(**changes):
    return parse_sidecar(_sidecar(**changes), "m.engine.json")


def _sidecar(**changes):
    sidecar = build_sidecar(
        tensorrt_version="10.3.0.26", gpu_name="Orin", compute_capability="8.7",
        plan=plan_build(JETPACK6, "fp16", "fp32", weak_typing=True),
        io=[{"name": "images", "mode": "input", "dtype": "float32", "shape": [-1, 3, 224, 224]},
            {"name": "logits", "mode": "output", "dtype": "float32", "shape": [-1, 15]}],
        profiles=[BatchProfile(1, 8, 32)], onnx_sha256="ab" * 32, keep_rate=(0.5, 0.5, 0.5),
        onnx_metadata=METADATA, engine_sha256="cd" * 32,
    )
    sidecar.update(changes)
    return sidecar


def test_sidecar_contents_are_json():
    sidecar = _sidecar()
    assert json.loads(json.dumps(sidecar)) == sidecar
    expected = {
        "format", "tensorrt_version", "gpu_name", "compute_capability", "precision", "builder_flags", "strongly_typed",
        "notes", "io", "profiles", "onnx_sha256", "engine_sha256", "keep_rate", "onnx_metadata", "dla_core",
        "optimization_level",
    }
    assert set(sidecar) == expected
    assert sidecar["format"] == SIDECAR_FORMAT == "clca_deploy.engine/1"
    assert sidecar["precision"] == "fp16" and sidecar["builder_flags"] == ["FP16"] and sidecar["strongly_typed"] is False
    assert sidecar["profiles"] == [{"min": 1, "opt": 8, "max": 32}]


def test_sidecar_matches_same_machine():
    assert check_sidecar_matches(_checked(), "10.3.0.26", "Orin", "8.7") is None


def test_sidecar_from_another_tensorrt_build_is_refused_with_the_build_numbers():
    # A plan is tied to the exact TensorRT build: 10.3.0.26 and 10.3.0.30 are different versions to TensorRT.
    with pytest.raises(ClcaDeployError) as err:
        check_sidecar_matches(_checked(), "10.3.0.30", "Orin", "8.7")
    assert str(err.value) == (
        "engine built for TensorRT 10.3.0.26 on Orin (8.7); this machine runs TensorRT 10.3.0.30 on Orin (8.7): "
        "a plan loads only on the exact TensorRT build that made it; rebuild it here with `clca-deploy build-trt`."
    )


@pytest.mark.parametrize("built, running", [
    ("10.13.3.9", "10.13.3.9.post1"),  # a pip wheel's suffix is not a TensorRT build
    ("10.3.0", "10.3.0.30"),  # no build recorded: nothing to compare it with, TensorRT's own check remains
    ("10.3.0.30", "10.3.0"),
])
def test_versions_without_a_differing_build_match(built, running):
    assert check_sidecar_matches(_checked(tensorrt_version=built), running, "Orin", "8.7") is None


@pytest.mark.parametrize("text, release", [
    ("10.3.0.30", (10, 3, 0, 30)), ("10.13.3.9.post1", (10, 13, 3, 9)), ("11.4.0.106", (11, 4, 0, 106)),
    ("10.3.0", (10, 3, 0)), ("10.3", (10, 3, 0)), (" 8.6.1.6 ", (8, 6, 1, 6)),
])
def test_trt_release_reads_the_build_number(text, release):
    assert trt_release(text) == release


def test_trt_release_refuses_what_is_not_a_version():
    with pytest.raises(ClcaDeployError, match="cannot read a TensorRT version"):
        trt_release("ten")


def test_sidecar_from_another_tensorrt_version_is_refused():
    with pytest.raises(ClcaDeployError) as err:
        check_sidecar_matches(_checked(), "10.13.0.35", "Orin", "8.7")
    assert str(err.value) == (
        "engine built for TensorRT 10.3.0 on Orin (8.7); this machine runs TensorRT 10.13.0 on Orin (8.7): "
        "rebuild it here with `clca-deploy build-trt`."
    )


def test_sidecar_from_another_gpu_architecture_is_refused():
    with pytest.raises(ClcaDeployError, match=r"on Orin \(8\.7\); this machine runs TensorRT 10\.3\.0 on Thor \(11\.0\)"):
        check_sidecar_matches(_checked(), "10.3.0.26", "Thor", "11.0")


def test_sidecar_from_another_gpu_model_of_the_same_architecture_warns():
    warning = check_sidecar_matches(_checked(gpu_name="Orin (AGX)"), "10.3.0.26", "Orin (NX)", "8.7")
    assert "Orin (AGX)" in warning and "Orin (NX)" in warning and "build-trt" in warning


def test_sidecar_without_version_is_refused():
    sidecar = _sidecar()
    del sidecar["tensorrt_version"]
    with pytest.raises(ClcaDeployError, match="tensorrt_version is None, expected text.*build-trt"):
        parse_sidecar(sidecar, "m.engine.json")


def test_builder_options_in_the_sidecar_are_read_back_and_optional():
    checked = _checked(dla_core=1, optimization_level=5)
    assert (checked.dla_core, checked.optimization_level) == (1, 5)
    assert checked.to_dict()["dla_core"] == 1 and checked.to_dict()["optimization_level"] == 5
    older = _sidecar()
    del older["dla_core"], older["optimization_level"]  # sidecars written before these were recorded
    assert (parse_sidecar(older, "m.engine.json").dla_core, parse_sidecar(older, "m.engine.json").optimization_level) == (None, None)


@pytest.mark.parametrize("key, value", [
    ("dla_core", -1), ("dla_core", 16), ("dla_core", "0"), ("dla_core", True), ("dla_core", 1.0),
    ("optimization_level", 6), ("optimization_level", -1), ("optimization_level", "3"), ("optimization_level", False),
])
def test_crafted_builder_options_in_a_sidecar_are_refused(key, value):
    with pytest.raises(ClcaDeployError, match=rf"m\.engine\.json is damaged: {key} is .*, expected null or .*build-trt"):
        _checked(**{key: value})


def test_load_sidecar(tmp_path):
    engine = tmp_path / "m.fp16.engine"
    engine.write_bytes(b"plan")
    assert sidecar_path(engine) == tmp_path / "m.fp16.engine.json"
    with pytest.raises(ClcaDeployError, match=r"no sidecar m\.fp16\.engine\.json.*build-trt"):
        load_sidecar(engine)
    sidecar_path(engine).write_text("{not json")
    with pytest.raises(ClcaDeployError, match="cannot read"):
        load_sidecar(engine)
    sidecar_path(engine).write_text(json.dumps({"format": "something/else"}))
    with pytest.raises(ClcaDeployError, match="not a clca_deploy.engine/1 sidecar"):
        load_sidecar(engine)
    sidecar_path(engine).write_text(json.dumps(_sidecar()))
    loaded = load_sidecar(engine)
    assert loaded.to_dict() == _sidecar() and loaded == _checked()
    assert (loaded.input.shape, loaded.output.shape, loaded.profile) == ((-1, 3, 224, 224), (-1, 15), BatchProfile(1, 8, 32))
    assert (loaded.info.img_size, loaded.info.num_classes) == (224, 15)


# ---------------------------------------------------------------- the check in the backend, through the fakes


@pytest.mark.parametrize("binding", ["pycuda", "cuda-python"])
def test_backend_refuses_another_tensorrt_build_before_deserializing(tmp_path, monkeypatch, binding):
    from clca_deploy.runtime.tensorrt_backend import TensorRTBackend, TensorRTOptions
    from clca_deploy.tensorrt.build import EngineConfig, build_engine
    from tests.tensorrt import fakes

    fakes.install(monkeypatch, "10.3.0.26", devices=(("Orin", "8.7"),))
    engine = tmp_path / "m.engine"
    config = EngineConfig(batch=BatchProfile(1, 2, 4))
    build_engine(fakes.tiny_onnx(tmp_path / "m.onnx"), engine, config, log=lambda _: None)
    stack = fakes.install(monkeypatch, "10.3.0.30", devices=(("Orin", "8.7"),))
    with pytest.raises(ClcaDeployError) as error:
        TensorRTBackend(engine, TensorRTOptions(cuda_binding=binding))
    message = str(error.value)
    assert "\n" not in message and message == (
        "engine built for TensorRT 10.3.0.26 on Orin (8.7); this machine runs TensorRT 10.3.0.30 on Orin (8.7): "
        "a plan loads only on the exact TensorRT build that made it; rebuild it here with `clca-deploy build-trt`."
    )
    # Refused by the sidecar: TensorRT never saw the plan (its own refusal would name no rebuild command).
    assert not [event for event in stack.gpu.events if event[0] == "deserialize"]
    assert stack.controls.errors == [] and stack.gpu.live()["primary_context_refs"] == 0

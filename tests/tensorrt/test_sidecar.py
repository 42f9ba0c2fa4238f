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
        "notes", "io", "profiles", "onnx_sha256", "engine_sha256", "keep_rate", "onnx_metadata",
    }
    assert set(sidecar) == expected
    assert sidecar["format"] == SIDECAR_FORMAT == "clca_deploy.engine/1"
    assert sidecar["precision"] == "fp16" and sidecar["builder_flags"] == ["FP16"] and sidecar["strongly_typed"] is False
    assert sidecar["profiles"] == [{"min": 1, "opt": 8, "max": 32}]


def test_sidecar_matches_same_machine():
    # Only major.minor.patch matters: the build number of a TensorRT wheel is not part of plan compatibility.
    assert check_sidecar_matches(_checked(), "10.3.0.30", "Orin", "8.7") is None


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
    warning = check_sidecar_matches(_checked(gpu_name="Orin (AGX)"), "10.3.0", "Orin (NX)", "8.7")
    assert "Orin (AGX)" in warning and "Orin (NX)" in warning and "build-trt" in warning


def test_sidecar_without_version_is_refused():
    sidecar = _sidecar()
    del sidecar["tensorrt_version"]
    with pytest.raises(ClcaDeployError, match="tensorrt_version is None, expected text.*build-trt"):
        parse_sidecar(sidecar, "m.engine.json")


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

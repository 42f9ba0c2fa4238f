"""`clca-deploy info` on deployable files: an ONNX export and an engine (through its sidecar), no runtime needed."""

from __future__ import annotations

import json

import pytest

from clca_deploy.errors import ClcaDeployError
from clca_deploy.metadata import read_onnx_metadata
from clca_deploy.runtime.describe import describe_model_file
from clca_deploy.tensorrt.plan import BatchProfile, plan_build
from clca_deploy.tensorrt.sidecar import build_sidecar, sidecar_path


def test_describe_onnx_export(plain_onnx):
    _, onnx_path = plain_onnx
    described = describe_model_file(onnx_path)
    # The plain EViT golden fixture: deit tiny, 15 classes, keep 0.5 at 224 px (its README).
    assert (described.kind, described.model, described.precision) == ("onnx", "evit_deit_tiny_patch16_224", "fp32")
    assert (described.img_size, described.num_classes, described.keep_rate, described.batch) == (224, 15, (0.5,), "dynamic")
    assert described.token_schedule[0] == (197, 197) and described.token_schedule[-1] == (28, 28)
    assert described.details["input"] == "images" and described.details["outputs"] == ["logits"]
    assert described.details["quantize_dequantize_pairs"] == 0 and described.details["weights_inside"] is True
    json.dumps(described.to_dict())


def test_describe_engine_through_its_sidecar(plain_onnx, tmp_path):
    _, onnx_path = plain_onnx
    engine = tmp_path / "plain.fp16.engine"
    engine.write_bytes(b"not a real plan: describe never opens it")
    props = {key: value for key, value in _props(onnx_path).items()}
    sidecar = build_sidecar(
        tensorrt_version="10.3.0.30", gpu_name="Orin", compute_capability="8.7",
        plan=plan_build((10, 3, 0), "fp16", "fp16"),
        io=[{"name": "images", "mode": "input", "dtype": "float32", "shape": [-1, 3, 224, 224]},
            {"name": "logits", "mode": "output", "dtype": "float32", "shape": [-1, 15]}],
        profiles=[BatchProfile(1, 8, 32)],
        onnx_sha256="ab" * 32, keep_rate=(0.5,), onnx_metadata=props, engine_sha256="cd" * 32,
    )
    sidecar_path(engine).write_text(json.dumps(sidecar))
    described = describe_model_file(engine)
    assert (described.kind, described.batch, described.details["tensorrt_version"]) == ("tensorrt engine", "1..32 (opt 8)", "10.3.0.30")
    assert described.details["strongly_typed"] is True and described.details["gpu_name"] == "Orin"
    assert described.model == read_onnx_metadata(onnx_path).model
    assert [entry["shape"] for entry in described.details["io"]] == [[-1, 3, 224, 224], [-1, 15]]
    json.dumps(described.to_dict())


def _props(onnx_path):
    from clca_deploy.metadata import load_onnx_structure, metadata_props

    return metadata_props(load_onnx_structure(onnx_path))


@pytest.mark.parametrize("name, message", [("model.pth", "not an .onnx file or an engine"), ("missing.onnx", "not found")])
def test_describe_refuses_other_files(tmp_path, name, message):
    if name.endswith(".pth"):
        (tmp_path / name).write_bytes(b"x")
    with pytest.raises(ClcaDeployError, match=message):
        describe_model_file(tmp_path / name)


def test_describe_engine_without_sidecar(tmp_path):
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"plan")
    with pytest.raises(ClcaDeployError, match="no sidecar"):
        describe_model_file(engine)

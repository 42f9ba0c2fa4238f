"""The TensorRT build rules, without TensorRT: version gate, precision plans, batch profiles, sidecars."""

from __future__ import annotations

import itertools
import json

import pytest

from clca_deploy.errors import ClcaDeployError
from clca_deploy.export.trt_plan import (
    DEFAULT_PROFILE,
    PRECISIONS,
    SIDECAR_FORMAT,
    BatchProfile,
    BuildPlan,
    build_sidecar,
    check_sidecar_matches,
    load_sidecar,
    parse_batch_profile,
    parse_trt_version,
    plan_build,
    profile_for,
    sidecar_path,
)

JETPACK6, JETPACK7, TRT11 = (10, 3, 0), (10, 13, 0), (11, 0, 0)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("10.3.0.26", (10, 3, 0)),
        ("10.13.0.35", (10, 13, 0)),
        ("11.0.0", (11, 0, 0)),
        ("10.3", (10, 3, 0)),
        (" 10.7.0.post1 ", (10, 7, 0)),
        ("11.1.0rc2", (11, 1, 0)),
    ],
)
def test_parse_trt_version(text, expected):
    assert parse_trt_version(text) == expected


@pytest.mark.parametrize("text", ["", "ten", "10", "v10.3", "10.x", "10..3", None])
def test_parse_trt_version_rejects_garbage(text):
    with pytest.raises(ClcaDeployError, match="TensorRT version"):
        parse_trt_version(text)


# TensorRT 10.x (weakly typed): (requested, onnx) -> builder flags, or None for an error.
TRT10_TABLE = {
    ("fp32", "fp32"): (),
    ("fp32", "fp16"): None,
    ("fp32", "int8"): None,
    ("fp16", "fp32"): ("FP16",),
    ("fp16", "fp16"): ("FP16",),
    ("fp16", "int8"): None,
    ("int8", "fp32"): None,
    ("int8", "fp16"): None,
    ("int8", "int8"): ("INT8",),
}


@pytest.mark.parametrize("version", [JETPACK6, JETPACK7, (10, 15, 1)])
@pytest.mark.parametrize("requested, onnx", list(TRT10_TABLE))
def test_tensorrt_10_plans(version, requested, onnx):
    flags = TRT10_TABLE[(requested, onnx)]
    if flags is None:
        with pytest.raises(ClcaDeployError):
            plan_build(version, requested, onnx)
        return
    plan = plan_build(version, requested, onnx)
    assert plan == BuildPlan(strongly_typed=False, builder_flags=flags, precision=requested, notes=plan.notes)


def test_tensorrt_10_int8_uses_int8_flag_only():
    # FP16 would let TensorRT 10 run the float-kept LayerNorm/Softmax of a Q/DQ file in fp16.
    plan = plan_build(JETPACK6, "int8", "int8")
    assert plan.builder_flags == ("INT8",) and "FP16" not in plan.builder_flags
    assert any("fp32" in note for note in plan.notes)


def test_tensorrt_10_fp16_warns_about_weak_typing():
    for onnx in ("fp32", "fp16"):
        notes = " ".join(plan_build(JETPACK7, "fp16", onnx).notes)
        assert "weakly typed" in notes and "LayerNorm" in notes
    assert "calibrate --fp16" in " ".join(plan_build(JETPACK7, "fp16", "fp32").notes)


@pytest.mark.parametrize(
    "requested, onnx, hint",
    [
        ("int8", "fp32", "run `clca-deploy calibrate` to get a Q/DQ INT8 ONNX"),
        ("int8", "fp16", "run `clca-deploy calibrate` to get a Q/DQ INT8 ONNX"),
        ("fp32", "int8", "build from the FP32 ONNX written by `clca-deploy export`"),
        ("fp16", "int8", "clca-deploy calibrate --fp16"),
        ("fp32", "fp16", "build from the FP32 ONNX"),
    ],
)
def test_tensorrt_10_errors_say_which_file_to_build_from(requested, onnx, hint):
    with pytest.raises(ClcaDeployError) as err:
        plan_build(JETPACK6, requested, onnx)
    assert hint in str(err.value)


@pytest.mark.parametrize("version", [TRT11, (11, 4, 1), (12, 0, 0)])
@pytest.mark.parametrize("requested, onnx", list(itertools.product(PRECISIONS, PRECISIONS)))
def test_tensorrt_11_is_strongly_typed_and_precision_comes_from_the_onnx(version, requested, onnx):
    if requested != onnx:
        with pytest.raises(ClcaDeployError, match="strongly typed networks, so precision comes from the ONNX"):
            plan_build(version, requested, onnx)
        return
    assert plan_build(version, requested, onnx) == BuildPlan(strongly_typed=True, builder_flags=(), precision=requested)


@pytest.mark.parametrize(
    "requested, onnx, hint",
    [
        ("int8", "fp32", "run `clca-deploy calibrate` to get a Q/DQ INT8 ONNX"),
        ("fp16", "fp32", "export an FP16 ONNX with `clca-deploy calibrate --fp16`"),
        ("fp32", "int8", "build from the FP32 ONNX written by `clca-deploy export`"),
    ],
)
def test_tensorrt_11_errors_say_which_file_to_build_from(requested, onnx, hint):
    with pytest.raises(ClcaDeployError) as err:
        plan_build(TRT11, requested, onnx)
    assert hint in str(err.value) and f"holds {onnx}, not {requested}" in str(err.value)


@pytest.mark.parametrize("version", [(8, 6, 1), (9, 3, 0), (10, 0, 1), (10, 2, 0)])
def test_old_tensorrt_is_refused(version):
    with pytest.raises(ClcaDeployError, match=r"TensorRT 10\.3 or newer is required"):
        plan_build(version, "fp32", "fp32")


@pytest.mark.parametrize("version", [JETPACK6, JETPACK7, TRT11])
@pytest.mark.parametrize("requested, onnx", list(itertools.product(PRECISIONS, PRECISIONS)))
def test_precision_is_never_silently_downgraded(version, requested, onnx):
    try:
        plan = plan_build(version, requested, onnx)
    except ClcaDeployError:
        return
    assert plan.precision == requested
    if version[0] >= 11:
        assert plan.builder_flags == () and plan.strongly_typed


@pytest.mark.parametrize("bad", [("fp8", "fp32"), ("fp32", "bf16"), ("FP16", "fp16")])
def test_unknown_precision_names(bad):
    with pytest.raises(ClcaDeployError, match="unknown"):
        plan_build(JETPACK6, *bad)


@pytest.mark.parametrize(
    "text, expected",
    [("1,8,32", BatchProfile(1, 8, 32)), (" 2 , 4 , 4 ", BatchProfile(2, 4, 4)), ("8", BatchProfile(8, 8, 8))],
)
def test_parse_batch_profile(text, expected):
    assert parse_batch_profile(text) == expected


@pytest.mark.parametrize("text", ["", "0,1,2", "8,4,32", "1,64,32", "1,8", "1,8,32,64", "a,b,c", "-1,2,3", "1.5,2,3"])
def test_parse_batch_profile_rejects(text):
    with pytest.raises(ClcaDeployError, match="batch"):
        parse_batch_profile(text)


def test_batch_profile_checks_direct_construction():
    with pytest.raises(ClcaDeployError):
        BatchProfile(1.5, 2, 3)
    with pytest.raises(ClcaDeployError):
        BatchProfile(True, 2, 3)
    assert BatchProfile(1, 8, 32).to_dict() == {"min": 1, "opt": 8, "max": 32}


def test_profile_for():
    assert profile_for(None, None) == DEFAULT_PROFILE == BatchProfile(1, 8, 32)
    assert profile_for(None, BatchProfile(1, 2, 4)) == BatchProfile(1, 2, 4)
    assert profile_for(4, None) == BatchProfile(4, 4, 4)
    assert profile_for(4, BatchProfile(4, 4, 4)) == BatchProfile(4, 4, 4)
    with pytest.raises(ClcaDeployError, match="exported for batch 4 only"):
        profile_for(4, BatchProfile(1, 8, 32))


def _sidecar(**changes):
    sidecar = build_sidecar(
        tensorrt_version="10.3.0.26", gpu_name="Orin", compute_capability="8.7",
        plan=plan_build(JETPACK6, "fp16", "fp32"),
        io=[{"name": "images", "mode": "input", "dtype": "float32", "shape": [-1, 3, 224, 224]},
            {"name": "logits", "mode": "output", "dtype": "float32", "shape": [-1, 15]}],
        profiles=[BatchProfile(1, 8, 32)], onnx_sha256="ab" * 32, keep_rate=(0.5, 0.5, 0.5),
        onnx_metadata={"clca_deploy.format": "1", "model": "evit"}, engine_sha256="cd" * 32,
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
    assert check_sidecar_matches(_sidecar(), "10.3.0.30", "Orin", "8.7") is None


def test_sidecar_from_another_tensorrt_version_is_refused():
    with pytest.raises(ClcaDeployError) as err:
        check_sidecar_matches(_sidecar(), "10.13.0.35", "Orin", "8.7")
    assert str(err.value) == (
        "engine built for TensorRT 10.3.0 on Orin (8.7); this machine runs TensorRT 10.13.0 on Orin (8.7): "
        "rebuild it here with `clca-deploy build-trt`."
    )


def test_sidecar_from_another_gpu_architecture_is_refused():
    with pytest.raises(ClcaDeployError, match=r"on Orin \(8\.7\); this machine runs TensorRT 10\.3\.0 on Thor \(11\.0\)"):
        check_sidecar_matches(_sidecar(), "10.3.0.26", "Thor", "11.0")


def test_sidecar_from_another_gpu_model_of_the_same_architecture_warns():
    warning = check_sidecar_matches(_sidecar(gpu_name="Orin (AGX)"), "10.3.0", "Orin (NX)", "8.7")
    assert "Orin (AGX)" in warning and "Orin (NX)" in warning and "build-trt" in warning


def test_sidecar_without_version_is_refused():
    sidecar = _sidecar()
    del sidecar["tensorrt_version"]
    with pytest.raises(ClcaDeployError, match="tensorrt_version.*build-trt"):
        check_sidecar_matches(sidecar, "10.3.0", "Orin", "8.7")


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
    assert load_sidecar(engine) == _sidecar()


def test_build_trt_cli_without_tensorrt_fails_before_any_work(tmp_path, monkeypatch, capsys):
    """No TensorRT/GPU here: one line naming what is missing and how to install it; nothing written."""
    import sys

    from clca_deploy import cli
    from clca_deploy.capabilities import tensorrt_skip_reason

    if tensorrt_skip_reason() is None:
        pytest.skip("TensorRT and a GPU are present")
    model = tmp_path / "m.onnx"
    model.write_bytes(b"not even read")
    monkeypatch.setattr(sys, "argv", ["clca-deploy", "build-trt", str(model), "--int8", "--data", str(tmp_path)])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and 'pip install "clca-deploy[trt]"' in err and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]

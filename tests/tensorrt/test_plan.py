"""The TensorRT build rules, without TensorRT: version gate, precision plans, batch profiles, sidecars."""

from __future__ import annotations

import itertools
import re

import pytest

from clca_deploy.errors import ClcaDeployError
from clca_deploy.tensorrt.plan import (
    DEFAULT_PROFILE,
    PRECISIONS,
    BatchProfile,
    BuildPlan,
    build_mode_summary,
    parse_batch_profile,
    parse_trt_version,
    plan_build,
    profile_for,
    profile_option,
    profile_reaching,
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


# The default plan on every version: strongly typed, precision from the ONNX file, no builder flags.
@pytest.mark.parametrize("version", [JETPACK6, JETPACK7, (10, 15, 1), TRT11, (11, 4, 1), (12, 0, 0)])
@pytest.mark.parametrize("requested, onnx", list(itertools.product(PRECISIONS, PRECISIONS)))
def test_default_plan_is_strongly_typed_on_every_version(version, requested, onnx):
    if requested != onnx:
        with pytest.raises(ClcaDeployError, match="strongly typed, so precision comes from the ONNX file"):
            plan_build(version, requested, onnx)
        return
    plan = plan_build(version, requested, onnx)
    assert (plan.strongly_typed, plan.builder_flags, plan.precision) == (True, (), requested)


def test_tensorrt_10_and_11_plans_are_the_same_for_the_same_file():
    # So a JetPack 6 engine and a TensorRT 11 engine of one ONNX file compute in the same types.
    for precision in PRECISIONS:
        assert plan_build(JETPACK6, precision, precision) == plan_build(TRT11, precision, precision)


@pytest.mark.parametrize(
    "requested, onnx, hint",
    [
        ("int8", "fp32", "run `clca-deploy calibrate` to get a Q/DQ INT8 ONNX"),
        ("fp16", "fp32", "export an FP16 ONNX with `clca-deploy calibrate --fp16`"),
        ("fp32", "int8", "build from the FP32 ONNX written by `clca-deploy export`"),
        ("fp32", "fp16", "build from the FP32 ONNX written by `clca-deploy export`"),
    ],
)
@pytest.mark.parametrize("version", [JETPACK6, TRT11])
def test_strong_typing_errors_say_which_file_to_build_from(version, requested, onnx, hint):
    with pytest.raises(ClcaDeployError) as err:
        plan_build(version, requested, onnx)
    assert hint in str(err.value) and f"holds {onnx}, not {requested}" in str(err.value)
    # Only the FP32 export can be converted by build-trt itself; it never offers --fp32.
    offered = {("fp16", "fp32"): "build-trt --fp16`", ("int8", "fp32"): "build-trt --int8 --data DIR`"}
    if (requested, onnx) in offered:
        assert offered[(requested, onnx)] in str(err.value)
    else:
        assert "convert it first" not in str(err.value)


# TensorRT 10.x with --weak-typing: (requested, onnx) -> builder flags, or None for an error.
WEAK_TABLE = {
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
@pytest.mark.parametrize("requested, onnx", list(WEAK_TABLE))
def test_weak_typing_plans_on_tensorrt_10(version, requested, onnx):
    flags = WEAK_TABLE[(requested, onnx)]
    if flags is None:
        with pytest.raises(ClcaDeployError):
            plan_build(version, requested, onnx, weak_typing=True)
        return
    plan = plan_build(version, requested, onnx, weak_typing=True)
    assert plan == BuildPlan(strongly_typed=False, builder_flags=flags, precision=requested, notes=plan.notes)


def test_weak_typing_int8_uses_int8_flag_only():
    # FP16 would let TensorRT 10 run the float-kept LayerNorm/Softmax of a Q/DQ file in fp16.
    plan = plan_build(JETPACK6, "int8", "int8", weak_typing=True)
    assert plan.builder_flags == ("INT8",) and "FP16" not in plan.builder_flags
    assert any("fp32" in note for note in plan.notes)


def test_weak_typing_fp16_warns_and_is_deprecated_from_10_12():
    for onnx in ("fp32", "fp16"):
        notes = " ".join(plan_build(JETPACK6, "fp16", onnx, weak_typing=True).notes)
        assert "weakly typed" in notes and "LayerNorm" in notes and "deprecated" not in notes
    assert "deprecated since TensorRT 10.12" in " ".join(plan_build((10, 12, 0), "fp16", "fp16", weak_typing=True).notes)
    assert "deprecated" not in " ".join(plan_build((10, 11, 0), "fp32", "fp32", weak_typing=True).notes)


@pytest.mark.parametrize("version", [TRT11, (11, 4, 1)])
def test_weak_typing_is_refused_on_tensorrt_11(version):
    with pytest.raises(ClcaDeployError, match="drop --weak-typing"):
        plan_build(version, "fp16", "fp16", weak_typing=True)


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
def test_weak_typing_errors_say_which_file_to_build_from(requested, onnx, hint):
    with pytest.raises(ClcaDeployError) as err:
        plan_build(JETPACK6, requested, onnx, weak_typing=True)
    assert hint in str(err.value)


@pytest.mark.parametrize(
    "version, expected",
    [
        ((10, 3, 0), "--weak-typing uses the FP16/INT8 builder flags (TensorRT 10 only)"),
        ((10, 13, 3), "--weak-typing uses the FP16/INT8 builder flags (deprecated since 10.12)"),
        ((11, 4, 0), "strongly typed only"),
        ((8, 6, 2), "unsupported: TensorRT 8.6.2 is older than 10.3"),
    ],
)
def test_build_mode_summary(version, expected):
    assert expected in build_mode_summary(version)


@pytest.mark.parametrize("version", [(8, 6, 1), (9, 3, 0), (10, 0, 1), (10, 2, 0)])
def test_old_tensorrt_is_refused(version):
    with pytest.raises(ClcaDeployError, match=r"TensorRT 10\.3 or newer is required") as err:
        plan_build(version, "fp32", "fp32")
    assert "JetPack 6.1 or 6.2 (JetPack 6.0 ships TensorRT 8.6)" in str(err.value)


@pytest.mark.parametrize("version", [JETPACK6, JETPACK7, TRT11])
@pytest.mark.parametrize("requested, onnx", list(itertools.product(PRECISIONS, PRECISIONS)))
def test_precision_is_never_silently_downgraded(version, requested, onnx):
    try:
        plan = plan_build(version, requested, onnx)
    except ClcaDeployError:
        return
    assert plan.precision == requested and plan.builder_flags == () and plan.strongly_typed


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


def test_build_trt_cli_without_tensorrt_fails_before_any_work(tmp_path, monkeypatch, capsys, plain_onnx):
    """No TensorRT/GPU here: one line naming what is missing and how to install it; nothing written."""
    import sys

    from clca_deploy import cli
    from clca_deploy.tensorrt.toolkit import tensorrt_unavailable_reason

    if tensorrt_unavailable_reason() is None:
        pytest.skip("TensorRT and a GPU are present")
    model = tmp_path / "m.onnx"
    model.write_bytes(plain_onnx[1].read_bytes())  # a real export: its checks pass, TensorRT's does not
    monkeypatch.setattr(sys, "argv", ["clca-deploy", "build-trt", str(model), "--int8", "--data", str(tmp_path)])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    err = capsys.readouterr().err
    # [trt] where no driver can be asked; [trt-cu12] / [trt-cu13] by the driver's CUDA major on a GPU machine.
    assert exit_info.value.code == 2 and re.search(r'pip install "clca-deploy\[trt(-cu1[23])?\]"', err), err
    assert err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


@pytest.mark.parametrize("largest", [1, 2, 5, 8, 9, 64])
def test_suggested_profiles_are_valid_build_trt_options(largest):
    option = profile_option(profile_reaching(largest))
    assert option.startswith("build-trt --batch ")
    profile = parse_batch_profile(option.split()[-1])  # the hint parses back into a valid profile
    assert (profile.min, profile.max) == (1, largest) and profile.opt == min(8, largest)

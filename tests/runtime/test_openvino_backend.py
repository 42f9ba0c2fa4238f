"""The OpenVINO backend: same logits as onnxruntime on the same file, its options, and its refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from clca_deploy.errors import ClcaDeployError, UnsupportedError
from clca_deploy.runtime import Backend, RuntimeOptions, open_backend
from clca_deploy.runtime.openvino_backend import OpenVinoOptions, check_cpu_supports, compile_properties
from tests.conftest import load_golden

openvino = pytest.importorskip("openvino")


def test_openvino_matches_onnxruntime_and_the_official_logits(plain_onnx):
    _, onnx_path = plain_onnx
    _, _, io = load_golden("evit_deit_tiny_plain_k0.5_224")
    with open_backend(onnx_path, "onnxruntime") as ort, open_backend(onnx_path, "openvino") as ov:
        assert isinstance(ov, Backend) and ov.name == "openvino"
        same = ("model", "keep_rate", "num_classes", "preprocess", "class_names", "precision")
        assert all(getattr(ov.description, key) == getattr(ort.description, key) for key in same)
        assert ov.description.extra["token_schedule"] == ort.description.extra["token_schedule"]
        assert ov.inference_precision == "f32" and ov.input_spec == ort.input_spec
        logits = ov(io["input"])
        assert logits.dtype == np.float32 and logits.shape == io["logits"].shape
        np.testing.assert_allclose(logits, ort(io["input"]), atol=1e-4)
        np.testing.assert_allclose(logits, io["logits"], atol=1e-4)
        # Dynamic batch: one image at a time gives the rows of the batch of two.
        np.testing.assert_allclose(ov(io["input"][:1]), logits[:1], atol=1e-5)


def test_bf16_is_what_runs_when_asked_for(plain_onnx):
    core = openvino.Core()
    if "BF16" not in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        pytest.skip("this CPU has no bf16")
    _, onnx_path = plain_onnx
    _, _, io = load_golden("evit_deit_tiny_plain_k0.5_224")
    with open_backend(onnx_path, "openvino", inference_precision="bf16") as ov:
        assert ov.inference_precision == "bf16" and "bf16" in ov.providers[0]
        logits = ov(io["input"])
    # bf16 keeps 8 bits of mantissa, so the logits move: bf16 really ran. (How far they move on trained
    # weights is measured in benchmarks/cpu_runtimes.py; these random weights give logits of ~0.05.)
    assert np.isfinite(logits).all() and np.abs(logits - io["logits"]).max() > 1e-4


def test_compiled_model_cache_is_written_and_reused(plain_onnx, tmp_path):
    _, onnx_path = plain_onnx
    cache = tmp_path / "ov-cache"
    with open_backend(onnx_path, "openvino", cache_dir=cache) as first:
        expected = first(np.zeros((1, 3, 224, 224), np.float32))
    blobs = sorted(cache.iterdir())
    assert blobs, "OpenVINO wrote no compiled model into the cache folder"
    with open_backend(onnx_path, "openvino", cache_dir=cache) as second:
        np.testing.assert_array_equal(second(np.zeros((1, 3, 224, 224), np.float32)), expected)
    assert sorted(cache.iterdir()) == blobs  # read back, not compiled and written again


def test_wrong_input_shape_is_refused_before_openvino_sees_it(plain_onnx):
    # OpenVINO itself answered a wrong-sized image with an empty output instead of an error.
    _, onnx_path = plain_onnx
    with open_backend(onnx_path, "openvino") as ov:
        with pytest.raises(ClcaDeployError, match=r"\(N, 3, 224, 224\)"):
            ov(np.zeros((1, 3, 200, 200), dtype=np.float32))


def test_a_file_openvino_cannot_read_is_one_clear_error(tmp_path, plain_onnx):
    _, onnx_path = plain_onnx
    broken = tmp_path / "broken.onnx"
    data = onnx_path.read_bytes()
    broken.write_bytes(data[: len(data) // 2])
    with pytest.raises(ClcaDeployError):
        open_backend(broken, "openvino")


def test_properties_follow_the_options():
    assert compile_properties(OpenVinoOptions("bf16", "throughput", 4, None)) == {
        "INFERENCE_PRECISION_HINT": "bf16", "PERFORMANCE_HINT": "THROUGHPUT", "INFERENCE_NUM_THREADS": 4,
    }
    assert compile_properties(OpenVinoOptions("f32", "latency", None, Path("/cache"))) == {
        "INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY", "CACHE_DIR": "/cache",
    }


def test_bf16_on_a_cpu_without_it_is_refused_not_silently_f32():
    check_cpu_supports("bf16", ["FP32", "BF16", "INT8"])
    check_cpu_supports("f32", ["FP32", "INT8"])
    with pytest.raises(UnsupportedError, match="--inference-precision f32"):
        check_cpu_supports("bf16", ["FP32", "FP16", "INT8"])


@pytest.mark.parametrize("values, message", [
    ({"inference_precision": "fp16"}, "inference precision"),
    ({"performance_hint": "fast"}, "performance hint"),
    ({"threads": 0}, "--threads"),
])
def test_bad_options_are_refused_before_any_model_opens(values, message):
    with pytest.raises(ClcaDeployError, match=message):
        RuntimeOptions(values)


def test_without_openvino_the_runtime_names_its_extra(plain_onnx, monkeypatch, capsys):
    import sys

    from clca_deploy import cli, extras

    real = extras.has_module
    monkeypatch.setattr(extras, "has_module", lambda name: name != "openvino" and real(name))
    _, onnx_path = plain_onnx
    monkeypatch.setattr(sys, "argv", ["clca-deploy", "predict", str(onnx_path), str(onnx_path), "--runtime", "openvino"])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and 'pip install "clca-deploy[openvino]"' in error


def _predict_json(argv, monkeypatch, capsys) -> dict:
    import json
    import sys

    from clca_deploy import cli

    monkeypatch.setattr(sys, "argv", ["clca-deploy", "predict", *argv, "--json"])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    assert exit_info.value.code in (0, None)
    return json.loads(capsys.readouterr().out)


def test_predict_on_openvino_classifies_like_onnxruntime(plain_onnx, monkeypatch, capsys):
    from tests.conftest import LEAVES_DIR, require_shared

    _, onnx_path = plain_onnx
    images = str(require_shared(LEAVES_DIR / "test" / "Acer"))
    runs = {runtime: _predict_json([str(onnx_path), images, "--runtime", runtime, "--top-k", "3"], monkeypatch, capsys)
            for runtime in ("onnxruntime", "openvino")}
    ort, ov = runs["onnxruntime"]["predictions"], runs["openvino"]["predictions"]
    assert len(ov) == len(ort) >= 10
    for a, b in zip(ort, ov):
        assert a["path"] == b["path"]
        assert [s["name"] for s in a["top"]] == [s["name"] for s in b["top"]]
        assert np.allclose([s["probability"] for s in a["top"]], [s["probability"] for s in b["top"]], atol=1e-5)

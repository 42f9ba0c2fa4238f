"""Backends behind one protocol: selection by file type, providers, shapes, and agreement."""

from __future__ import annotations

import numpy as np
import pytest

from clca_deploy.errors import ClcaDeployError
from clca_deploy.runtime import Backend, backend_for_path, open_backend
from clca_deploy.runtime.onnxruntime_backend import choose_providers
from tests.conftest import load_golden


def test_backend_chosen_by_file_type():
    assert backend_for_path("a.pth") == "torch"
    assert backend_for_path("a.safetensors") == "torch"
    assert backend_for_path("a.onnx") == "onnxruntime"
    assert backend_for_path("a.engine") == "tensorrt"
    with pytest.raises(ClcaDeployError, match="cannot tell"):
        backend_for_path("a.tflite")


def test_provider_choice():
    cpu_only = ["CPUExecutionProvider"]
    gpu = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert choose_providers("auto", cpu_only) == ["CPUExecutionProvider"]
    assert choose_providers("auto", gpu) == ["CUDAExecutionProvider", "CPUExecutionProvider"]  # TensorRT only by name
    assert choose_providers("auto", gpu, problem="no CUDA GPU") == ["CPUExecutionProvider"]
    assert choose_providers("cuda", gpu) == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    with pytest.raises(ClcaDeployError, match=r'clca-deploy\[gpu-cu12\]" on a CUDA 12 driver .*clca-deploy\[gpu-cu13\]"'):
        choose_providers("cuda", cpu_only)  # never a silent CPU fallback for an explicit request


def test_engine_without_sidecar_is_a_clear_error(tmp_path):
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"plan")
    with pytest.raises(ClcaDeployError, match="sidecar"):
        open_backend(engine)


def test_torch_and_onnxruntime_agree_on_golden_input(plain_onnx):
    checkpoint, onnx_path = plain_onnx
    _, _, io = load_golden("evit_deit_tiny_plain_k0.5_224")
    with open_backend(checkpoint) as reference, open_backend(onnx_path) as deployed:
        assert isinstance(reference, Backend) and isinstance(deployed, Backend)
        assert reference.description.preprocess == deployed.description.preprocess
        assert deployed.description.keep_rate == (0.5,)
        np.testing.assert_allclose(deployed(io["input"]), reference(io["input"]), atol=1e-4)
        np.testing.assert_allclose(deployed(io["input"]), io["logits"], atol=1e-4)


def test_wrong_input_shape_is_a_clear_error(plain_onnx):
    _, onnx_path = plain_onnx
    with open_backend(onnx_path) as backend:
        with pytest.raises(ClcaDeployError, match=r"\(N, 3, 224, 224\)"):
            backend(np.zeros((1, 3, 200, 200), dtype=np.float32))


def test_missing_model_file(tmp_path):
    with pytest.raises(ClcaDeployError, match="not found"):
        open_backend(tmp_path / "nope.onnx")


def test_runtime_options_give_each_runtime_only_what_it_takes():
    from clca_deploy.runtime import RuntimeOptions
    from clca_deploy.runtime.onnxruntime_backend import OnnxRuntimeOptions
    from clca_deploy.runtime.openvino_backend import OpenVinoOptions
    from clca_deploy.runtime.tensorrt_backend import TensorRTOptions
    from clca_deploy.runtime.torch_backend import TorchOptions

    options = RuntimeOptions.from_values(provider="cuda", device=2, threads=3, inference_precision="bf16")
    assert options.of("onnxruntime") == OnnxRuntimeOptions(provider="cuda", threads=3, device=2)
    assert options.of("openvino") == OpenVinoOptions(
        inference_precision="bf16", performance_hint="latency", threads=3, cache_dir=None,
    )
    assert options.of("tensorrt") == TensorRTOptions(device=2)
    assert options.of("torch") == TorchOptions()
    with pytest.raises(ClcaDeployError, match="no runtime takes the option"):
        RuntimeOptions.from_values(speed=3)


def test_runtime_choice_by_file_type_and_request():
    from clca_deploy.runtime import parse_runtimes, runtimes_for_path

    assert runtimes_for_path("m.onnx") == ("onnxruntime", "openvino")
    assert backend_for_path("m.onnx", "openvino") == "openvino"
    assert backend_for_path("m.int8.onnx", None) == "onnxruntime"
    with pytest.raises(ClcaDeployError, match="openvino cannot open m.engine; .engine files run on tensorrt"):
        backend_for_path("m.engine", "openvino")
    with pytest.raises(ClcaDeployError, match="unknown runtime 'tvm'"):
        backend_for_path("m.onnx", "tvm")
    assert parse_runtimes("onnxruntime, openvino,onnxruntime") == ("onnxruntime", "openvino")
    assert parse_runtimes("") is None
    with pytest.raises(ClcaDeployError, match="unknown runtime ort"):
        parse_runtimes("ort,openvino")

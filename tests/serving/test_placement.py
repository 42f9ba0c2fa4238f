"""Issue 24 items 11 and 12 for `serve`: the classifier runs where its runtime, given every one of the runtime's
options, runs the model (KIND_GPU on that CUDA device, or the CPU), and an engine whose batches start above 1 is
refused before anything is opened.

Engines run on the fakes of tests/tensorrt/fakes (a fake TensorRT over two fake GPUs); a toy runtime stands
for any other runtime that reports a CUDA device, since serving/ may not decide anything by a runtime's name.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from clca_deploy.errors import ClcaDeployError
from clca_deploy.runtime.base import ONNX_FILE, BackendBase, InputSpec, ModelDescription, RuntimeSpec
from clca_deploy.runtime.registry import RuntimeOptions, register_runtime, unregister_runtime
from clca_deploy.serving import server
from clca_deploy.serving.repository import write_planned_repository
from clca_deploy.serving.server import ServeConfig, serving_plan
from clca_deploy.tensorrt.build import EngineConfig, build_engine
from clca_deploy.tensorrt.plan import BatchProfile
from tests.serving.conftest import parse_model_config, require_module
from tests.serving.test_python_models import Tensor, fake_pb_utils
from tests.tensorrt import fakes
from tests.tensorrt.fakes import expected_logits, tiny_onnx

TWO_GPUS = (("A", "8.0"), ("B", "8.0"))


def _quiet(_: str) -> None:
    pass


@pytest.fixture
def engine_on_gpu_1(tmp_path, monkeypatch):
    """An engine built on the second of two fake GPUs, and the fake stack it runs on."""
    stack = fakes.install(monkeypatch, devices=TWO_GPUS)
    result = build_engine(tiny_onnx(tmp_path / "m.onnx"), tmp_path / "m.engine", EngineConfig(device=1), log=_quiet)
    return stack, Path(result.path)


def _written(plan, folder: Path):
    """The repository `serve` would start, written to ``folder``, and its classifier's config as Triton reads it."""
    repository = write_planned_repository(plan, folder)
    return repository, parse_model_config(Path(repository.path) / f"{plan.names.classifier}/config.pbtxt")


def _groups(config) -> list[tuple[str, list[int], int]]:
    kinds = {config.instance_group[0].KIND_CPU: "CPU", config.instance_group[0].KIND_GPU: "GPU"}
    return [(kinds[group.kind], list(group.gpus), group.count) for group in config.instance_group]


def _parameters(config) -> dict[str, str]:
    return {key: value.string_value for key, value in config.parameters.items()}


def test_serve_runs_an_engine_on_the_gpu_its_device_option_names(engine_on_gpu_1, tmp_path):
    stack, engine = engine_on_gpu_1
    require_module("tritonclient.grpc.model_config_pb2")
    config = ServeConfig(instances=2, runtime_options=RuntimeOptions.from_values(device=1))
    repository, classifier = _written(serving_plan(engine, config), tmp_path / "repo")
    assert classifier.backend == "python" and _groups(classifier) == [("GPU", [1], 2)]
    parameters = _parameters(classifier)
    assert parameters["runtime"] == "tensorrt" and json.loads(parameters["runtime_options"])["device"] == 1
    preprocess = parse_model_config(Path(repository.path) / "clca_preprocess/config.pbtxt")
    assert _groups(preprocess) == [("CPU", [], 2)]  # decoding stays on the CPU
    assert stack.gpu.live() == {key: 0 for key in stack.gpu.live()}  # the check's backend let everything go


def test_serve_runs_an_onnx_file_on_the_cpu_without_naming_a_gpu(tmp_path, monkeypatch):
    from clca_deploy.runtime import onnxruntime_backend

    require_module("tritonclient.grpc.model_config_pb2")
    monkeypatch.setattr(onnxruntime_backend, "gpu_problem", lambda device: "no CUDA GPU here")  # what auto sees
    plan = serving_plan(tiny_onnx(tmp_path / "m.onnx"), ServeConfig())
    _, classifier = _written(plan, tmp_path / "repo")
    assert _groups(classifier) == [("CPU", [], 1)]  # the default provider, auto, landed on the CPU
    assert json.loads(_parameters(classifier)["runtime_options"])["provider"] == "auto"


# ------------------------------------------------------------------ any runtime that reports a CUDA device


@dataclass(frozen=True)
class GpuToyOptions:
    """A toy runtime's settings: none; it always reports CUDA device 3."""


class GpuToyBackend(BackendBase):
    """A toy on "CUDA device 3": logits of class i are i, for any batch."""

    name = "gpu-toy"
    device_index = 3

    def __init__(self, path, options: GpuToyOptions = GpuToyOptions()):
        self.input_spec = InputSpec(name="images", img_size=32)
        self.description = ModelDescription(model="toy", keep_rate=(1.0,), num_classes=15, preprocess={})
        self.closed = False

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return np.tile(np.arange(15, dtype=np.float32), (len(batch), 1))

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def gpu_toy():
    register_runtime(RuntimeSpec(name="gpu-toy", backend=GpuToyBackend, options=GpuToyOptions, suffixes=(".onnx",),
                                 file_format=ONNX_FILE, summary="a test's toy on a GPU"))
    yield
    unregister_runtime("gpu-toy")


def test_a_runtime_that_runs_on_a_gpu_is_placed_there_whatever_its_name(gpu_toy, tmp_path):
    """No runtime name in serving/: the backend's own device_index decides, as for onnxruntime --provider cuda."""
    require_module("tritonclient.grpc.model_config_pb2")
    plan = serving_plan(tiny_onnx(tmp_path / "m.onnx"), ServeConfig(runtime="gpu-toy"))
    assert (plan.served.device, plan.served.gpu) == ("gpu", 3)
    assert _groups(_written(plan, tmp_path / "repo")[1]) == [("GPU", [3], 1)]


def test_triton_repo_leaves_gpu_instances_to_triton(tmp_path):
    """A stock repository names no GPU: Triton puts KIND_GPU instances on every GPU it has."""
    from clca_deploy.serving.repository import plan_triton_repository
    from clca_deploy.serving.triton_config import TritonRepoConfig

    require_module("tritonclient.grpc.model_config_pb2")
    plan = plan_triton_repository(tiny_onnx(tmp_path / "m.onnx"), TritonRepoConfig(device="gpu"))
    assert _groups(_written(plan, tmp_path / "repo")[1]) == [("GPU", [], 1)]


# ------------------------------------------------------------------ the Python classifier inside Triton


def _classifier_model(repository: Path, monkeypatch):
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", fake_pb_utils([]))
    spec = importlib.util.spec_from_file_location("triton_model_classifier", repository / "clca_classifier/1/model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    from google.protobuf import json_format

    config = json_format.MessageToDict(
        parse_model_config(repository / "clca_classifier/config.pbtxt"), preserving_proto_field_name=True
    )
    return module, json.dumps(config)


def test_the_python_classifier_runs_on_its_instance_gpu_and_refuses_any_other(engine_on_gpu_1, tmp_path, monkeypatch):
    stack, engine = engine_on_gpu_1
    require_module("tritonclient.grpc.model_config_pb2")
    repository, _ = _written(serving_plan(engine, ServeConfig(runtime_options=RuntimeOptions.from_values(device=1))),
                             tmp_path / "repo")
    module, model_config = _classifier_model(Path(repository.path), monkeypatch)

    model = module.TritonPythonModel()
    model.initialize({"model_config": model_config, "model_instance_kind": "GPU", "model_instance_device_id": "1"})
    images = np.random.default_rng(0).standard_normal((3, 3, 32, 32)).astype(np.float32)
    (response,) = model.execute([{"images": Tensor("images", images)}])
    assert response.error is None
    np.testing.assert_allclose(response.outputs["logits"], expected_logits(images, 15), rtol=1e-5, atol=1e-6)
    model.finalize()

    for kind, device, placed in (("GPU", "0", "CUDA device 0"), ("CPU", "0", "the CPU")):
        with pytest.raises(ClcaDeployError, match=f"placed on {placed} but its runtime runs the model on CUDA device 1"):
            module.TritonPythonModel().initialize(
                {"model_config": model_config, "model_instance_kind": kind, "model_instance_device_id": device}
            )
    assert stack.gpu.live() == {key: 0 for key in stack.gpu.live()}  # a refused instance frees its engine


# ------------------------------------------------------------------ item 11 under serve


def test_serve_refuses_an_engine_whose_batches_start_above_one_before_opening_it(tmp_path, monkeypatch):
    """Triton sends batches from 1, which such an engine refuses; `serve` says so before loading anything."""
    from tests.serving.test_triton_config import _fake_engine

    def never(*args):
        raise AssertionError("the model was opened before the engine's profile was checked")

    monkeypatch.setattr(server, "_check_model_loads", never)
    engine = _fake_engine(tmp_path, tiny_onnx(tmp_path / "m.onnx"), BatchProfile(4, 8, 32))
    with pytest.raises(ClcaDeployError, match=r"batches of 4\.\.32.*`clca-deploy build-trt --batch 1,8,32`"):
        serving_plan(engine, ServeConfig())

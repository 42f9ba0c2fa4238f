"""The Python-backend models of a written repository, run here on a stand-in for Triton's pb_utils:
request budgets refuse before decoding, a bad request is the client's fault (INVALID_ARG, HTTP 400), the
server's own failures are one line without its paths (INTERNAL, HTTP 500)."""

from __future__ import annotations

import importlib.util
import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from clca_deploy.serving import TritonRepoConfig, write_triton_repository
from tests.data.test_images import declaring_png
from tests.serving.conftest import parse_model_config


class Tensor:
    def __init__(self, name, array):
        self.name, self.array = name, array

    def as_numpy(self):
        return self.array


class TritonError:
    INVALID_ARG, INTERNAL = "INVALID_ARG", "INTERNAL"

    def __init__(self, message, code="INTERNAL"):
        self.message, self.code = message, code


class Response:
    def __init__(self, output_tensors, error=None):
        self.outputs = {tensor.name: tensor.array for tensor in output_tensors}
        self.error = error


def fake_pb_utils(logged: list[str]):
    return types.SimpleNamespace(
        Tensor=Tensor, TritonError=TritonError, InferenceResponse=Response,
        get_input_tensor_by_name=lambda request, name: request[name],
        get_output_config_by_name=lambda config, name: next(o for o in config["output"] if o["name"] == name),
        triton_string_to_numpy={"TYPE_FP32": np.float32, "TYPE_FP16": np.float16}.__getitem__,
        Logger=types.SimpleNamespace(log_error=logged.append),
    )


def load_model(folder: Path, monkeypatch, logged: list[str]):
    """``folder``'s model.py initialised as Triton would: with its config.pbtxt as JSON."""
    from google.protobuf import json_format

    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", fake_pb_utils(logged))
    monkeypatch.setattr(sys, "path", list(sys.path))  # model.py puts its folder first; undone after the test
    spec = importlib.util.spec_from_file_location(f"triton_model_{folder.name}", folder / "1" / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = json_format.MessageToDict(parse_model_config(folder / "config.pbtxt"), preserving_proto_field_name=True)
    model = module.TritonPythonModel()
    model.initialize({"model_config": json.dumps(config)})
    return module, model


def image_request(*images: bytes) -> dict:
    return {"IMAGE": Tensor("IMAGE", np.array([[data] for data in images], dtype=object))}


@pytest.fixture(scope="module")
def repository(plain_onnx, tmp_path_factory):
    config = TritonRepoConfig(max_image_megapixels=1.0, max_request_megapixels=2.5)
    return Path(write_triton_repository(plain_onnx[1], tmp_path_factory.mktemp("repo") / "repo", config).path)


@pytest.fixture
def preprocess(repository, monkeypatch):
    logged: list[str] = []
    module, model = load_model(repository / "clca_preprocess", monkeypatch, logged)
    decoded: list[str] = []
    real_decode = module.decode_image

    def counting_decode(data, source, max_pixels):
        decoded.append(source)
        return real_decode(data, source=source, max_pixels=max_pixels)

    monkeypatch.setattr(module, "decode_image", counting_decode)
    return module, model, decoded, logged


def test_a_good_image_becomes_the_pixels_predict_computes(preprocess, leaves_dir):
    from clca_deploy.data import load_image, preprocess as preprocess_image

    _, model, decoded, _ = preprocess
    path = sorted((leaves_dir / "test").rglob("*.jpg"))[0]
    (response,) = model.execute([image_request(path.read_bytes())])
    assert response.error is None and decoded == ["<request image 0>"]
    expected = preprocess_image(load_image(path), model.preprocess)  # the settings config.pbtxt carries
    np.testing.assert_array_equal(response.outputs["PIXELS"][0], expected)


def test_a_pixel_bomb_is_refused_from_its_header_before_any_decoding(preprocess):
    _, model, decoded, _ = preprocess
    bomb = declaring_png(9000, 9000)
    assert len(bomb) < 100
    (response,) = model.execute([image_request(bomb)])
    assert response.error.code == TritonError.INVALID_ARG
    assert "request image 0 is 9000x9000 = 81.0 megapixels" in response.error.message
    assert "at most 1.0 per image" in response.error.message
    assert decoded == []


def test_a_request_over_its_pixel_budget_is_refused_before_any_decoding(preprocess):
    _, model, decoded, _ = preprocess
    images = [declaring_png(1000, 1000)] * 3  # each within 1 MP, together over 2.5 MP
    (over, within) = model.execute([image_request(*images), image_request(*images[:2])])
    assert over.error.code == TritonError.INVALID_ARG
    assert "the 3 images of this request hold 3.0 megapixels" in over.error.message and "per request" in over.error.message
    # The second request is within budget: its images are decoded (and, declaring more than they hold, fail
    # as corrupt data, which is the client's fault too).
    assert within.error.code == TritonError.INVALID_ARG and "truncated or corrupt" in within.error.message
    assert decoded == ["<request image 0>"]


def test_bad_images_are_the_clients_fault_and_fail_only_their_request(preprocess, leaves_dir):
    _, model, _, _ = preprocess
    good = sorted((leaves_dir / "test").rglob("*.jpg"))[0].read_bytes()
    bad, empty, fine = model.execute([image_request(b"not an image"), image_request(b""), image_request(good)])
    assert bad.error.code == empty.error.code == TritonError.INVALID_ARG
    assert bad.error.message == "cannot read image <request image 0>: not a recognised image format"
    assert "no data" in empty.error.message
    assert fine.error is None and fine.outputs["PIXELS"].shape == (1, 3, 224, 224)


def test_the_servers_own_failure_is_logged_whole_and_answered_in_one_line(preprocess, monkeypatch, leaves_dir):
    module, model, _, logged = preprocess
    good = sorted((leaves_dir / "test").rglob("*.jpg"))[0].read_bytes()

    def broken(*_args, **_kwargs):
        raise ValueError("buffer mismatch in /srv/triton/models/clca_preprocess/1/clca_deploy/data/preprocess.py\nline 2")

    monkeypatch.setattr(module, "preprocess_into", broken)
    (response,) = model.execute([image_request(good)])
    assert response.error.code == TritonError.INTERNAL
    assert response.error.message == "the server failed to preprocess this request (ValueError)"
    assert len(logged) == 1 and "/srv/triton" in logged[0] and "\n" not in logged[0]


def test_postprocess_failures_are_one_line_server_faults(repository, monkeypatch):
    logged: list[str] = []
    _, model = load_model(repository / "clca_postprocess", monkeypatch, logged)
    logits = np.zeros((2, 15), dtype=np.float32)
    logits[1, 4] = 3.0
    good, bad = model.execute([{"LOGITS": Tensor("LOGITS", logits)}, {"LOGITS": Tensor("LOGITS", np.array(["x"], dtype=object))}])
    assert good.error is None and good.outputs["CLASS_ID"][1][0] == 4
    assert bad.error.code == TritonError.INTERNAL and bad.error.message.startswith("the server failed to score this request")
    assert len(logged) == 1

"""`clca-deploy serve`: a real Triton server (PyTriton's) answering real leaf images like `predict` does."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from clca_deploy.cli import app
from clca_deploy.errors import ClcaDeployError, ConfigError
from clca_deploy.serving.client import answers, classify, image_request
from clca_deploy.serving.server import ServeConfig, check_port_free, free_port, running_server, stub_environment
from tests.serving.conftest import require_module

TOP_K = 3


def test_stub_environment_puts_this_pythons_library_first():
    assert stub_environment({}, "/py/lib", shared_python=True) == {"LD_LIBRARY_PATH": "/py/lib"}
    assert stub_environment({"LD_LIBRARY_PATH": "/cuda"}, "/py/lib", True) == {"LD_LIBRARY_PATH": "/py/lib:/cuda"}
    assert stub_environment({"LD_LIBRARY_PATH": "/a:/py/lib"}, "/py/lib", True) == {}  # already there
    assert stub_environment({}, "/py/lib", shared_python=False) == {}  # a static Python has no library to offer
    assert stub_environment({}, None, shared_python=True) == {}


def test_port_checks():
    with pytest.raises(ConfigError, match="--port"):
        ServeConfig(port=65535)
    assert ServeConfig(port=9000).ports == {"http": 9000, "grpc": 9001, "metrics": 9002}
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(ClcaDeployError, match="is taken.*--port"):
            check_port_free("127.0.0.1", taken.getsockname()[1])


def test_host_checks_say_what_is_wrong_with_the_host_not_the_port():
    for bad in ("", "two words", "tab\there", "x" * 300, 5):
        with pytest.raises(ConfigError, match="--host"):
            ServeConfig(host=bad)
    with pytest.raises(ClcaDeployError, match=r"--host 'no-such-host\.invalid' is not an address or a name this machine can resolve"):
        check_port_free("no-such-host.invalid", free_port())
    # 192.0.2.1 is TEST-NET-1 (RFC 5737): documentation only, never an address of a real machine.
    with pytest.raises(ClcaDeployError, match="--host 192.0.2.1 is not an address of this machine") as info:
        check_port_free("192.0.2.1", free_port())
    assert "taken" not in str(info.value)
    assert check_port_free("localhost", free_port()) == "127.0.0.1"  # what the server is told to bind


def test_serve_settings_are_checked_when_made():
    with pytest.raises(ConfigError, match="below --max-image-megapixels"):
        ServeConfig(max_image_megapixels=10, max_request_megapixels=5)
    with pytest.raises(ConfigError, match="instances"):
        ServeConfig(instances=0)
    repo = ServeConfig(max_image_megapixels=10, max_request_megapixels=20, top_k=2).repository_config()
    # No device: serve places the classifier where its runtime runs the model (tests/serving/test_placement.py).
    assert (repo.device, repo.max_image_pixels, repo.max_request_pixels, repo.top_k) == (None, 10_000_000, 20_000_000, 2)


@pytest.fixture(scope="module")
def server(plain_onnx):
    require_module("pytriton")
    _, onnx_path = plain_onnx
    config = ServeConfig(port=free_port(), max_batch=8, top_k=TOP_K)
    with running_server(onnx_path, config) as running:
        yield running, onnx_path


@pytest.fixture
def client(server):
    import tritonclient.http as triton_http

    running, _ = server
    with triton_http.InferenceServerClient(running.http_url, concurrency=4) as http_client:
        yield http_client


def _leaves(leaves_dir: Path, per_class: int) -> list[Path]:
    classes = sorted(p for p in (leaves_dir / "test").iterdir() if p.is_dir())
    return [path for folder in classes for path in sorted(folder.glob("*.jpg"))[:per_class]]


def _predict_cli(model: Path, images: list[Path]) -> dict[str, dict]:
    result = CliRunner().invoke(app, ["predict", str(model), *map(str, images), "--top-k", str(TOP_K), "--json"])
    assert result.exit_code == 0, result.output
    return {Path(p["path"]).name: p for p in json.loads(result.stdout)["predictions"]}


def _assert_same(answer, prediction):
    assert list(answer.class_ids) == [c["index"] for c in prediction["top"]]
    assert list(answer.class_names) == [c["name"] for c in prediction["top"]]
    np.testing.assert_allclose(answer.scores, [c["probability"] for c in prediction["top"]], atol=2e-5)


def test_real_leaves_get_the_classes_predict_gives(server, client, leaves_dir):
    running, onnx_path = server
    images = _leaves(leaves_dir, per_class=2)
    expected = _predict_cli(onnx_path, images)
    singles = [classify(client, running.model, [path.read_bytes()])[0] for path in images[:10]]
    batched = [answer for start in range(10, len(images), 5)
               for answer in classify(client, running.model, [path.read_bytes() for path in images[start : start + 5]])]
    assert len(singles) + len(batched) == len(images)
    for path, answer in zip(images, singles + batched):
        _assert_same(answer, expected[path.name])


def test_concurrent_clients_are_batched_and_each_gets_its_own_answer(server, client, leaves_dir):
    running, onnx_path = server
    images = _leaves(leaves_dir, per_class=1)
    expected = _predict_cli(onnx_path, images)
    # The HTTP client's async calls run on its pool of 4 connections: 4 requests in flight at once.
    pending = [client.async_infer(running.model, image_request([path.read_bytes()])) for path in images]
    results = [answers(request.get_result())[0] for request in pending]
    for path, answer in zip(images, results):
        _assert_same(answer, expected[path.name])
    with pytest.raises(Exception, match="restricted"):
        client.get_inference_statistics(f"{running.model}_classifier")  # guarded by PyTriton's token
    statistics = client.get_inference_statistics(f"{running.model}_classifier", headers={"triton-access-token": running.access_token})
    stats = statistics["model_stats"][0]
    # Fewer classifier executions than requests would show batching, but four clients on two cores
    # may also arrive one by one; what must hold is that every request was answered.
    assert stats["inference_count"] >= len(images)


def test_bad_requests_get_errors_and_the_server_keeps_serving(server, client, leaves_dir):
    import tritonclient.http as triton_http
    from tritonclient.utils import InferenceServerException

    running, _ = server
    good = _leaves(leaves_dir, per_class=1)[0].read_bytes()
    reference = classify(client, running.model, [good])[0]

    with pytest.raises(InferenceServerException, match="not a recognised image format"):
        classify(client, running.model, [b"this is not an image"])
    with pytest.raises(InferenceServerException, match="truncated or corrupt"):
        classify(client, running.model, [good[: len(good) // 3]])
    with pytest.raises(InferenceServerException, match="no data"):
        classify(client, running.model, [b""])

    wrong_shape = triton_http.InferInput("IMAGE", [1, 2], "BYTES")
    wrong_shape.set_data_from_numpy(np.array([[good, good]], dtype=object))
    with pytest.raises(InferenceServerException, match="unexpected shape"):
        client.infer(running.model, [wrong_shape])

    wrong_type = triton_http.InferInput("IMAGE", [1, 1], "FP32")
    wrong_type.set_data_from_numpy(np.zeros((1, 1), dtype=np.float32))
    with pytest.raises(InferenceServerException, match="TYPE_STRING|BYTES"):
        client.infer(running.model, [wrong_type])

    spec_input = running.repository.input_size
    pixels = triton_http.InferInput("images", [1, 3, spec_input - 8, spec_input - 8], "FP32")
    pixels.set_data_from_numpy(np.zeros((1, 3, spec_input - 8, spec_input - 8), dtype=np.float32))
    with pytest.raises(InferenceServerException, match="unexpected shape"):
        client.infer(f"{running.model}_classifier", [pixels])

    with pytest.raises(InferenceServerException):
        client.infer(running.model, image_request([good] * 9))  # over --max-batch 8

    assert client.is_server_live() and client.is_model_ready(running.model)
    assert classify(client, running.model, [good])[0] == reference


def test_a_damaged_model_is_refused_before_any_server_starts(plain_onnx, tmp_path):
    require_module("pytriton")
    model = tmp_path / "model.onnx"
    model.write_bytes(plain_onnx[1].read_bytes()[:1000])
    with pytest.raises(ClcaDeployError, match="model.onnx") as info:
        with running_server(model, ServeConfig(port=free_port())):
            pass
    assert "\n" not in str(info.value)


def test_serve_command_stops_the_server_on_sigterm(plain_onnx):
    """`docker stop` and Kubernetes send SIGTERM: the Triton server must go with the command."""
    require_module("pytriton")
    import queue
    import signal
    import subprocess
    import sys
    import threading

    port = free_port()
    command = [sys.executable, "-m", "clca_deploy.cli", "serve", str(plain_onnx[1]), "--port", str(port)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout], daemon=True).start()
    output = []
    try:
        while not any(line.startswith("stop with") for line in output):
            output.append(lines.get(timeout=120))  # queue.Empty fails the test if the server never says it serves
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    while not lines.empty():
        output.append(lines.get())
    assert process.returncode == 0, "".join(output)
    assert any(line.startswith("stopping") for line in output)
    for offset in range(3):  # the server process is gone with its ports
        check_port_free("127.0.0.1", port + offset)


def test_grpc_and_metrics_endpoints(server, leaves_dir):
    """The same answer over gRPC (port + 1), and Prometheus metrics counting it (port + 2)."""
    import urllib.request

    import tritonclient.grpc as triton_grpc
    import tritonclient.http as triton_http

    running, _ = server
    image = _leaves(leaves_dir, per_class=1)[3].read_bytes()
    with triton_http.InferenceServerClient(running.http_url) as http_client:
        over_http = classify(http_client, running.model, [image])[0]
    grpc_client = triton_grpc.InferenceServerClient(running.grpc_url)
    try:
        tensor = triton_grpc.InferInput("IMAGE", [1, 1], "BYTES")
        tensor.set_data_from_numpy(np.array([[image]], dtype=object))
        result = grpc_client.infer(running.model, [tensor])
    finally:
        grpc_client.close()
    assert result.as_numpy("CLASS_ID")[0].tolist() == list(over_http.class_ids)
    np.testing.assert_allclose(result.as_numpy("SCORE")[0], over_http.scores, atol=1e-6)
    metrics = urllib.request.urlopen(running.metrics_url, timeout=10).read().decode()
    line = next(x for x in metrics.splitlines() if x.startswith("nv_inference_request_success") and f'model="{running.model}"' in x)
    assert float(line.rsplit(" ", 1)[1]) >= 2

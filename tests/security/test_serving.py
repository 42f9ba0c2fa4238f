"""Issue 23 (items 1, 3, 5, 8, 14) for serving: `triton-repo` packages only what it checked, `serve` refuses
bad hosts and bad requests in one line, and a dying Triton server takes `serve` with it.

`triton-repo` runs on crafted files through the CLI in a child process (the harness: exit 2, one line, no
traceback, nothing written). The `serve` tests start real servers (PyTriton's tritonserver) on loopback:
one is crashed with a gzip bomb, one killed with SIGKILL, and `serve` must exit non-zero with one line
within a bounded wait; requests with bad or oversized images must come back as the client's fault
(HTTP 400) without server paths or Python stacks.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import queue
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import pytest

from clca_deploy.errors import ClcaDeployError
from clca_deploy.serving import watch
from clca_deploy.serving.server import ServeConfig, check_port_free, free_port, running_server
from clca_deploy.tensorrt.plan import BatchProfile, plan_build
from clca_deploy.tensorrt.sidecar import build_sidecar, sidecar_path
from tests.conftest import REPO_ROOT
from tests.data.test_images import declaring_png
from tests.security.harness import Snapshot, assert_refused, run_cli
from tests.serving.conftest import require_module
from tests.tensorrt.fakes.model import tiny_onnx

READY_TIMEOUT_S = 180  # a server start on two shared cores, with room to spare
EXIT_TIMEOUT_S = 120  # how long `serve` may take to notice a dead server and exit (it polls twice a second)


# ---------------------------------------------------------------------------------------------
# crafted files


def crafted_onnx(path: Path, edit=None) -> Path:
    """The tiny export (15 classes, 32 px images) with its graph changed by ``edit(model)``."""
    import onnx

    tiny_onnx(path)
    if edit is not None:
        model = onnx.load(str(path))
        edit(model)
        onnx.save(model, str(path))
    return path


def crafted_engine(folder: Path, plan: bytes = b"not a real plan", **changes) -> Path:
    """An engine (never deserialized here) with the sidecar `build-trt` writes for the tiny export, its
    fields changed by ``changes`` (None: removed); the engine_sha256 is the plan's unless changed."""
    import onnx

    props = {p.key: p.value for p in onnx.load(str(tiny_onnx(folder / "source.onnx"))).metadata_props}
    (folder / "source.onnx").unlink()
    sidecar = build_sidecar(
        tensorrt_version="10.3.0.26", gpu_name="Orin", compute_capability="8.7", plan=plan_build((10, 3, 0), "fp32", "fp32"),
        io=[{"name": "images", "mode": "input", "dtype": "float32", "shape": [-1, 3, 32, 32]},
            {"name": "logits", "mode": "output", "dtype": "float32", "shape": [-1, 15]}],
        profiles=[BatchProfile(1, 8, 32)], onnx_sha256="ab" * 32, keep_rate=(0.5,), onnx_metadata=props,
        engine_sha256=hashlib.sha256(plan).hexdigest(),
    )
    for key, value in changes.items():
        if value is None:
            sidecar.pop(key)
        else:
            sidecar[key] = value
    engine = folder / "model.engine"
    engine.write_bytes(plan)
    sidecar_path(engine).write_text(json.dumps(sidecar))
    return engine


def refused_cleanly(tmp_path: Path, args: list, *fragments: str) -> str:
    """The CLI on crafted files in tmp_path: refused (exit 2, one line) and nothing there changed or added."""
    before = Snapshot.of(tmp_path)
    line = assert_refused(run_cli(args, tmp_path), *fragments)
    assert before.changes() == [], before.changes()
    return line


# ---------------------------------------------------------------------------------------------
# item 5: triton-repo packages only what it opened and checked


def external_weights(model) -> None:
    """Move the weights out of the file, naming a location outside the model's folder."""
    from onnx import TensorProto

    weight = model.graph.initializer[0]
    weight.ClearField("raw_data")
    weight.ClearField("float_data")
    weight.data_location = TensorProto.EXTERNAL
    entry = weight.external_data.add()
    entry.key, entry.value = "location", "../../outside/weights.bin"


def test_an_onnx_with_external_weights_is_refused_not_packaged_without_them(tmp_path):
    import onnx

    model = crafted_onnx(tmp_path / "model.onnx", external_weights)
    line = refused_cleanly(tmp_path, ["triton-repo", model, "-o", tmp_path / "repo"], "external data", "'../../outside/weights.bin'")
    assert "export" in line
    # Written the ordinary way (onnx's own external-data writer, a file beside the model) it is refused the same.
    inline = onnx.load(str(tiny_onnx(tmp_path / "inline.onnx")))
    onnx.save_model(inline, str(tmp_path / "split.onnx"), save_as_external_data=True, location="split.weights", size_threshold=0)
    refused_cleanly(tmp_path, ["triton-repo", tmp_path / "split.onnx", "-o", tmp_path / "repo"], "external data", "'split.weights'")


def integer_images(model) -> None:
    from onnx import TensorProto

    model.graph.input[0].type.tensor_type.elem_type = TensorProto.INT64


def text_images(model) -> None:
    from onnx import TensorProto

    model.graph.input[0].type.tensor_type.elem_type = TensorProto.STRING


def integer_scores(model) -> None:
    from onnx import TensorProto

    model.graph.output[0].type.tensor_type.elem_type = TensorProto.INT32


def one_channel(model) -> None:
    model.graph.input[0].type.tensor_type.shape.dim[1].dim_value = 1


def wrong_side(model) -> None:
    model.graph.input[0].type.tensor_type.shape.dim[3].dim_value = 40


@pytest.mark.parametrize("edit,fragments", [
    (integer_images, ("'images' is TYPE_INT64, not float",)),
    (integer_scores, ("'logits' is TYPE_INT32, not float",)),
    (text_images, ("element type 8",)),
    (one_channel, ("3x32x32",)),
    (wrong_side, ("3x32x32",)),
])
def test_a_model_that_does_not_take_float_images_of_its_size_is_refused(tmp_path, edit, fragments):
    model = crafted_onnx(tmp_path / "model.onnx", edit)
    refused_cleanly(tmp_path, ["triton-repo", model, "-o", tmp_path / "repo"], *fragments)


def test_an_engine_that_differs_from_its_sidecar_is_refused_and_nothing_is_left(tmp_path):
    engine = crafted_engine(tmp_path)
    engine.write_bytes(b"another build of the plan")  # the sidecar keeps the first plan's hash
    line = refused_cleanly(tmp_path, ["triton-repo", engine, "-o", tmp_path / "repo"], "does not match its sidecar", "build-trt")
    assert "engine_sha256" in line


def test_an_engine_whose_sidecar_records_no_hash_is_refused(tmp_path):
    engine = crafted_engine(tmp_path, engine_sha256=None)
    refused_cleanly(tmp_path, ["triton-repo", engine, "-o", tmp_path / "repo"], "records no engine_sha256", "build-trt")


def test_a_negative_profile_never_becomes_max_batch_size(tmp_path):
    engine = crafted_engine(tmp_path, profiles=[{"min": -5, "opt": -5, "max": -5}])
    refused_cleanly(tmp_path, ["triton-repo", engine, "-o", tmp_path / "repo"], "profiles", "build-trt")


def test_a_checked_engine_is_packaged_byte_for_byte(tmp_path):
    engine = crafted_engine(tmp_path, plan=b"plan bytes " * 1000)
    result = run_cli(["triton-repo", engine, "-o", tmp_path / "repo"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "repo" / "clca_classifier" / "1" / "model.plan").read_bytes() == engine.read_bytes()


# ---------------------------------------------------------------------------------------------
# item 14: the host, not the port


def test_serve_with_an_unknown_host_says_so_not_that_the_port_is_taken(tmp_path):
    require_module("pytriton")
    model = tiny_onnx(tmp_path / "model.onnx")
    for host, fragment in (("no-such-host.invalid", "is not an address or a name this machine can resolve"),
                           ("192.0.2.1", "is not an address of this machine")):  # TEST-NET-1: nobody's address
        line = refused_cleanly(tmp_path, ["serve", model, "--host", host, "--port", free_port()], "--host", fragment)
        assert "taken" not in line


def test_a_port_lost_while_the_server_starts_is_the_reported_cause(tmp_path, monkeypatch):
    """Two `serve` on one port: the second passes the port check before the first binds. What it reports
    is the port, not the CUDA errors a server on a machine without a GPU logs first."""
    require_module("pytriton")
    from clca_deploy.serving import server

    import pytriton.triton

    model = tiny_onnx(tmp_path / "model.onnx")
    config = ServeConfig(port=free_port())
    monkeypatch.setattr(server, "check_port_free", lambda host, port: "127.0.0.1")  # the race, made certain
    # PyTriton waits up to 120 s for a server that already died; the message is what is tested here.
    monkeypatch.setattr(pytriton.triton, "DEFAULT_TRITON_STARTUP_TIMEOUT_S", 20)
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind(("127.0.0.1", config.ports["grpc"]))
        holder.listen()
        with pytest.raises(ClcaDeployError) as info:
            with running_server(model, config):
                pass
    message = str(info.value)
    assert message.startswith("the Triton server did not start: failed to start GRPC service"), message
    assert "--port" in message and "\n" not in message and "CUDA" not in message and "Cuda" not in message


# ---------------------------------------------------------------------------------------------
# items 3, 8, 14: bad requests are the client's fault, in one line, and bounded before decoding


@pytest.fixture(scope="module")
def budget_server(tmp_path_factory):
    require_module("pytriton")
    model = tiny_onnx(tmp_path_factory.mktemp("budget") / "model.onnx")
    config = ServeConfig(port=free_port(), max_batch=4, max_image_megapixels=1.0, max_request_megapixels=2.5)
    with running_server(model, config) as server:
        yield server


def _png(width: int, height: int) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (40, 150, 60)).save(buffer, format="PNG")
    return buffer.getvalue()


def _refusal(client, server, images: list[bytes]):
    from tritonclient.utils import InferenceServerException

    from clca_deploy.serving.client import classify

    with pytest.raises(InferenceServerException) as info:
        classify(client, server.model, images)
    message = info.value.message()
    assert "\n" not in message and "Traceback" not in message and "At:" not in message
    assert "/tmp" not in message and "clca-serve" not in message and ".py" not in message, message
    return info.value.status(), message


def test_bad_and_oversized_images_are_refused_as_the_clients_fault(budget_server):
    import tritonclient.http as triton_http

    from clca_deploy.serving.client import classify

    with triton_http.InferenceServerClient(budget_server.http_url) as client:
        status, message = _refusal(client, budget_server, [declaring_png(9000, 9000)])
        assert status == "400" and "9000x9000 = 81.0 megapixels" in message and "at most 1.0 per image" in message
        status, message = _refusal(client, budget_server, [_png(1000, 1000)] * 3)
        assert status == "400" and "3.0 megapixels" in message and "per request" in message
        status, message = _refusal(client, budget_server, [b"not an image"])
        assert status == "400" and "not a recognised image format" in message
        # Within both budgets, the same server answers.
        answers = classify(client, budget_server.model, [_png(1000, 1000)] * 2)
        assert len(answers) == 2 and len(answers[0].class_ids) == 5


# ---------------------------------------------------------------------------------------------
# item 1: a dying server takes `serve` with it


class ServeProcess:
    """`clca-deploy serve` in a child process, its two streams read as they come."""

    def __init__(self, model: Path, port: int):
        environment = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
        command = [sys.executable, "-m", "clca_deploy.cli", "serve", str(model), "--port", str(port)]
        self.port = port
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment)
        self.stdout: queue.Queue = queue.Queue()
        self.stderr: list[str] = []
        threading.Thread(target=lambda: [self.stdout.put(line) for line in self.process.stdout], daemon=True).start()
        threading.Thread(target=lambda: self.stderr.extend(self.process.stderr), daemon=True).start()
        self.output: list[str] = []

    def wait_ready(self) -> None:
        while not any(line.startswith("stop with") for line in self.output):
            self.output.append(self.stdout.get(timeout=READY_TIMEOUT_S))  # queue.Empty fails the test

    def tritonserver_pid(self) -> int:
        """The tritonserver process `serve` started (its child, as PyTriton starts it)."""
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            name, rest = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2 :].split()
            if name == "tritonserver" and int(rest[1]) == self.process.pid:
                return int(entry.name)
        raise AssertionError("serve started no tritonserver process")

    def wait_exit(self) -> int:
        return self.process.wait(timeout=EXIT_TIMEOUT_S)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)

    def error_line(self) -> str:
        """The one line `serve` left on stderr (no traceback), once its stream is read to the end."""
        deadline = time.monotonic() + 10
        while not self.stderr and time.monotonic() < deadline:
            time.sleep(0.05)
        text = "".join(self.stderr)
        lines = [line for line in text.splitlines() if line.strip()]
        assert "Traceback" not in text and len(lines) == 1, text[-3000:]
        return lines[0]


@pytest.fixture
def serve_process(tmp_path):
    require_module("pytriton")
    process = ServeProcess(tiny_onnx(tmp_path / "model.onnx"), free_port())
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()


def _assert_serve_died_in_one_line(serve: ServeProcess, *fragments: str) -> None:
    returncode = serve.wait_exit()  # subprocess.TimeoutExpired fails the test: `serve` kept pretending
    assert returncode == 1, returncode  # ServerStopped.exit_code: not the input's fault (2)
    line = serve.error_line()
    for fragment in ("stopped while serving", *fragments):
        assert fragment in line, line
    for offset in range(3):  # nothing is left listening
        check_port_free("127.0.0.1", serve.port + offset)
    # The server's backtrace (its files and addresses) is kept out of what `serve` prints.
    assert not any("tritonserver/bin" in line for line in serve.output + [line]), serve.output


def test_serve_exits_in_one_line_when_tritonserver_is_killed(serve_process):
    os.kill(serve_process.tritonserver_pid(), signal.SIGKILL)
    _assert_serve_died_in_one_line(serve_process, "killed by SIGKILL")
    assert watch.ServerStopped.exit_code == 1


def gzip_bomb(inflated: int, chunk: int = 1 << 20) -> bytes:
    """A gzip stream of ``inflated`` zero bytes (a multiple of ``chunk``) in about 1/1000 of that: the
    same fully flushed deflate block repeated, with a valid trailer."""
    zeros = bytes(chunk)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    repeated = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    count, crc = inflated // chunk, 0
    for _ in range(count):
        crc = zlib.crc32(zeros, crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    return header + first + repeated * (count - 1) + compressor.flush() + struct.pack("<II", crc, (count * chunk) & 0xFFFFFFFF)


def test_the_gzip_bomb_helper_inflates_to_what_it_says():
    import gzip

    bomb = gzip_bomb(8 << 20)
    assert len(bomb) < 16 << 10 and gzip.decompress(bomb) == bytes(8 << 20)


def _send(port: int, body: bytes, headers: dict[str, str]) -> int | None:
    """POST an inference request; the HTTP status, or None when the server hung up without answering."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=EXIT_TIMEOUT_S)
    try:
        connection.request("POST", "/v2/models/clca/infer", body=body, headers=headers)
        return connection.getresponse().status
    except (ConnectionError, http.client.HTTPException, OSError):
        return None
    finally:
        connection.close()


def test_a_gzip_bomb_leaves_the_server_answering_or_serve_exiting_in_one_line(serve_process):
    """2 MB that inflate to 2.05 GiB: the bundled tritonserver has no limit on inflated request bodies and
    aborts past 2 GiB (std::length_error). Either the server survives and answers, or `serve` must exit."""
    import tritonclient.http as triton_http

    from clca_deploy.serving.client import classify

    bomb = gzip_bomb(2100 << 20)
    status = _send(serve_process.port, bomb, {"Content-Encoding": "gzip", "Content-Type": "application/json"})
    if status is not None:  # answered (a refusal, or an error): the server must still serve
        with triton_http.InferenceServerClient(f"127.0.0.1:{serve_process.port}") as client:
            assert len(classify(client, "clca", [_png(64, 48)])) == 1
        return
    # SIGABRT from the bundled server; SIGKILL where the out-of-memory killer gets there first.
    _assert_serve_died_in_one_line(serve_process, "killed by SIG")

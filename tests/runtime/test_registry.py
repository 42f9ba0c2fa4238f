"""A runtime and a power meter added from this file alone (one module + one registry entry each, as
docs/layout.md's recipes say) show up everywhere the tool lists them: predict, bench (with its own
command-line option), doctor, report environments, bench's power report, and a one-line refusal
from triton-repo, which has no stock Triton backend for them."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from clca_deploy.bench.power.meter import Detection, ThreadedPowerSampler
from clca_deploy.bench.power.picker import register_power_sampler, unregister_power_sampler
from clca_deploy.cli import app
from clca_deploy.errors import ClcaDeployError
from clca_deploy.runtime.base import ONNX_FILE, BackendBase, InputSpec, ModelDescription, RuntimeSpec, check_batch
from clca_deploy.runtime.options import check_threads, cli_option, threads_option
from clca_deploy.runtime.registry import RuntimeOptions, register_runtime, runtime_names, unregister_runtime
from clca_deploy.system.checks import Check
from tests.test_outputs_safety import write_tiny_onnx
from tests.train.conftest import write_image_folder

runner = CliRunner()


# ---- the toy runtime: what a new backend module holds ------------------------------------------


@dataclass(frozen=True)
class ToyOptions:
    """The toy's own option, and one it shares with the CPU runtimes."""

    scale: float = cli_option(1.0, "--toy-scale", "Toy runtime: logits of class i are scale * i.")
    threads: int | None = threads_option()

    def __post_init__(self) -> None:
        check_threads(self.threads)
        if self.scale == 0:
            raise ClcaDeployError("--toy-scale must not be 0.")


class ToyBackend(BackendBase):
    """Logits that depend only on the option, so a test sees the option arrive: class i scores scale * i."""

    name = "toy"

    def __init__(self, path: str | Path, options: ToyOptions = ToyOptions()):
        from clca_deploy.metadata import read_onnx_metadata

        info = read_onnx_metadata(path)
        self.input_spec = InputSpec("images", info.img_size)
        self.description = ModelDescription(
            model=info.model, keep_rate=info.keep_rate, num_classes=info.num_classes, preprocess=info.preprocess,
            class_names=info.class_names, precision=info.precision,
        )
        self.providers = ("toy",)
        self.scale = options.scale

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        batch = check_batch(batch, self.input_spec)
        time.sleep(0.01)  # a real call takes time: the timed window (ToyMeter.min_window_s) is then ~60 calls
        row = self.scale * np.arange(self.description.num_classes, dtype=np.float32)
        return np.repeat(row[None], len(batch), axis=0)


TOY = RuntimeSpec(
    name="toy", backend=ToyBackend, options=ToyOptions, suffixes=(".onnx",), file_format=ONNX_FILE,
    summary="a test's toy", probes=(("toy", lambda ctx: Check("toy", "ok", "toy 1.0, scores by class index")),),
    distributions=("toy-runtime",),
)


# ---- the toy power meter: what a new sampler module holds --------------------------------------


class ToyMeter(ThreadedPowerSampler):
    """A sensor that always reads 7 W."""

    source = "toy meter"
    min_window_s = 0.6  # above the half second a reading needs, below the 2 s real sensors get: a quick test

    def _run(self, emit) -> None:
        while not self._stopping.is_set():
            emit(7.0)
            self._stopping.wait(0.01)


def detect_toy_meter(device_index: int | None) -> Detection:
    return Detection.found(ToyMeter())


@pytest.fixture
def toy_runtime():
    register_runtime(TOY)
    yield TOY
    unregister_runtime("toy")


@pytest.fixture
def toy_meter():
    register_power_sampler(detect_toy_meter, first=True)
    yield
    unregister_power_sampler(detect_toy_meter)


@pytest.fixture
def model_and_images(tmp_path):
    model = write_tiny_onnx(tmp_path / "model.onnx", class_names=["class_00", "class_01", "class_02"])
    return model, write_image_folder(tmp_path / "images", classes=3, per_class=2, size=32)


def _invoke(args):
    result = runner.invoke(app, [str(arg) for arg in args])
    return result


def test_predict_runs_the_toy_with_its_own_option(toy_runtime, model_and_images):
    model, images = model_and_images
    for scale, best in ((1.0, "class_02"), (-1.0, "class_00")):
        result = _invoke(["predict", model, images, "--runtime", "toy", "--toy-scale", scale, "--json"])
        assert result.exit_code == 0, result.output
        predictions = json.loads(result.output)["predictions"]
        assert predictions and all(p["top"][0]["name"] == best for p in predictions)


def test_the_toy_option_is_checked_before_any_model_opens(toy_runtime, model_and_images):
    model, images = model_and_images
    result = _invoke(["predict", model, images, "--runtime", "toy", "--toy-scale", 0])
    assert isinstance(result.exception, ClcaDeployError) and "--toy-scale must not be 0" in str(result.exception)
    help_text = runner.invoke(app, ["predict", "--help"], env={"COLUMNS": "250"}).output
    assert "--toy-scale" in help_text and "toy (a test's toy)" in help_text


def test_bench_measures_the_toy_and_the_toy_meter_reads_its_power(toy_runtime, toy_meter, model_and_images, tmp_path):
    model, images = model_and_images
    out = tmp_path / "bench.json"
    result = _invoke(["bench", "--data", images, "--model", model, "--runtime", "onnxruntime,toy", "--toy-scale", -1,
                      "--batch-sizes", "1", "--warmup", 0, "--iters", 30, "--out", out, "--plot", tmp_path / "b.png"])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    rows = {row["backend"]: row for row in report["results"]}
    assert set(rows) == {"onnxruntime", "toy"} and rows["toy"]["status"] == "ok", rows
    assert rows["toy"]["providers"] == ["toy"]
    assert "toy-runtime" in report["environment"]
    power = rows["toy"]["latency"]["1"]
    assert (power["power_source"], power["power_reason"]) == ("toy meter", None), power
    assert power["power_w"] == pytest.approx(7.0)


def test_doctor_lists_the_toy(toy_runtime):
    result = _invoke(["doctor", "--json"])
    assert result.exit_code == 0, result.output
    rows = {check["name"]: check for check in json.loads(result.output)["checks"]}
    assert rows["toy"] == {"name": "toy", "status": "ok", "detail": "toy 1.0, scores by class index", "fix": None}


def test_triton_repo_refuses_the_toy_in_one_line(toy_runtime, model_and_images, tmp_path):
    model, _ = model_and_images
    result = _invoke(["triton-repo", model, "-o", tmp_path / "repo", "--runtime", "toy"])
    assert isinstance(result.exception, ClcaDeployError), result.output
    message = str(result.exception)
    assert "\n" not in message and "stock Triton has no backend for the toy runtime" in message
    assert not (tmp_path / "repo").exists()


def test_without_registration_the_toy_is_unknown(model_and_images):
    model, images = model_and_images
    assert "toy" not in runtime_names()
    result = _invoke(["predict", model, images, "--runtime", "toy"])
    # --runtime is a choice of the registered runtimes (help and completion list them): a usage error, exit 2
    assert result.exit_code == 2 and "'toy' is not one of" in result.output
    assert "no such option" in _invoke(["predict", model, images, "--toy-scale", "2"]).output.lower()


def test_the_registry_refuses_a_clashing_or_repeated_runtime(toy_runtime):
    @dataclass(frozen=True)
    class Clashing:
        threads: int = cli_option(4, "--threads", "Another meaning.")

    with pytest.raises(ValueError, match="--threads"):
        register_runtime(RuntimeSpec(name="clash", backend=ToyBackend, options=Clashing, suffixes=(".onnx",),
                                     file_format=ONNX_FILE, summary="clash"))
    with pytest.raises(ValueError, match="registered already"):
        register_runtime(TOY)
    assert "clash" not in runtime_names()
    assert RuntimeOptions.from_values(scale=2.0).of("toy") == ToyOptions(scale=2.0)

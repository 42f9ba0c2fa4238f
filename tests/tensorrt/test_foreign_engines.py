"""Engines from trtexec or Polygraphy: no sidecar, so `--engine-source MODEL.onnx` says what it would have.

A "trtexec engine" here is a plan the fake TensorRT built, with nothing beside it; a crafted one is that plan
with its recorded I/O or profile changed (the fake engine reports what its plan says), so each check of the
engine against its ONNX file is shown refusing a mismatch, with the device memory freed afterwards.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from clca_deploy.errors import ClcaDeployError, UnsupportedError
from clca_deploy.runtime import open_backend
from clca_deploy.runtime.registry import RuntimeOptions
from clca_deploy.tensorrt.build import EngineConfig, build_engine
from clca_deploy.tensorrt.plan import BatchProfile
from clca_deploy.tensorrt.sidecar import sidecar_path
from tests.tensorrt import fakes
from tests.tensorrt.fakes import expected_logits, tiny_onnx
from tests.tensorrt.test_build_and_backend import GOLDEN, real_engines  # noqa: F401 (its fixture, for the trt test)

V10_3, V10_13 = "10.3.0", "10.13.3.9.post1"
NAMES = [f"leaf {i}" for i in range(15)]
quiet = lambda _: None  # noqa: E731


@pytest.fixture
def stack(monkeypatch):
    return fakes.install(monkeypatch, V10_3, devices=(("Orin", "8.7"),))


def trtexec_engine(folder: Path, onnx_path: Path, name: str = "t.engine", **config) -> Path:
    """What `trtexec --onnx=... --saveEngine=...` leaves: a plan and nothing beside it."""
    engine = Path(build_engine(onnx_path, folder / name, EngineConfig(**config), log=quiet).path)
    sidecar_path(engine).unlink()
    return engine


def rewrite_plan(engine: Path, change) -> None:
    """Change the fake plan's recorded graph or profile, as another build of the engine would have them."""
    plan = json.loads(engine.read_bytes()[len(fakes.PLAN_MAGIC):])
    change(plan)
    engine.write_bytes(fakes.PLAN_MAGIC + json.dumps(plan).encode())


def images(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((count, 3, 32, 32)).astype(np.float32)


def nothing_left(stack) -> bool:
    return stack.gpu.live() == {key: 0 for key in stack.gpu.live()}


# ---------------------------------------------------------------- without --engine-source: a recipe


def test_engine_without_sidecar_or_source_is_refused_with_the_option_to_add(tmp_path, stack):
    engine = trtexec_engine(tmp_path, tiny_onnx(tmp_path / "m.onnx"))
    stack.gpu.events.clear()  # the build loaded its plan back once
    with pytest.raises(ClcaDeployError) as error:
        open_backend(engine)
    message = str(error.value)
    assert message == (
        "t.engine has no sidecar t.engine.json saying how to preprocess images and name classes (trtexec and "
        "Polygraphy write none): add --engine-source MODEL.onnx, the ONNX file it was built from, or rebuild it "
        "with `clca-deploy build-trt`."
    )
    assert not isinstance(error.value, UnsupportedError) and not [e for e in stack.gpu.events if e[0] == "deserialize"]


# ---------------------------------------------------------------- with --engine-source: it runs


@pytest.mark.parametrize("binding", ["pycuda", "cuda-python"])
def test_engine_with_its_source_runs_with_the_sources_preprocessing_and_names(tmp_path, stack, binding):
    onnx_path = tiny_onnx(tmp_path / "m.onnx", class_names=NAMES)
    engine = trtexec_engine(tmp_path, onnx_path)
    options = RuntimeOptions.from_values(engine_source=str(onnx_path))  # as the command line gives it
    with open_backend(engine, options=options, cuda_binding=binding) as backend:
        batch = images(40)  # crosses the profile's largest batch, 32
        np.testing.assert_allclose(backend(batch), expected_logits(batch, 15), rtol=1e-5, atol=1e-6)
        description = backend.description
        assert description.class_names == tuple(NAMES) and description.preprocess["img_size"] == 32
        assert description.precision == "unknown" and description.extra["onnx_precision"] == "fp32"
        assert description.extra["engine_source"] == str(onnx_path) and backend.profile == BatchProfile(1, 8, 32)
    assert nothing_left(stack) and stack.controls.errors == []


def test_fixed_batch_engine_takes_its_batch_from_the_engine(tmp_path, stack):
    onnx_path = tiny_onnx(tmp_path / "m.onnx", batch=4)
    with open_backend(trtexec_engine(tmp_path, onnx_path), engine_source=onnx_path) as backend:
        assert backend.input_spec.batch == 4 and backend.profile == BatchProfile(4, 4, 4)
        np.testing.assert_allclose(backend(images(4)), expected_logits(images(4), 15), rtol=1e-5, atol=1e-6)


def test_fp16_io_formats_are_converted_on_the_host(tmp_path, stack):
    """trtexec --inputIOFormats=fp16:chw --outputIOFormats=fp16:chw: half-precision I/O of a float32 ONNX."""
    onnx_path = tiny_onnx(tmp_path / "m.onnx")
    engine = trtexec_engine(tmp_path, onnx_path)

    def to_half(plan):
        for tensor in plan["graph"]["inputs"] + plan["graph"]["outputs"]:
            tensor["dtype"] = "HALF"

    rewrite_plan(engine, to_half)
    batch = images(3)
    with open_backend(engine, engine_source=onnx_path) as backend:
        logits = backend(batch)
    assert logits.dtype == np.float32
    np.testing.assert_allclose(logits, expected_logits(batch.astype(np.float16), 15), rtol=1e-2, atol=1e-2)


def test_predict_and_bench_run_an_engine_with_its_source(tmp_path, stack):
    from PIL import Image
    from typer.testing import CliRunner

    from clca_deploy.bench.run import BenchConfig, run_bench
    from clca_deploy.cli import app

    onnx_path = tiny_onnx(tmp_path / "m.onnx", class_names=NAMES)
    engine = trtexec_engine(tmp_path, onnx_path)
    photos = tmp_path / "photos"
    photos.mkdir()
    for i, colour in enumerate([(200, 30, 30), (20, 180, 40)]):
        Image.new("RGB", (40, 40), colour).save(photos / f"{i}.png")
    result = CliRunner().invoke(app, ["predict", str(engine), str(photos), "--engine-source", str(onnx_path)])
    assert result.exit_code == 0, result.output
    assert result.output.count("leaf ") >= 2 and str(photos / "0.png") in result.output, result.output
    options = RuntimeOptions.from_values(engine_source=onnx_path)
    config = BenchConfig(models=(engine,), data=photos, batch_sizes=(1, 2), warmup=1, iters=2, runtime_options=options,
                         progress=False, power=False)
    (row,) = run_bench(config, log=quiet).results
    assert (row.status, row.precision, row.backend) == ("ok", "unknown", "tensorrt"), row.reason


def test_cli_predict_without_the_source_is_one_line_naming_the_option(tmp_path, stack, monkeypatch, capsys):
    from clca_deploy import cli

    engine = trtexec_engine(tmp_path, tiny_onnx(tmp_path / "m.onnx"))
    monkeypatch.setattr(sys, "argv", ["clca-deploy", "predict", str(engine), str(tmp_path)])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1 and "add --engine-source MODEL.onnx" in err, err


# ---------------------------------------------------------------- what can be checked is checked


def _rename(mode: str, name: str):
    def change(plan):
        tensor = plan["graph"][mode][0]
        if mode == "inputs":
            plan["profile"][name] = plan["profile"].pop(tensor["name"])
        tensor["name"] = name
    return change


def _set(mode: str, key: str, value):
    def change(plan):
        plan["graph"][mode][0][key] = value
    return change


def _second_output(plan):
    plan["graph"]["outputs"].append({"name": "features", "shape": [-1, 192], "dtype": "FLOAT"})


def _profile_up_to(batch: int):
    def change(plan):
        plan["profile"]["images"][2][0] = batch
    return change


CRAFTED = {
    "input renamed": (_rename("inputs", "input.1"), r"t\.engine's input is 'input\.1', m\.onnx's is 'images'; the engine was not built from m\.onnx"),
    "output renamed": (_rename("outputs", "output"), r"t\.engine's output is 'output', m\.onnx's is 'logits'"),
    "other image size": (_set("inputs", "shape", [-1, 3, 64, 64]), r"'images' has shape \(\?, 3, 64, 64\), m\.onnx declares \(\?, 3, 32, 32\)"),
    "other class count": (_set("outputs", "shape", [-1, 10]), r"'logits' has shape \(\?, 10\), m\.onnx declares \(\?, 15\)"),
    "int8 input format": (_set("inputs", "dtype", "INT8"), r"'images' is int8; this tool feeds images and reads scores as float32 or float16: .*--inputIOFormats"),
    "int32 output": (_set("outputs", "dtype", "INT32"), r"'logits' is int32"),
    "two outputs": (_second_output, r"t\.engine has 1 inputs and 2 outputs, m\.onnx one of each"),
    "profile past the bound": (_profile_up_to(5000), r"^t\.engine: batch profile 1,8,5000 must satisfy .* Rebuild it with"),
}


@pytest.mark.parametrize("case", list(CRAFTED))
def test_an_engine_that_disagrees_with_its_source_is_refused(tmp_path, stack, case):
    change, message = CRAFTED[case]
    onnx_path = tiny_onnx(tmp_path / "m.onnx")
    engine = trtexec_engine(tmp_path, onnx_path)
    rewrite_plan(engine, change)
    with pytest.raises(ClcaDeployError, match=message) as error:
        open_backend(engine, engine_source=onnx_path)
    assert "\n" not in str(error.value) and nothing_left(stack)


def test_a_fixed_size_the_source_declares_must_be_the_engines(tmp_path, stack):
    engine = trtexec_engine(tmp_path, tiny_onnx(tmp_path / "dynamic.onnx"))
    fixed = tiny_onnx(tmp_path / "m.onnx", batch=4)
    with pytest.raises(ClcaDeployError, match=r"'images' has shape \(\?, 3, 32, 32\), m\.onnx declares \(4, 3, 32, 32\)"):
        open_backend(engine, engine_source=fixed)


def test_an_engine_from_another_tensorrt_is_refused_by_tensorrt_with_the_recipe(tmp_path, monkeypatch):
    fakes.install(monkeypatch, V10_3)
    onnx_path = tiny_onnx(tmp_path / "m.onnx")
    engine = trtexec_engine(tmp_path, onnx_path)
    stack = fakes.install(monkeypatch, V10_13)
    with pytest.raises(ClcaDeployError) as error:
        open_backend(engine, engine_source=onnx_path)
    assert str(error.value) == (
        f"TensorRT {V10_13} cannot load t.engine (its messages above say why): a plan loads only on the exact TensorRT "
        "version and the GPU architecture that built it, which a plan without a sidecar does not tell beforehand; "
        "rebuild it here from m.onnx (`clca-deploy build-trt m.onnx`, or trtexec)."
    )
    assert any("not compatible with this version of TensorRT" in e for e in stack.controls.errors) and nothing_left(stack)


# ---------------------------------------------------------------- the source file itself


def test_source_given_for_an_engine_with_a_sidecar_must_be_the_file_it_was_built_from(tmp_path, stack):
    onnx_path = tiny_onnx(tmp_path / "m.onnx")
    engine = build_engine(onnx_path, tmp_path / "m.engine", EngineConfig(), log=quiet).path
    with open_backend(engine, engine_source=onnx_path) as backend:
        assert backend.description.precision == "fp32"  # the sidecar's facts, the source only confirmed
    other = tiny_onnx(tmp_path / "other.onnx", class_names=NAMES)
    with pytest.raises(ClcaDeployError, match=r"m\.engine was built from another ONNX file than other\.onnx .*drop --engine-source"):
        open_backend(engine, engine_source=other)


@pytest.mark.parametrize("content, message", [
    (None, r"--engine-source file not found: .*missing\.onnx"),
    (b"not an onnx file", r"cannot read .*bad\.onnx as ONNX \(\w+\); --engine-source takes the \.onnx file"),
    ("plain", r"has no clca-deploy metadata"),
])
def test_a_source_that_is_not_an_export_is_refused_before_tensorrt(tmp_path, stack, content, message):
    engine = trtexec_engine(tmp_path, tiny_onnx(tmp_path / "m.onnx"))
    source = tmp_path / ("missing.onnx" if content is None else "bad.onnx")
    if content == "plain":  # a valid ONNX file, without the metadata an export writes
        import onnx

        model = onnx.load(str(tmp_path / "m.onnx"))
        del model.metadata_props[:]
        onnx.save(model, str(source))
    elif content is not None:
        source.write_bytes(content)
    stack.gpu.events.clear()
    with pytest.raises(ClcaDeployError, match=message):
        open_backend(engine, engine_source=source)
    assert not [e for e in stack.gpu.events if e[0] == "deserialize"]


# ---------------------------------------------------------------- real TensorRT (GPU machines only)

@pytest.mark.trt
def test_real_engine_without_its_sidecar_runs_with_its_source(real_engines, tmp_path):  # noqa: F811
    from tests.conftest import load_golden

    onnx_path, engines = real_engines
    engine = tmp_path / "copied.engine"  # as trtexec would leave it: the plan alone
    engine.write_bytes(Path(engines["fp32"]).read_bytes())
    batch = load_golden(GOLDEN)[2]["input"]
    with open_backend(engine, engine_source=onnx_path) as foreign, open_backend(engines["fp32"]) as ours:
        assert foreign.profile == ours.profile and foreign.description.class_names == ours.description.class_names
        np.testing.assert_allclose(foreign(batch), ours(batch), rtol=0, atol=1e-5)

"""Every config.pbtxt parses with Triton's ModelConfig schema and says what the model file says."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from clca_deploy.errors import ClcaDeployError, ConfigError
from clca_deploy.tensorrt.plan import BatchProfile, plan_build
from clca_deploy.tensorrt.sidecar import build_sidecar, sidecar_path
from clca_deploy.serving.pbtxt import to_pbtxt
from clca_deploy.serving.spec import read_classifier_spec
from clca_deploy.serving.triton_config import (
    ModelNames,
    TritonRepoConfig,
    classifier_config,
    ensemble_config,
    postprocess_config,
    preprocess_config,
    resolve_max_batch,
    served_runtime,
)
from tests.serving.conftest import parse_config_text, require_module


def _parse(message):
    return parse_config_text(to_pbtxt(message))


def _classifier(spec, names, config, max_batch):
    return classifier_config(spec, names, served_runtime(spec.path, config), config, max_batch)


def _onnx_io(path):
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    (inp,), (out,) = model.graph.input, model.graph.output
    dims = lambda value: [d.dim_value for d in value.type.tensor_type.shape.dim][1:]  # noqa: E731
    return (inp.name, dims(inp)), (out.name, dims(out)), {p.key: p.value for p in model.metadata_props}


def _fake_engine(tmp_path, onnx_path, profile=BatchProfile(1, 8, 32), plan=b"not a real plan"):
    """An engine file with the sidecar `build-trt` writes (the plan bytes are only hashed here)."""
    (in_name, in_dims), (out_name, out_dims), metadata = _onnx_io(onnx_path)
    engine = tmp_path / "model.int8.engine"
    engine.write_bytes(plan)
    sidecar = build_sidecar(
        tensorrt_version="10.3.0.26", gpu_name="Orin", compute_capability="8.7", plan=plan_build((10, 3, 0), "int8", "int8"),
        io=[{"name": in_name, "mode": "input", "dtype": "float32", "shape": [-1, *in_dims]},
            {"name": out_name, "mode": "output", "dtype": "float32", "shape": [-1, *out_dims]}],
        profiles=[profile], onnx_sha256="ab" * 32, keep_rate=(0.5,), onnx_metadata=metadata,
        engine_sha256=hashlib.sha256(plan).hexdigest(),
    )
    sidecar_path(engine).write_text(json.dumps(sidecar))
    return engine


def test_onnx_classifier_config_matches_the_model(plain_onnx):
    _, onnx_path = plain_onnx
    (in_name, in_dims), (out_name, out_dims), _ = _onnx_io(onnx_path)
    spec = read_classifier_spec(onnx_path)
    names = ModelNames.for_name("leaf")
    config = _parse(_classifier(spec, names, TritonRepoConfig(max_batch=8, instances=2), max_batch=8))
    assert config.name == "leaf_classifier" and config.platform == "onnxruntime_onnx"
    assert config.max_batch_size == 8
    assert [(t.name, list(t.dims)) for t in config.input] == [(in_name, in_dims)]
    assert [(t.name, list(t.dims)) for t in config.output] == [(out_name, out_dims)]
    assert config.input[0].data_type == require_module("tritonclient.grpc.model_config_pb2").TYPE_FP32
    assert config.output[0].label_filename == "labels.txt"
    assert config.HasField("dynamic_batching")
    assert [(g.count, g.kind) for g in config.instance_group] == [(2, config.instance_group[0].KIND_GPU)]
    cpu = _parse(_classifier(spec, names, TritonRepoConfig(device="cpu"), max_batch=8))
    assert cpu.instance_group[0].kind == cpu.instance_group[0].KIND_CPU


def test_the_classifier_goes_on_the_gpu_named_by_device(plain_onnx):
    _, onnx_path = plain_onnx
    spec = read_classifier_spec(onnx_path)
    placed = {device: served_runtime(onnx_path, TritonRepoConfig(device=device)) for device in ("cpu", "cuda", "cuda:1")}
    assert {device: (served.device, served.gpu) for device, served in placed.items()} == {
        "cpu": ("cpu", None), "cuda": ("gpu", None), "cuda:1": ("gpu", 1)}
    config = _parse(_classifier(spec, ModelNames.for_name("leaf"), TritonRepoConfig(device="cuda:1"), max_batch=8))
    assert [(g.kind, list(g.gpus)) for g in config.instance_group] == [(config.instance_group[0].KIND_GPU, [1])]


def test_engine_classifier_config_matches_the_sidecar(plain_onnx, tmp_path):
    _, onnx_path = plain_onnx
    (in_name, in_dims), (out_name, out_dims), _ = _onnx_io(onnx_path)
    spec = read_classifier_spec(_fake_engine(tmp_path, onnx_path))
    assert spec.format == "TensorRT engine" and spec.max_batch == 32
    config = _parse(_classifier(spec, ModelNames.for_name("clca"), TritonRepoConfig(), max_batch=resolve_max_batch(spec, None)))
    assert config.platform == "tensorrt_plan" and config.max_batch_size == 16
    assert [(t.name, list(t.dims)) for t in config.input] == [(in_name, in_dims)]
    assert [(t.name, list(t.dims)) for t in config.output] == [(out_name, out_dims)]
    with pytest.raises(ConfigError, match="only on a GPU"):
        served_runtime(spec.path, TritonRepoConfig(device="cpu"))


def test_max_batch_stays_within_the_engine_profile(plain_onnx, tmp_path):
    _, onnx_path = plain_onnx
    spec = read_classifier_spec(_fake_engine(tmp_path, onnx_path, BatchProfile(1, 2, 4)))
    assert resolve_max_batch(spec, None) == 4
    assert resolve_max_batch(spec, 3) == 3
    with pytest.raises(ConfigError, match=r"exceeds the largest batch model\.int8\.engine was built for \(4\).*build-trt --batch 1,8,8`"):
        resolve_max_batch(spec, 8)
    # Below 8 the suggested range must still be valid (opt <= max): 1,5,5, not 1,8,5.
    with pytest.raises(ConfigError, match=r"build-trt --batch 1,5,5`"):
        resolve_max_batch(spec, 5)
    assert resolve_max_batch(read_classifier_spec(onnx_path), 64) == 64


def test_ensemble_wires_each_step_to_the_next(plain_onnx):
    _, onnx_path = plain_onnx
    spec = read_classifier_spec(onnx_path)
    names = ModelNames.for_name("clca")
    repo_config = TritonRepoConfig(top_k=3)
    configs = {
        names.preprocess: _parse(preprocess_config(spec, names, repo_config, 8)),
        names.classifier: _parse(_classifier(spec, names, repo_config, 8)),
        names.postprocess: _parse(postprocess_config(spec, names, repo_config, 8)),
    }
    ensemble = _parse(ensemble_config(spec, names, repo_config, 8))
    assert ensemble.platform == "ensemble" and ensemble.max_batch_size == 8
    available = {t.name: (t.data_type, list(t.dims)) for t in ensemble.input}
    for step in ensemble.ensemble_scheduling.step:
        model = configs[step.model_name]
        inputs = {t.name: (t.data_type, list(t.dims)) for t in model.input}
        outputs = {t.name: (t.data_type, list(t.dims)) for t in model.output}
        assert set(step.input_map) == set(inputs)
        for model_input, ensemble_tensor in step.input_map.items():
            assert available[ensemble_tensor] == inputs[model_input], (step.model_name, model_input)
        assert set(step.output_map) == set(outputs)
        available.update({ensemble_tensor: outputs[model_output] for model_output, ensemble_tensor in step.output_map.items()})
    for output in ensemble.output:
        assert available[output.name] == (output.data_type, list(output.dims))
    assert [list(o.dims) for o in ensemble.output] == [[3], [3], [3]]
    assert [o.name for o in ensemble.output] == ["CLASS_ID", "CLASS_NAME", "SCORE"]


def test_pre_and_postprocessing_carry_the_models_settings(plain_onnx):
    _, onnx_path = plain_onnx
    spec = read_classifier_spec(onnx_path)
    names = ModelNames.for_name("clca")
    pre = _parse(preprocess_config(spec, names, TritonRepoConfig(preprocess_instances=3), 8))
    assert json.loads(pre.parameters["preprocess"].string_value) == spec.info.preprocess
    assert pre.instance_group[0].count == 3
    post = _parse(postprocess_config(spec, names, TritonRepoConfig(top_k=50), 8))
    assert int(post.parameters["top_k"].string_value) == spec.num_classes  # capped at the class count
    assert json.loads(post.parameters["class_names"].string_value) == list(spec.class_names)
    assert len(spec.class_names) == spec.num_classes


@pytest.mark.parametrize("changes, message", [
    ({"name": "1abc"}, "must start with a letter"),
    ({"name": "a b"}, "must start with a letter"),
    ({"max_batch": 0}, "max batch"),
    ({"instances": 0}, "instances"),
    ({"top_k": True}, "top-k"),
    ({"device": "tpu"}, "cpu, cuda \\(every GPU\\) or cuda:N"),
    ({"max_queue_delay_us": -1}, "queue delay"),
])
def test_bad_settings_are_refused(changes, message):
    with pytest.raises(ConfigError, match=message):
        TritonRepoConfig(**changes)


def test_fixed_batch_exports_and_other_files_are_refused(tmp_path, plain_onnx):
    import onnx

    _, onnx_path = plain_onnx
    model = onnx.load(str(onnx_path))
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 4
    fixed = tmp_path / "fixed.onnx"
    onnx.save(model, str(fixed))
    with pytest.raises(ClcaDeployError, match="fixed batch of 4.*without --batch"):
        read_classifier_spec(fixed)
    checkpoint = tmp_path / "model.pth"
    checkpoint.write_bytes(np.zeros(4).tobytes())
    with pytest.raises(ClcaDeployError, match="export one with `clca-deploy export`"):
        read_classifier_spec(checkpoint)
    with pytest.raises(ClcaDeployError, match="not found"):
        read_classifier_spec(tmp_path / "missing.onnx")
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"\x08\x01garbage")
    with pytest.raises(ClcaDeployError):
        read_classifier_spec(broken)


def test_openvino_classifier_runs_on_the_cpu_with_its_own_parameters(plain_onnx):
    """The runtime's registry entry decides the backend, the device and the parameters Triton gets."""
    from clca_deploy.runtime.registry import RuntimeOptions

    _, onnx_path = plain_onnx
    spec = read_classifier_spec(onnx_path)
    options = RuntimeOptions.from_values(threads=3, inference_precision="bf16")
    config = TritonRepoConfig(runtime="openvino", runtime_options=options)
    parsed = _parse(_classifier(spec, ModelNames.for_name("clca"), config, 8))
    assert parsed.backend == "openvino" and parsed.default_model_filename == "model.onnx" and not parsed.platform
    assert parsed.instance_group[0].kind == parsed.instance_group[0].KIND_CPU
    assert {key: value.string_value for key, value in parsed.parameters.items()} == {
        "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1", "INFERENCE_NUM_THREADS": "3", "HINT_BF16": "YES",
        "ENABLE_BATCH_PADDING": "YES",
    }
    with pytest.raises(ConfigError, match="OpenVINO runs the classifier on the CPU"):
        served_runtime(onnx_path, TritonRepoConfig(runtime="openvino", device="gpu"))
    with pytest.raises(ClcaDeployError, match="unknown runtime 'tvm'"):
        TritonRepoConfig(runtime="tvm")


def test_a_checkpoint_is_refused_as_a_checkpoint_by_triton_repo(tmp_path):
    from typer.testing import CliRunner

    from clca_deploy.cli import app

    checkpoint = tmp_path / "model.pth"
    checkpoint.write_bytes(b"not read")
    result = CliRunner().invoke(app, ["triton-repo", str(checkpoint), "-o", str(tmp_path / "repo")])
    assert isinstance(result.exception, ClcaDeployError)
    assert "is a checkpoint" in str(result.exception) and "clca-deploy export" in str(result.exception)
    assert not (tmp_path / "repo").exists()


def test_settings_are_bounded_before_any_work():
    for bad in ({"max_batch": 0}, {"max_batch": 5000}, {"instances": 65}, {"preprocess_instances": True},
                {"max_queue_delay_us": -1}, {"max_queue_delay_us": 10**9}, {"top_k": 0}):
        with pytest.raises(ConfigError):
            TritonRepoConfig(**bad)
    for bad, message in (({"max_image_megapixels": 0}, "above 0"), ({"max_image_megapixels": float("nan")}, "above 0"),
                         ({"max_request_megapixels": True}, "above 0"), ({"max_image_megapixels": 500}, "at most 179.0"),
                         ({"max_image_megapixels": 50, "max_request_megapixels": 40}, "below --max-image-megapixels")):
        with pytest.raises(ConfigError, match=message):
            TritonRepoConfig(**bad)
    config = TritonRepoConfig(max_image_megapixels=12.5, max_request_megapixels=30)
    assert (config.max_image_pixels, config.max_request_pixels) == (12_500_000, 30_000_000)


def test_the_preprocess_model_gets_both_pixel_budgets(plain_onnx):
    spec = read_classifier_spec(plain_onnx[1])
    names = ModelNames.for_name("clca")
    default = _parse(preprocess_config(spec, names, TritonRepoConfig(), 8)).parameters
    assert (default["max_pixels"].string_value, default["max_request_pixels"].string_value) == ("40000000", "160000000")
    custom = _parse(preprocess_config(spec, names, TritonRepoConfig(max_image_megapixels=2, max_request_megapixels=5), 8))
    assert (custom.parameters["max_pixels"].string_value, custom.parameters["max_request_pixels"].string_value) == ("2000000", "5000000")


def test_a_damaged_profile_never_becomes_max_batch_size(plain_onnx):
    import dataclasses

    spec = read_classifier_spec(plain_onnx[1])
    for damaged in (-5, 0, True):
        with pytest.raises(ClcaDeployError, match="largest batch.*damaged"):
            resolve_max_batch(dataclasses.replace(spec, max_batch=damaged), None)


def test_openvino_pads_every_batch_the_dynamic_batcher_forms(plain_onnx):
    """Triton's OpenVINO backend fixes the model's batch at max_batch_size and fails any other batch unless
    ENABLE_BATCH_PADDING is YES (its README); the batcher forms batches of 1..max_batch_size."""
    from clca_deploy.runtime.registry import RuntimeOptions

    spec = read_classifier_spec(plain_onnx[1])
    for options in ({}, {"threads": 2}, {"inference_precision": "bf16"}):
        config = TritonRepoConfig(runtime="openvino", runtime_options=RuntimeOptions(options), max_batch=8)
        parsed = _parse(_classifier(spec, ModelNames.for_name("clca"), config, 8))
        assert parsed.max_batch_size == 8 and parsed.HasField("dynamic_batching")
        assert parsed.parameters["ENABLE_BATCH_PADDING"].string_value == "YES", options


@pytest.mark.parametrize("profile, rebuild", [
    (BatchProfile(4, 8, 32), "build-trt --batch 1,8,32"),
    (BatchProfile(2, 16, 16), "build-trt --batch 1,16,16"),
    (BatchProfile(8, 8, 8), "build-trt --batch 1,8,8"),  # one size only: as refused as a fixed-batch export
])
def test_an_engine_whose_batches_start_above_one_is_refused_with_the_profile_to_build(plain_onnx, tmp_path, profile, rebuild):
    """Triton's dynamic batcher has no minimum batch size (ModelDynamicBatching has none to set), so a batch of 1
    reaches the classifier and TensorRT's backend refuses it: triton-repo refuses the engine, naming the rebuild."""
    from clca_deploy.serving.repository import plan_triton_repository

    batcher = require_module("tritonclient.grpc.model_config_pb2").ModelDynamicBatching.DESCRIPTOR
    assert not [field.name for field in batcher.fields if "min" in field.name]  # nothing to carry the minimum in
    engine = _fake_engine(tmp_path, plain_onnx[1], profile)
    spec = read_classifier_spec(engine)
    assert spec.batch_profile == profile
    for max_batch in (None, profile.max):
        with pytest.raises(ClcaDeployError) as error:
            resolve_max_batch(spec, max_batch)
        message = str(error.value)
        assert f"batches of {profile.min}..{profile.max}" in message and f"`clca-deploy {rebuild}`" in message
        assert "\n" not in message
    for runtime_classifier in (False, True):  # `serve` takes the same path
        with pytest.raises(ClcaDeployError, match=rebuild):
            plan_triton_repository(engine, TritonRepoConfig(), runtime_classifier=runtime_classifier)


def test_an_engine_from_batch_one_keeps_its_profile_and_is_served(plain_onnx, tmp_path):
    spec = read_classifier_spec(_fake_engine(tmp_path, plain_onnx[1], BatchProfile(1, 4, 8)))
    assert spec.batch_profile == BatchProfile(1, 4, 8) and resolve_max_batch(spec, None) == 8
    assert read_classifier_spec(plain_onnx[1]).batch_profile is None  # an ONNX file takes any batch


def test_an_option_the_serving_runtime_does_not_take_is_refused_not_dropped(plain_onnx, tmp_path):
    """`serve` takes every runtime's options; one runtime serves the file, so a set option it lacks is an error."""
    from clca_deploy.runtime.registry import RuntimeOptions, command_line_options

    engine = _fake_engine(tmp_path, plain_onnx[1])
    for path, values, shown in ((engine, {"provider": "cuda"}, "--provider cuda"), (engine, {"threads": 2}, "--threads 2"),
                                (plain_onnx[1], {"inference_precision": "bf16"}, "--inference-precision bf16")):
        config = TritonRepoConfig(runtime_options=RuntimeOptions(values))
        for stock in (True, False):
            with pytest.raises(ConfigError, match=f"^the (tensorrt|onnxruntime) runtime, which runs .*, takes no {shown}; "):
                served_runtime(path, config, stock_triton=stock)
    # What a command passes when nothing was given: every option at its default, refused nowhere.
    defaults = RuntimeOptions({option.name: option.default for option in command_line_options()})
    for path in (engine, plain_onnx[1]):
        assert served_runtime(path, TritonRepoConfig(runtime_options=defaults), stock_triton=False).device == "cpu"
    assert served_runtime(plain_onnx[1], TritonRepoConfig(runtime="openvino", runtime_options=RuntimeOptions(
        {"inference_precision": "bf16", "threads": 2}))).device == "cpu"

"""Issue 23 (items 3, 6, 11, 12, 13): every number, name and shape read from a model file, an engine's
sidecar or a --config file is typed and bounded by one reader before any work, and a special file is
never read.

Each file here is crafted by the test: the tiny ONNX export of tests/test_outputs_safety.py with its
metadata_props rewritten, an engine sidecar as `build-trt` writes it and then damaged, a FIFO in
tmp_path, JSON nested past Python's recursion limit. Each goes through the CLI in a child process under
the harness's memory, CPU and wall-clock limits: it must be refused with exit 2, one line on stderr, no
traceback, and leave every file as it was. The finer rules are checked in-process on the readers.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clca_deploy.bench.labels import labels_for_model
from clca_deploy.data.preprocess import INTERPOLATIONS as PREPROCESS_INTERPOLATIONS
from clca_deploy.errors import ClcaDeployError
from clca_deploy.metadata import (
    INTERPOLATIONS,
    MAX_CLASSES,
    MAX_ONNX_BYTES,
    check_regular_file,
    load_onnx_structure,
    metadata_props,
    parse_metadata,
    read_onnx_metadata,
    read_regular_file,
    write_metadata,
)
from clca_deploy.model.checkpoint import read_train_args
from clca_deploy.tensorrt.plan import BatchProfile, plan_build
from clca_deploy.tensorrt.sidecar import build_sidecar, load_sidecar, parse_sidecar, sidecar_path
from tests.security.harness import Snapshot, assert_refused, run_cli
from tests.test_outputs_safety import write_tiny_onnx

DEEP = "[" * 100_000 + "]" * 100_000  # past Python's recursion limit: json raises RecursionError


# ---------------------------------------------------------------------------------------------
# crafting files


def craft_onnx(path: Path, graph_edit=None, **changes) -> Path:
    """The tiny export (3 classes, 32 px, logits (batch, 3)) with metadata keys changed (None: removed)
    and, optionally, its graph edited by ``graph_edit(model)``."""
    import onnx

    write_tiny_onnx(path)
    model = onnx.load(str(path))
    props = metadata_props(model)
    for key, value in changes.items():
        if value is None:
            props.pop(key, None)
        else:
            props[key] = value if isinstance(value, str) else json.dumps(value)
    write_metadata(model, props)
    if graph_edit is not None:
        graph_edit(model)
    onnx.save(model, str(path))
    return path


def symbolic_width(model) -> None:
    """Logits of a dynamic width: only the metadata then says how many classes there are."""
    dim = model.graph.output[0].type.tensor_type.shape.dim[1]
    dim.ClearField("dim_value")
    dim.dim_param = "classes"


def four_channels(model) -> None:
    model.graph.input[0].type.tensor_type.shape.dim[1].dim_value = 4


def good_props(tmp_path: Path) -> dict[str, str]:
    return metadata_props(load_onnx_structure(write_tiny_onnx(tmp_path / "good.onnx")))


def good_sidecar(props: dict[str, str], **changes) -> dict:
    """What `build-trt` writes for the tiny export, with top-level fields changed."""
    sidecar = build_sidecar(
        tensorrt_version="10.3.0.26", gpu_name="Orin", compute_capability="8.7", plan=plan_build((10, 3, 0), "fp32", "fp32"),
        io=[{"name": "images", "mode": "input", "dtype": "float32", "shape": [-1, 3, 32, 32]},
            {"name": "logits", "mode": "output", "dtype": "float32", "shape": [-1, 3]}],
        profiles=[BatchProfile(1, 8, 32)], onnx_sha256="ab" * 32, keep_rate=(0.5,), onnx_metadata=props,
        engine_sha256="cd" * 32,
    )
    sidecar.update(changes)
    return sidecar


def craft_engine(folder: Path, sidecar: dict | str) -> Path:
    """An engine file (never deserialized by these tests) and its sidecar: a dict as JSON, a str as written."""
    engine = folder / "model.engine"
    engine.write_bytes(b"not a real plan")
    sidecar_path(engine).write_text(sidecar if isinstance(sidecar, str) else json.dumps(sidecar))
    return engine


def leaf_image(folder: Path) -> Path:
    path = folder / "leaf.png"
    Image.new("RGB", (40, 40), (30, 160, 40)).save(path)
    return path


def refused_cleanly(tmp_path: Path, args: list, *fragments: str, memory_mb: int | None = 1536) -> str:
    """Run the CLI on crafted files in tmp_path: refused (exit 2, one line) and nothing there changed."""
    before = Snapshot.of(tmp_path)
    line = assert_refused(run_cli(args, tmp_path, memory_mb=memory_mb), *fragments)
    assert before.changes() == [], before.changes()
    return line


# ---------------------------------------------------------------------------------------------
# item 3: numbers that would drive unbounded work


def test_a_huge_class_count_is_refused_before_triton_repo_names_every_class(tmp_path):
    # The case: a 1.4 KB file whose logits width is dynamic, so only the metadata gives the count.
    model = craft_onnx(tmp_path / "model.onnx", symbolic_width, num_classes="100000000000000000000")
    refused_cleanly(tmp_path, ["triton-repo", model, "-o", tmp_path / "repo"], "num_classes", "1..100,000")


def test_a_huge_class_count_in_a_sidecar_is_refused_before_triton_repo(tmp_path):
    props = {**good_props(tmp_path), "num_classes": "100000000000000000000"}
    engine = craft_engine(tmp_path, good_sidecar(props))
    refused_cleanly(tmp_path, ["triton-repo", engine, "-o", tmp_path / "repo"], "num_classes", "build-trt")


def test_a_huge_resize_is_refused_before_predict_allocates_it(tmp_path):
    model = craft_onnx(tmp_path / "model.onnx", resize_size="40000")
    refused_cleanly(tmp_path, ["predict", model, leaf_image(tmp_path)], "resize_size is 40000", "32..64")


# ---------------------------------------------------------------------------------------------
# item 6: img_size against the graph input (and the sidecar's io)


def test_img_size_unlike_the_graph_input_is_refused_before_predict(tmp_path):
    model = craft_onnx(tmp_path / "model.onnx", img_size="64", resize_size="73")
    refused_cleanly(tmp_path, ["predict", model, leaf_image(tmp_path)], "takes images of shape (?, 3, 32, 32)", "img_size 64")


def test_a_graph_input_of_four_channels_is_refused(tmp_path):
    model = craft_onnx(tmp_path / "model.onnx", four_channels)
    refused_cleanly(tmp_path, ["info", model], "takes images of shape (?, 4, 32, 32)")


def test_img_size_unlike_the_engine_input_is_refused_before_loading_tensorrt(tmp_path):
    sidecar = good_sidecar(good_props(tmp_path))
    sidecar["io"][0]["shape"] = [-1, 3, 64, 64]
    engine = craft_engine(tmp_path, sidecar)
    refused_cleanly(tmp_path, ["predict", engine, leaf_image(tmp_path)], "takes images of shape (?, 3, 64, 64)", "build-trt")


# ---------------------------------------------------------------------------------------------
# item 11: malformed metadata and sidecars, deep or endless JSON


@pytest.mark.parametrize("key, value, fragment", [
    ("class_names", [1, 2, 3], "class_names holds 1"),
    ("token_schedule", [[6, 6, 6]], "token_schedule is [[6, 6, 6]]"),
    ("clca_config", DEEP, "clca_config is JSON nested too deeply"),
    ("mean", ["a", 0, 0], "mean is ['a', 0, 0]"),
    ("interpolation", "box", "interpolation is 'box'"),
])
def test_metadata_of_the_wrong_types_is_one_line(tmp_path, key, value, fragment):
    model = craft_onnx(tmp_path / "model.onnx", **{key: value})
    refused_cleanly(tmp_path, ["info", model], fragment, "export it again")


@pytest.mark.parametrize("damage, fragment", [
    (lambda s: s.update(profiles={"min": 1, "opt": 8, "max": 32}), "profiles is {'min': 1"),
    (lambda s: s["io"][0].pop("shape"), "io[0] is"),
    (lambda s: s["profiles"][0].update(max="32"), "profiles is [{'min': 1, 'opt': 8, 'max': '32'}]"),
    (lambda s: s["profiles"][0].update(min=-4), "profiles is"),
    (lambda s: s["profiles"][0].update(max=10**12), "max <= 4096"),
    (lambda s: s.update(onnx_metadata="not an object"), "onnx_metadata is 'not an object'"),
])
def test_sidecars_of_the_wrong_shape_are_one_line(tmp_path, damage, fragment):
    sidecar = good_sidecar(good_props(tmp_path))
    damage(sidecar)
    refused_cleanly(tmp_path, ["info", craft_engine(tmp_path, sidecar)], fragment, "build-trt")


@pytest.mark.parametrize("text, fragment", [
    (DEEP, "nested too deeply"),
    ("{" + '"k": 1, ' * 2_500_000 + '"end": 0}', "larger than the 16,777,216 bytes"),
])
def test_deep_or_endless_sidecar_json_is_one_line(tmp_path, text, fragment):
    refused_cleanly(tmp_path, ["info", craft_engine(tmp_path, text)], fragment)


def _fifo(path: Path) -> Path:
    os.mkfifo(path)  # nothing ever writes to it: a plain open() would wait forever
    return path


@pytest.mark.parametrize("make, fragment", [
    (lambda p: p.write_text(DEEP), "nested too deeply"),
    (lambda p: p.write_text('{"model": "evit_vit_tiny_patch16_224", "pad": "' + "x" * (2 << 20) + '"}'), "larger than the 1,048,576 bytes"),
    (_fifo, "is a named pipe (FIFO), not a regular file"),
    (lambda p: p.write_text('{"model": {"nested": {"object": 1}}}'), "'model' is not a train.py arg value"),
])
def test_deep_endless_or_special_train_args_are_one_line(tmp_path, make, fragment):
    config = tmp_path / "args.json"
    make(config)
    # info reads --config before the checkpoint (which need not exist); torch maps several GiB: no memory limit.
    refused_cleanly(tmp_path, ["info", tmp_path / "weights.pth", "--config", config], "settings file", fragment, memory_mb=None)


# ---------------------------------------------------------------------------------------------
# item 12: special files


@pytest.mark.parametrize("command, fragment", [
    ("predict", "is a named pipe (FIFO), not a regular file"), ("info", "is a named pipe (FIFO), not a regular file"),
    ("triton-repo", "model.onnx"),  # serving's own check (is_file) refuses it, as "not found"
])
def test_a_fifo_model_path_is_refused_without_blocking(tmp_path, command, fragment):
    model = _fifo(tmp_path / "model.onnx")
    args = {"predict": ["predict", model, leaf_image(tmp_path)], "info": ["info", model],
            "triton-repo": ["triton-repo", model, "-o", tmp_path / "repo"]}[command]
    refused_cleanly(tmp_path, args, fragment)


def test_a_fifo_sidecar_is_refused_without_blocking(tmp_path):
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"plan")
    _fifo(sidecar_path(engine))
    refused_cleanly(tmp_path, ["predict", engine, leaf_image(tmp_path)], "engine sidecar", "named pipe (FIFO)")


def test_a_folder_named_like_a_model_is_refused(tmp_path):
    (tmp_path / "model.onnx").mkdir()
    refused_cleanly(tmp_path, ["info", tmp_path / "model.onnx"], "is a folder, not a regular file")


def test_bounded_reads_stop_at_the_limit_and_refuse_special_files(tmp_path):
    small = tmp_path / "small.json"
    small.write_bytes(b"x" * 100)
    assert read_regular_file(small, "test file", 100) == b"x" * 100
    with pytest.raises(ClcaDeployError, match="larger than the 99 bytes"):
        read_regular_file(small, "test file", 99)
    with pytest.raises(ClcaDeployError, match="named pipe"):
        read_regular_file(_fifo(tmp_path / "pipe"), "test file", 100)
    with pytest.raises(ClcaDeployError, match="not found"):
        read_regular_file(tmp_path / "missing", "test file", 100)
    with socket.socket(socket.AF_UNIX) as server:  # another special file a path can name
        server.bind(str(tmp_path / "model.sock"))
        with pytest.raises(ClcaDeployError, match="is a socket, not a regular file"):
            check_regular_file(tmp_path / "model.sock")


def test_an_onnx_file_over_protobufs_limit_is_refused_unread(tmp_path):
    huge = tmp_path / "huge.onnx"
    with open(huge, "wb") as handle:
        handle.truncate(MAX_ONNX_BYTES + 1)  # sparse: no disk used, and nothing is read before the refusal
    with pytest.raises(ClcaDeployError, match="larger than the 2,147,483,647 bytes"):
        read_onnx_metadata(huge)


# ---------------------------------------------------------------------------------------------
# item 13: duplicate class names


def test_duplicate_class_names_are_refused_by_predict(tmp_path):
    model = craft_onnx(tmp_path / "model.onnx", class_names=["ash", "beech", "ash"])
    refused_cleanly(tmp_path, ["predict", model, leaf_image(tmp_path)], "class_names names 'ash' twice")


def test_bench_does_not_score_a_model_with_duplicate_class_names(tmp_path):
    model = craft_onnx(tmp_path / "model.onnx", class_names=["ash", "beech", "ash"])
    for name in ("ash", "beech", "oak"):
        (tmp_path / "data" / name).mkdir(parents=True)
        Image.new("RGB", (40, 40), (30, 160, 40)).save(tmp_path / "data" / name / "leaf.png")
    before = Snapshot.of(tmp_path)
    result = run_cli(["bench", "--data", tmp_path / "data", "--model", model, "--out", "-", "--iters", "1",
                      "--warmup", "0", "--batch-sizes", "1", "--no-power"], tmp_path)
    # bench keeps every model's row with a status (ARCHITECTURE 6); with none measured it exits 1.
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    (row,) = json.loads(result.stdout)["results"]
    assert row["status"] == "failed" and "class_names names 'ash' twice" in row["reason"], row
    assert row.get("accuracy") is None
    assert before.changes() == []


def test_labels_refuse_a_model_naming_one_class_twice():
    # A checkpoint's class names do not pass the metadata reader; the mapping itself refuses too.
    mapped = labels_for_model(np.array([0, 1]), ("ash", "beech"), ("ash", "beech", "ash"), 3)
    assert mapped.labels is None and "'ash'" in mapped.failure and "more than once" in mapped.failure


# ---------------------------------------------------------------------------------------------
# the rules themselves, in-process on the readers


METADATA_CASES = [
    ("num_classes", "0", "num_classes is 0"), ("num_classes", str(MAX_CLASSES + 1), "num_classes is 100001"),
    ("num_classes", "3.0", "num_classes is 3.0"), ("num_classes", "true", "num_classes is True"),
    ("img_size", "8", "img_size is 8; expected a whole number in 16..4,096"), ("img_size", "1e3", "img_size is 1000.0"),
    ("resize_size", "31", "resize_size is 31"), ("mean", "[0, 0]", "mean is [0, 0]"), ("mean", "[NaN, 0, 0]", "mean is [nan"),
    ("std", "[0.2, 0, 0.2]", "expected 3 finite numbers above 0"), ("std", "[Infinity, 1, 1]", "std is [inf"),
    ("keep_rate", "[0]", "keep_rate is [0]"), ("keep_rate", "[1.5]", "keep_rate is [1.5]"), ("keep_rate", "[]", "keep_rate is []"),
    ("keep_rate", "0.5", "keep_rate is 0.5"), ("trained_keep_rate", '["0.5"]', "trained_keep_rate is ['0.5']"),
    ("reduction_loc", "[-1]", "reduction_loc is [-1]"), ("token_schedule", "[]", "token_schedule is []"),
    ("token_schedule", "[[0, 6]]", "token_schedule is [[0, 6]]"), ("token_schedule", "[[6, 99999999]]", "token_schedule is"),
    ("token_schedule", "[6, 6]", "token_schedule is [6, 6]"), ("class_names", '["a", "b"]', "holds 2 names for 3 outputs"),
    ("class_names", '["a", "b\\nforged line", "c"]', "holds 'b\\nforged line'"), ("class_names", '["a", "", "c"]', "holds ''"),
    ("class_names", json.dumps(["a", "b", "c" * 201]), "expected names of 1..200 characters"),
    ("class_names", '{"a": 1}', "class_names holds {'a': 1}"), ("clca_config", "[1]", "clca_config is [1]"),
    ("clca_config", '{"a": ' * 9 + "1" + "}" * 9, "at most 8 levels deep"), ("interpolation", "BICUBIC", "interpolation is 'BICUBIC'"),
    ("model", "", "model is ''"), ("model", "m\x1b]0;owned\x07", "model is 'm\\x1b]0;owned\\x07'"), ("model", None, "model is missing"),
    ("source_sha256", "not a hash", "source_sha256 is 'not a hash'"), ("img_size", None, "img_size is missing"),
    ("clca_deploy.version", "x" * 201, "is 201 characters long"), ("num_classes", "1" * 5000, "num_classes is not valid JSON"),
    ("only_runtime", "OpenVINO", "only_runtime is 'OpenVINO'; expected a runtime name"),
    ("only_runtime", "openvino; rm -rf /", "only_runtime is 'openvino; rm -rf /'"), ("only_runtime", "x" * 33, "expected a runtime name"),
]


@pytest.mark.parametrize("key, value, fragment", METADATA_CASES)
def test_parse_metadata_types_and_bounds(tmp_path, key, value, fragment):
    props = good_props(tmp_path)
    if value is None:
        del props[key]
    else:
        props[key] = value
    with pytest.raises(ClcaDeployError) as error:
        parse_metadata(props, source="m.onnx")
    message = str(error.value)
    assert "\n" not in message and fragment in message and message.startswith("m.onnx has damaged"), message


def test_good_metadata_parses_and_other_formats_are_named(tmp_path):
    props = good_props(tmp_path)
    info = parse_metadata(props, source="m.onnx")
    assert (info.img_size, info.num_classes, info.preprocess["resize_size"], info.class_names) == (32, 3, 36, None)
    with pytest.raises(ClcaDeployError, match="format '2', this version reads format 1"):
        parse_metadata({**props, "clca_deploy.format": "2"}, source="m.onnx")
    with pytest.raises(ClcaDeployError, match="no clca-deploy metadata"):
        parse_metadata({}, source="m.onnx")


def test_the_output_width_must_match_the_class_count(tmp_path):
    model = craft_onnx(tmp_path / "model.onnx", num_classes="4")
    with pytest.raises(ClcaDeployError, match=r"gives 3 scores per image \(shape \(\?, 3\)\) but its metadata describes 4"):
        read_onnx_metadata(model)
    assert read_onnx_metadata(craft_onnx(tmp_path / "dynamic.onnx", symbolic_width)).num_classes == 3


def test_the_interpolations_a_file_may_name_are_those_preprocessing_knows():
    assert set(INTERPOLATIONS) == set(PREPROCESS_INTERPOLATIONS)


SIDECAR_CASES = [
    (lambda s: s.pop("io"), "io is None"), (lambda s: s["io"].pop(), "lists 1 inputs and 0 outputs"),
    (lambda s: s["io"][1].update(shape=[-1, 4]), "gives 4 scores per image"),
    (lambda s: s["io"][0].update(dtype="complex128"), "io[0] is"), (lambda s: s["io"][0].update(shape=[-1, 3, 32, True]), "io[0] is"),
    (lambda s: s["io"][0].update(shape=[4, 3, 32, 32]), "batch 4 only"), (lambda s: s.update(profiles=[]), "profiles is []"),
    (lambda s: s["profiles"][0].update(opt=64), "profiles is"), (lambda s: s.update(tensorrt_version="ten"), "tensorrt_version is 'ten'"),
    (lambda s: s.update(compute_capability=8.7), "compute_capability is 8.7"), (lambda s: s.update(strongly_typed="yes"), "strongly_typed is 'yes'"),
    (lambda s: s.update(builder_flags=["FP16; rm -rf"]), "builder_flags is"), (lambda s: s.update(notes=["a\nb"]), "notes is"),
    (lambda s: s.update(engine_sha256="cd"), "engine_sha256 is 'cd'"), (lambda s: s.update(keep_rate=[2]), "keep_rate is [2]"),
    (lambda s: s["onnx_metadata"].update(img_size=32), "img_size is 32, not text"),
    (lambda s: s["onnx_metadata"].update(class_names='["a", "a", "b"]'), "class_names names 'a' twice"),
]


@pytest.mark.parametrize("damage, fragment", SIDECAR_CASES)
def test_parse_sidecar_types_and_bounds(tmp_path, damage, fragment):
    sidecar = good_sidecar(good_props(tmp_path))
    damage(sidecar)
    with pytest.raises(ClcaDeployError) as error:
        parse_sidecar(sidecar, "m.engine.json")
    message = str(error.value)
    assert "\n" not in message and fragment in message and "build-trt" in message, message


def test_a_good_sidecar_reads_back_as_written(tmp_path):
    sidecar = good_sidecar(good_props(tmp_path))
    loaded = load_sidecar(craft_engine(tmp_path, sidecar))
    assert loaded.to_dict() == sidecar and loaded.profile == BatchProfile(1, 8, 32) and loaded.info.num_classes == 3
    assert parse_sidecar({**sidecar, "engine_sha256": None}, "m").engine_sha256 is None


def test_good_train_args_read_back(tmp_path):
    config = tmp_path / "args.json"
    args = {"model": "evit_vit_tiny_patch16_224", "num_classes": 10, "keep_rate": [0.5], "lr": 0.001, "resume": None, "eval": True}
    config.write_text(json.dumps(args))
    assert read_train_args(config) == args
    config.write_text('{"lr": NaN}')
    with pytest.raises(ClcaDeployError, match="'lr' is not a train.py arg value"):
        read_train_args(config)

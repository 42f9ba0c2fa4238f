"""Issue 17 (reliability): no output may destroy an input, replace a folder this tool did not write,
be redirected by a planted symlink, or be found unwritable only after the work; a file that is
not a checkpoint, and advice no command can follow, are one clear line.

Every refusal goes through the command line (typer's CliRunner on the app): the error is a
ClcaDeployError with a one-line message, which `clca-deploy` prints as `error: ...` with exit
code 2 (test_refusal_is_one_line_and_exit_2 checks that end to end), and every file that was
there before is byte-for-byte the same after.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from clca_deploy.artifacts import (
    atomic_folder,
    atomic_output,
    check_output_folder,
    check_output_path,
    refuse_overwriting_inputs,
)
from clca_deploy.cli import app
from clca_deploy.errors import ClcaDeployError
from tests.model.test_checkpoint import TINY, official_dict, tiny_model
from tests.train.conftest import write_image_folder

runner = CliRunner()
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


# ---------------------------------------------------------------------------------------------
# helpers and fixtures


def tree_digest(root: Path) -> dict[str, str]:
    """Every file and symlink under ``root`` (itself included), by relative path: what a refusal must keep."""
    root = Path(root)
    entries = [root] if root.is_file() else sorted(root.rglob("*"))
    found = {}
    for path in entries:
        key = str(path.relative_to(root)) if path != root else "."
        if path.is_symlink():
            found[key] = "-> " + os.readlink(path)
        elif path.is_file():
            found[key] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            found[key] = "dir"
    return found


def refused(args: list[str], *fragments: str) -> str:
    """Run the CLI; it must stop with a ClcaDeployError whose message is one line holding ``fragments``."""
    result = runner.invoke(app, [str(a) for a in args])
    assert isinstance(result.exception, ClcaDeployError), (result.exit_code, result.output, result.exception)
    message = str(result.exception)
    assert "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, message
    return message


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    path = tmp_path / "model.pth"
    torch.save(official_dict(tiny_model()), path)
    return path


def write_tiny_onnx(path: Path, class_names: list[str] | None = None) -> Path:
    """A tiny FP32 ONNX file with real clca-deploy metadata (3 classes, 32 px): mean colour -> MatMul."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from clca_deploy.metadata import build_metadata, write_metadata

    model = tiny_model()
    props = build_metadata(model, model.config.preprocess_settings(), model.config.keep_rate, None)
    if class_names is not None:
        props["class_names"] = json.dumps(class_names)
    weight = numpy_helper.from_array(np.eye(3, dtype=np.float32), "weight")
    nodes = [
        helper.make_node("GlobalAveragePool", ["images"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("MatMul", ["flat", "weight"], ["logits"], name="head"),
    ]
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, 32, 32])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3])],
        initializer=[weight],
    )
    onnx_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    write_metadata(onnx_model, props)
    onnx.save(onnx_model, path)
    return path


@pytest.fixture
def tiny_onnx(tmp_path) -> Path:
    return write_tiny_onnx(tmp_path / "model.onnx")


@pytest.fixture
def images(tmp_path) -> Path:
    return write_image_folder(tmp_path / "images", classes=3, per_class=2, size=32)


def _aliases(path: Path, how: str) -> Path:
    """``path`` itself, a symlink to it or a hard link of it: three names for one input."""
    if how == "same":
        return path
    alias = path.with_name(f"alias-{how}{path.suffix}")
    if how == "symlink":
        alias.symlink_to(path.name)
    else:
        os.link(path, alias)
    return alias


# ---------------------------------------------------------------------------------------------
# 1. an output that is an input


@pytest.mark.parametrize("how", ["same", "symlink", "hardlink"])
def test_refuse_overwriting_inputs_sees_the_same_file_under_any_name(tmp_path, how):
    source = tmp_path / "in.pth"
    source.write_bytes(b"weights")
    with pytest.raises(ClcaDeployError, match="is the input") as error:
        refuse_overwriting_inputs([tmp_path / "other.onnx", _aliases(source, how)], [None, source])
    assert "\n" not in str(error.value) and str(source) in str(error.value)


def test_refuse_overwriting_inputs_lets_distinct_files_and_new_paths_pass(tmp_path):
    (tmp_path / "in.pth").write_bytes(b"weights")
    (tmp_path / "other.onnx").write_bytes(b"weights")  # equal bytes, another file
    refuse_overwriting_inputs([tmp_path / "other.onnx", tmp_path / "new.onnx", None], [tmp_path / "in.pth", None])


@pytest.mark.parametrize("how", ["same", "symlink", "hardlink"])
def test_export_refuses_to_write_over_its_checkpoint(checkpoint, how):
    output = _aliases(checkpoint, how)
    before = tree_digest(checkpoint.parent)
    # A link is refused as a link before anything else: outputs are never written through one.
    expected = ("is a symbolic link to",) if how == "symlink" else ("is the input", "Choose another output path")
    refused(["export", checkpoint, "-o", output], *expected)
    assert tree_digest(checkpoint.parent) == before


@pytest.mark.parametrize("how", ["same", "symlink", "hardlink"])
def test_calibrate_fp16_refuses_to_write_over_its_model(tiny_onnx, how):
    output = _aliases(tiny_onnx, how)
    before = tree_digest(tiny_onnx.parent)
    refused(["calibrate", tiny_onnx, "--fp16", "-o", output], "is a symbolic link to" if how == "symlink" else "is the input")
    assert tree_digest(tiny_onnx.parent) == before


def test_calibrate_int8_refuses_to_write_over_its_model(tiny_onnx, images, tmp_path, monkeypatch):
    monkeypatch.setenv("CLCA_DEPLOY_CACHE", str(tmp_path / "cache"))
    before = tree_digest(tmp_path)
    refused(["calibrate", tiny_onnx, "--data", images, "--num-images", "4", "-o", tiny_onnx], "is the input")
    assert tree_digest(tmp_path) == before


def test_build_trt_refuses_outputs_that_are_inputs(tiny_onnx, tmp_path):
    before = tree_digest(tmp_path)
    refused(["build-trt", tiny_onnx, "-o", tiny_onnx], "is the input")
    refused(["build-trt", tiny_onnx, "--timing-cache", tiny_onnx], "is the input")
    # An FP32 file named like a converted one: the FP16 conversion would be written over it.
    misnamed = tiny_onnx.rename(tmp_path / "model.fp16.onnx")
    before = tree_digest(tmp_path)
    refused(["build-trt", misnamed, "--fp16", "-o", tmp_path / "m.engine"], "is the input")
    assert tree_digest(tmp_path) == before


def test_triton_repo_refuses_a_folder_holding_its_model(tiny_onnx, tmp_path):
    before = tree_digest(tmp_path)
    refused(["triton-repo", tiny_onnx, "-o", tmp_path, "--overwrite"], "holds the input model")
    assert tree_digest(tmp_path) == before


# ---------------------------------------------------------------------------------------------
# 2. triton-repo --overwrite replaces only what it wrote


def test_overwrite_refuses_a_folder_this_tool_did_not_write(tiny_onnx, tmp_path):
    target = tmp_path / "repo"
    (target / "notes").mkdir(parents=True)
    (target / "notes" / "mine.txt").write_text("keep me")
    before = tree_digest(tmp_path)
    refused(["triton-repo", tiny_onnx, "-o", target, "--overwrite"], ".clca-deploy-triton-repo", "Choose a new folder")
    assert tree_digest(tmp_path) == before


def test_overwrite_replaces_a_repository_this_tool_wrote(tiny_onnx, tmp_path):
    target = tmp_path / "repo"
    assert runner.invoke(app, ["triton-repo", str(tiny_onnx), "-o", str(target), "--top-k", "2"]).exit_code == 0
    assert (target / ".clca-deploy-triton-repo").is_file()
    refused(["triton-repo", tiny_onnx, "-o", target], "--overwrite")
    done = runner.invoke(app, ["triton-repo", str(tiny_onnx), "-o", str(target), "--top-k", "3", "--overwrite"])
    assert done.exit_code == 0, done.output
    assert "3" in (target / "clca_postprocess" / "config.pbtxt").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "repo"], "no staging or retired folder left"


def test_overwrite_never_replaces_a_repository_holding_the_model(tiny_onnx, tmp_path):
    target = tmp_path / "repo"
    assert runner.invoke(app, ["triton-repo", str(tiny_onnx), "-o", str(target)]).exit_code == 0
    served = target / "clca_classifier" / "1" / "model.onnx"  # marked as ours, but it holds the input
    before = tree_digest(tmp_path)
    refused(["triton-repo", served, "-o", target, "--overwrite"], "holds the input model")
    assert tree_digest(tmp_path) == before


@pytest.mark.parametrize("where", [".", ".."])
def test_overwrite_never_replaces_the_current_folder_or_a_parent(tiny_onnx, tmp_path, monkeypatch, where):
    work = tmp_path / "work"
    work.mkdir()
    (work / "notes.txt").write_text("mine")
    (work / ".clca-deploy-triton-repo").write_text("even with the marker")
    monkeypatch.chdir(work)
    model = tmp_path / "elsewhere" / "model.onnx"
    model.parent.mkdir()
    tiny_onnx.rename(model)
    before = tree_digest(tmp_path)
    refused(["triton-repo", model, "-o", where, "--overwrite"], "current folder")
    assert tree_digest(tmp_path) == before


def test_refusal_is_one_line_and_exit_2(tiny_onnx, tmp_path):
    """End to end through the console entry point: `-o . --overwrite` once ended in a traceback."""
    before = tree_digest(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "clca_deploy.cli", "triton-repo", str(tiny_onnx), "-o", ".", "--overwrite"],
        capture_output=True, text=True, cwd=tmp_path,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert tree_digest(tmp_path) == before


# ---------------------------------------------------------------------------------------------
# 3. temporaries: unguessable, exclusive, always removed


def _old_temporary_name(path: Path, suffix: str = "tmp") -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.{suffix}")  # what atomic_output used to write through


def test_a_symlink_planted_at_the_old_temporary_name_redirects_nothing(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    output = tmp_path / "out.onnx"
    planted = _old_temporary_name(output)
    planted.symlink_to(victim)
    with atomic_output(output) as tmp:
        assert not tmp.is_symlink() and tmp.stat().st_size == 0
        tmp.write_bytes(b"new model")
    assert victim.read_text() == "precious" and output.read_bytes() == b"new model"
    assert planted.is_symlink() and os.readlink(planted) == str(victim)  # someone else's file: left alone


def test_a_file_at_the_old_temporary_name_is_neither_used_nor_removed(tmp_path):
    output = tmp_path / "out.onnx"
    output.write_bytes(b"old model")
    squatter = _old_temporary_name(output)
    squatter.write_bytes(b"not ours")
    with atomic_output(output) as tmp:
        tmp.write_bytes(b"new model")
    assert output.read_bytes() == b"new model" and squatter.read_bytes() == b"not ours"


@pytest.mark.parametrize("interruption", [RuntimeError, KeyboardInterrupt])
def test_an_interrupted_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, interruption):
    output = tmp_path / "out.onnx"
    output.write_bytes(b"old model")
    with pytest.raises(interruption):
        with atomic_output(output) as tmp:
            tmp.write_bytes(b"half a mod")
            raise interruption()
    assert output.read_bytes() == b"old model"
    assert [p.name for p in tmp_path.iterdir()] == ["out.onnx"]


def test_temporaries_take_the_usual_file_mode_and_path_writers_work(tmp_path):
    old = os.umask(0o022)
    try:
        with atomic_output(tmp_path / "weights.pth") as tmp:
            torch.save({"w": torch.ones(2)}, tmp)  # a writer that wants a path, reopening the file
    finally:
        os.umask(old)
    assert (tmp_path / "weights.pth").stat().st_mode & 0o777 == 0o644  # not mkstemp's 0600
    assert torch.equal(torch.load(tmp_path / "weights.pth")["w"], torch.ones(2))


@pytest.mark.parametrize("old_suffix", ["partial", "old"])
def test_atomic_folder_ignores_folders_at_the_old_guessable_names(tmp_path, old_suffix):
    target = tmp_path / "repo"
    target.mkdir()
    (target / "a.txt").write_text("old")
    squatter = _old_temporary_name(target, old_suffix)
    squatter.mkdir()
    (squatter / "theirs.txt").write_text("not ours")
    with atomic_folder(target) as staging:
        (staging / "b.txt").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == ["b.txt"]
    assert (squatter / "theirs.txt").read_text() == "not ours"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["repo", squatter.name])
    assert (target.stat().st_mode & 0o777) != 0o700  # not mkdtemp's private mode


def test_atomic_folder_interrupted_keeps_the_old_folder_and_no_temporaries(tmp_path):
    target = tmp_path / "repo"
    target.mkdir()
    (target / "a.txt").write_text("old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_folder(target) as staging:
            (staging / "b.txt").write_text("new")
            raise KeyboardInterrupt
    assert tree_digest(target) == {"a.txt": hashlib.sha256(b"old").hexdigest()}
    assert [p.name for p in tmp_path.iterdir()] == ["repo"]


# ---------------------------------------------------------------------------------------------
# 6. outputs checked before the work


def test_a_parent_that_is_a_file_is_called_a_file_not_missing(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(ClcaDeployError, match="is a file") as error:
        check_output_path(afile / "model.onnx")
    assert "mkdir" not in str(error.value)
    with pytest.raises(ClcaDeployError, match=f"{afile} is a file") as error:
        check_output_path(afile / "sub" / "model.onnx")
    assert "mkdir" not in str(error.value)
    with pytest.raises(ClcaDeployError, match=f"{afile} is a file"):
        check_output_folder(afile / "sweep")


def test_a_folder_where_no_file_can_be_created_is_refused():
    with pytest.raises(ClcaDeployError, match="cannot create files in output folder /proc"):
        check_output_path("/proc/a.onnx")
    with pytest.raises(ClcaDeployError, match="/proc"):
        check_output_folder("/proc/clca-cache/calibration")


def test_no_write_permission_is_refused(tmp_path, monkeypatch):
    """os.access as a non-root user sees it (root is simulated: it may write anywhere)."""
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "old.onnx").write_bytes(b"old")
    real_access = os.access
    denied = {str(locked), str(locked / "old.onnx")}
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: str(p) not in denied and real_access(p, mode, **kw))
    with pytest.raises(ClcaDeployError, match="no write permission"):
        check_output_path(locked / "new.onnx")
    denied = {str(locked / "old.onnx")}
    with pytest.raises(ClcaDeployError, match="read-only"):
        check_output_path(locked / "old.onnx")


@pytest.mark.skipif(IS_ROOT, reason="root writes into read-only folders; the simulated test above covers it")
def test_no_write_permission_is_refused_for_real(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "old.onnx").write_bytes(b"old")
    (locked / "old.onnx").chmod(0o444)
    with pytest.raises(ClcaDeployError, match="read-only"):
        check_output_path(locked / "old.onnx")
    locked.chmod(0o555)
    try:
        with pytest.raises(ClcaDeployError, match="no write permission"):
            check_output_path(locked / "new.onnx")
    finally:
        locked.chmod(0o755)


def test_export_to_an_impossible_place_fails_before_loading(checkpoint, tmp_path, monkeypatch):
    import clca_deploy.model as model_package

    def never(*_args, **_kwargs):
        raise AssertionError("the checkpoint was loaded before the output was checked")

    monkeypatch.setattr(model_package, "load_checkpoint", never)
    refused(["export", checkpoint, "-o", "/proc/a.onnx"], "cannot create files", "/proc")
    (tmp_path / "afile").write_text("x")
    refused(["export", checkpoint, "-o", tmp_path / "afile" / "a.onnx"], "is a file")


def test_calibrate_checks_its_cache_folder_before_decoding(tiny_onnx, images, tmp_path, monkeypatch):
    (tmp_path / "afile").write_text("x")
    monkeypatch.setenv("CLCA_DEPLOY_CACHE", str(tmp_path / "afile"))

    def never(*_args, **_kwargs):
        raise AssertionError("images were decoded before the cache folder was checked")

    monkeypatch.setattr("clca_deploy.data.iter_batches", never)  # calibration_images imports it when called
    before = tree_digest(tmp_path)
    refused(["calibrate", tiny_onnx, "--data", images, "--num-images", "4"], "calibration cache folder", "--no-cache")
    assert tree_digest(tmp_path) == before


def test_build_trt_triton_repo_and_sweep_check_outputs_first(tiny_onnx, checkpoint, images, tmp_path):
    (tmp_path / "afile").write_text("x")
    before = tree_digest(tmp_path)
    refused(["build-trt", tiny_onnx, "-o", "/proc/m.engine"], "cannot create files")
    refused(["build-trt", tiny_onnx, "--timing-cache", tmp_path / "afile" / "t.cache"], "is a file")
    refused(["triton-repo", tiny_onnx, "-o", "/proc/repo"], "cannot create files")
    refused(["triton-repo", tiny_onnx, "-o", tmp_path / "afile" / "repo"], "is a file")
    refused(["sweep", checkpoint, "--keep", "0.5", "--data", images, "--workdir", tmp_path / "afile" / "s"], "is a file")
    refused(["sweep", checkpoint, "--keep", "0.5", "--data", images, "--workdir", "/proc/sweep"], "cannot create files")
    assert tree_digest(tmp_path) == before


# ---------------------------------------------------------------------------------------------
# 7. files that are not checkpoints, and edited exports


@pytest.fixture
def text_pth(tmp_path) -> Path:
    path = tmp_path / "listing.pth"
    path.write_text("total 12\ndrwxr-xr-x 2 leaf leaf 4096 Jan  1 00:00 .\n")
    return path


@pytest.mark.parametrize("command", [["info"], ["export", "-o", "{tmp}/m.onnx"], ["predict", "{tmp}/img"]])
def test_a_text_file_named_pth_is_not_a_checkpoint(text_pth, tmp_path, command):
    (tmp_path / "img").mkdir()
    args = [command[0], text_pth, *(a.format(tmp=tmp_path) for a in command[1:])]
    before = tree_digest(tmp_path)
    message = refused(args, "is not a valid checkpoint", "'total 12'", "expected a .pth/.safetensors")
    assert str(text_pth) in message
    assert tree_digest(tmp_path) == before


@pytest.mark.parametrize("edit", ["names", "width"])
def test_predict_refuses_an_export_whose_classes_do_not_match_its_scores(tmp_path, images, edit):
    path = tmp_path / "edited.onnx"
    if edit == "names":
        write_tiny_onnx(path, class_names=["a", "b", "c", "d", "e"])
    else:
        write_tiny_onnx(path)
        import onnx

        model = onnx.load(path)
        for prop in model.metadata_props:
            if prop.key == "num_classes":
                prop.value = "5"
        onnx.save(model, path)
    refused(["predict", path, images], "export it again")


# ---------------------------------------------------------------------------------------------
# 8. advice that can be followed: bare state dicts


@pytest.fixture
def bare_state_dict(tmp_path) -> tuple[Path, Path]:
    weights = tmp_path / "weights.pth"
    torch.save(tiny_model().state_dict(), weights)
    args = tmp_path / "args.json"
    args.write_text(json.dumps(TINY))
    return weights, args


def test_a_bare_state_dict_is_told_an_option_that_exists_and_it_works(bare_state_dict):
    weights, args = bare_state_dict
    message = refused(["info", weights], "--config ARGS.json")
    assert "model=..." not in message
    done = runner.invoke(app, ["info", str(weights), "--config", str(args), "--json"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.output)["settings"]["model"] == TINY["model"]


def test_export_takes_the_settings_of_a_bare_state_dict(bare_state_dict, tmp_path, monkeypatch):
    """Up to the tracing, which proves the checkpoint loaded with them; the export itself is tested elsewhere."""
    import clca_deploy.export.onnx as onnx_export

    weights, args = bare_state_dict
    loaded = {}

    def stop(model, *_args, **_kwargs):
        loaded["model"] = model.config.model
        raise ClcaDeployError("stopped before tracing")

    monkeypatch.setattr(onnx_export, "_trace_to_onnx", stop)
    refused(["export", weights, "-o", tmp_path / "m.onnx"], "--config")
    refused(["export", weights, "-o", tmp_path / "m.onnx", "--config", args], "stopped before tracing")
    assert loaded["model"] == TINY["model"]


def test_predict_and_bench_run_a_bare_state_dict_with_its_settings(tmp_path, images):
    """The same weights bare (+ --config) and as an official checkpoint: the same answers."""
    model = tiny_model()
    bare, full, args = tmp_path / "bare.pth", tmp_path / "full.pth", tmp_path / "args.json"
    torch.save(model.state_dict(), bare)
    torch.save(official_dict(model), full)
    args.write_text(json.dumps(TINY))
    refused(["predict", bare, images], "--config ARGS.json", "predict")
    answers = {}
    for name, extra in (("bare", ["--config", str(args)]), ("full", [])):
        done = runner.invoke(app, ["predict", str(tmp_path / f"{name}.pth"), str(images), "--json", *extra])
        assert done.exit_code == 0, done.output
        answers[name] = [(p["path"], [(s["name"], s["probability"]) for s in p["top"]])
                         for p in json.loads(done.output)["predictions"]]
    assert answers["bare"] == answers["full"] and len(answers["full"]) == 6

    out = tmp_path / "bench.json"
    done = runner.invoke(app, ["bench", "--data", str(images), "--reference", str(bare), "--config", str(args),
                               "--model", str(full), "--batch-sizes", "1", "--warmup", "0", "--iters", "1",
                               "--no-power", "--out", str(out)])
    assert done.exit_code == 0, done.output
    rows = json.loads(out.read_text())["results"]
    assert [r["status"] for r in rows] == ["ok", "ok"]
    assert rows[1]["accuracy"]["top1_agreement"] == 100.0 and rows[1]["accuracy"]["max_abs_logit_error"] == 0.0


def test_sweep_exports_and_benches_a_bare_state_dict_with_its_settings(bare_state_dict, tmp_path, images):
    weights, args = bare_state_dict
    workdir = tmp_path / "sweep"
    refused(["sweep", weights, "--keep", "1.0", "--data", images, "--workdir", workdir], "--config ARGS.json")
    done = runner.invoke(app, ["sweep", str(weights), "--keep", "1.0", "--data", str(images), "--workdir", str(workdir),
                               "--config", str(args), "--iters", "1", "--warmup", "0"])
    assert done.exit_code == 0, done.output
    rows = json.loads((workdir / "sweep.json").read_text())["results"]
    assert [r["status"] for r in rows] == ["ok", "ok"]
    assert rows[1]["accuracy"]["top1_agreement"] == 100.0


def test_a_missing_settings_file_is_refused_before_any_model_opens(bare_state_dict, tmp_path, images):
    weights, _ = bare_state_dict
    commands = (["predict", weights, images], ["bench", "--data", images, "--reference", weights],
                ["sweep", weights, "--keep", "0.5", "--data", images, "--workdir", tmp_path / "sweep"])
    for command in commands:
        before = tree_digest(tmp_path)
        refused([*command, "--config", tmp_path / "absent.json"], "--config", "not found")
        assert tree_digest(tmp_path) == before


def test_a_bad_settings_file_is_one_line(bare_state_dict, tmp_path):
    weights, _ = bare_state_dict
    (tmp_path / "list.json").write_text("[1, 2]")
    refused(["info", weights, "--config", tmp_path / "list.json"], "expected an object of train.py args")
    refused(["info", weights, "--config", weights], "settings file", str(weights))  # not JSON, or too large to be one


def test_an_onnx_file_without_metadata_is_not_told_to_pass_settings(tmp_path):
    import onnx
    from onnx import helper

    onnx.save(helper.make_model(helper.make_graph([], "empty", [], [])), tmp_path / "plain.onnx")
    message = refused(["predict", tmp_path / "plain.onnx", tmp_path], "clca-deploy export")
    assert "explicitly" not in message

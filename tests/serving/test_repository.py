"""`triton-repo`: a complete repository, written atomically, whose Python models run without this package."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from clca_deploy.errors import ClcaDeployError
from clca_deploy.serving import TritonRepoConfig, write_triton_repository
from clca_deploy.serving.spec import read_classifier_spec
from tests.serving.conftest import parse_model_config
from tests.serving.test_triton_config import _fake_engine


def _repository(plain_onnx, tmp_path, **options):
    _, onnx_path = plain_onnx
    return write_triton_repository(onnx_path, tmp_path / "repo", TritonRepoConfig(**options))


def test_repository_layout_and_configs(plain_onnx, tmp_path):
    result = _repository(plain_onnx, tmp_path, name="leaf", max_batch=4)
    root = Path(result.path)
    assert result.model == "leaf" and result.classifier_format == "onnx" and result.max_batch == 4
    assert sorted(p.name for p in root.iterdir()) == [
        ".clca-deploy-triton-repo", "leaf", "leaf_classifier", "leaf_postprocess", "leaf_preprocess"
    ]
    for model in result.models:
        config = parse_model_config(root / model / "config.pbtxt")
        assert config.name == model and config.max_batch_size == 4
        assert (root / model / "1").is_dir()
    assert (root / "leaf_classifier" / "1" / "model.onnx").read_bytes() == plain_onnx[1].read_bytes()
    spec = read_classifier_spec(plain_onnx[1])
    assert (root / "leaf_classifier" / "labels.txt").read_text().splitlines() == list(spec.class_names)
    for model in ("leaf_preprocess", "leaf_postprocess"):
        assert (root / model / "1" / "model.py").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "no staging folder left behind"


def test_engine_repository_holds_the_plan_and_its_sidecar(plain_onnx, tmp_path):
    engine = _fake_engine(tmp_path, plain_onnx[1])
    result = write_triton_repository(engine, tmp_path / "repo", TritonRepoConfig())
    root = Path(result.path)
    assert result.classifier_format == "plan"
    assert (root / "clca_classifier" / "1" / "model.plan").read_bytes() == engine.read_bytes()
    assert json.loads((root / "clca_classifier" / "model.plan.json").read_text())["tensorrt_version"] == "10.3.0.26"
    assert parse_model_config(root / "clca_classifier" / "config.pbtxt").platform == "tensorrt_plan"


def test_preprocessing_copy_runs_alone_and_equals_the_package(plain_onnx, tmp_path, leaves_dir):
    """The copy beside model.py is what a stock Triton container imports: no clca_deploy installed there."""
    from clca_deploy.data import PreprocessConfig, load_image, preprocess

    result = _repository(plain_onnx, tmp_path)
    version_dir = Path(result.path) / "clca_preprocess" / "1"
    image = sorted((leaves_dir / "test").rglob("*.jpg"))[0]
    settings = json.loads(parse_model_config(version_dir.parent / "config.pbtxt").parameters["preprocess"].string_value)
    out = tmp_path / "pixels.npy"
    script = (
        "import json, sys; sys.path.insert(0, sys.argv[1]);"
        "import numpy as np, clca_deploy;"
        "from clca_deploy.data.images import decode_image;"
        "from clca_deploy.data.preprocess import PreprocessConfig, preprocess;"
        "assert clca_deploy.__file__.startswith(sys.argv[1]), clca_deploy.__file__;"
        "config = PreprocessConfig.from_dict(json.loads(sys.argv[2]));"
        "np.save(sys.argv[4], preprocess(decode_image(open(sys.argv[3], 'rb').read()), config))"
    )
    # The script asserts that the copy, not this installed package, is what it imported.
    subprocess.run([sys.executable, "-c", script, str(version_dir), json.dumps(settings), str(image), str(out)],
                   check=True, cwd=tmp_path)
    expected = preprocess(load_image(image), PreprocessConfig.from_dict(settings))
    np.testing.assert_array_equal(np.load(out), expected)


def test_existing_folders_are_kept_unless_overwrite(plain_onnx, tmp_path):
    _, onnx_path = plain_onnx
    target = tmp_path / "repo"
    target.mkdir()
    (target / "mine.txt").write_text("keep me")
    with pytest.raises(ClcaDeployError, match="not empty.*--overwrite"):
        write_triton_repository(onnx_path, target)
    assert (target / "mine.txt").read_text() == "keep me"
    # A folder this tool did not write is never replaced, --overwrite or not (tests/test_outputs_safety.py).
    (target / "mine.txt").unlink()
    write_triton_repository(onnx_path, target, TritonRepoConfig(top_k=2))
    before = (target / "clca_postprocess" / "config.pbtxt").read_text()
    write_triton_repository(onnx_path, target, TritonRepoConfig(top_k=3), overwrite=True)
    assert (target / "clca_postprocess" / "config.pbtxt").read_text() != before
    assert [p.name for p in tmp_path.iterdir()] == ["repo"]


def test_a_failed_write_leaves_the_old_repository_whole(plain_onnx, tmp_path, monkeypatch):
    _, onnx_path = plain_onnx
    target = tmp_path / "repo"
    write_triton_repository(onnx_path, target, TritonRepoConfig(top_k=2))
    before = {p.relative_to(target): p.read_bytes() for p in target.rglob("*") if p.is_file()}

    import clca_deploy.serving.repository as repository

    def fail(*_args, **_kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(repository.shutil, "copyfile", fail)
    # A full disk is one line saying what to do (artifacts.WriteFailed), not an OSError's traceback.
    with pytest.raises(ClcaDeployError, match="no space left"):
        write_triton_repository(onnx_path, target, TritonRepoConfig(top_k=3), overwrite=True)
    after = {p.relative_to(target): p.read_bytes() for p in target.rglob("*") if p.is_file()}
    assert after == before
    assert [p.name for p in tmp_path.iterdir()] == ["repo"]


def test_destination_errors(plain_onnx, tmp_path):
    _, onnx_path = plain_onnx
    with pytest.raises(ClcaDeployError, match="does not exist; create it first"):
        write_triton_repository(onnx_path, tmp_path / "missing" / "repo")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ClcaDeployError, match="is a file"):
        write_triton_repository(onnx_path, tmp_path / "file")


def test_cli_writes_the_repository_and_refuses_a_full_folder_in_one_line(plain_onnx, tmp_path):
    _, onnx_path = plain_onnx
    target = tmp_path / "repo"
    command = [sys.executable, "-m", "clca_deploy.cli", "triton-repo", str(onnx_path), "-o", str(target), "--name", "leaf",
               "--max-batch", "4", "--json"]
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["model"] == "leaf" and result["max_batch"] == 4 and (target / "leaf" / "config.pbtxt").is_file()
    again = subprocess.run(command, capture_output=True, text=True)
    assert again.returncode == 2
    assert again.stderr.startswith("error: ") and again.stderr.count("\n") == 1 and "--overwrite" in again.stderr

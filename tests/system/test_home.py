"""A command run with a home folder that does not exist leaves it absent (onnxruntime and matplotlib
would create it); with a home folder, nothing is redirected."""

from __future__ import annotations

from clca_deploy.system.home import keep_missing_home_absent
from tests.security.harness import run_cli
from tests.test_outputs_safety import write_tiny_onnx
from tests.train.conftest import write_image_folder


def test_predict_does_not_create_a_missing_home(tmp_path, monkeypatch):
    model = write_tiny_onnx(tmp_path / "model.onnx")
    images = write_image_folder(tmp_path / "images", classes=1, per_class=1, size=32)
    home = tmp_path / "no-such-home"
    for name in ("XDG_CACHE_HOME", "XDG_CONFIG_HOME"):  # the child inherits this environment
        monkeypatch.delenv(name, raising=False)
    result = run_cli(["predict", model, images, "--json"], tmp_path, env={"HOME": str(home)})
    assert result.returncode == 0, result.stderr
    assert not home.exists()


def test_an_existing_home_is_left_to_the_libraries(tmp_path):
    environ = {"HOME": str(tmp_path)}
    assert keep_missing_home_absent(environ) is None and environ == {"HOME": str(tmp_path)}
    missing = {"HOME": str(tmp_path / "gone")}
    private = keep_missing_home_absent(missing)
    assert private and missing["XDG_CACHE_HOME"].startswith(private) and missing["XDG_CONFIG_HOME"].startswith(private)

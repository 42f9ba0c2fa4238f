"""The runtime-only install, as on a Jetson: Python 3.10, numpy 1.x, `pip install ".[cpu]"`, no torch.

A fresh venv is built from this checkout (about a minute with pip's cache), so the dependency split
cannot silently regress: the installed metadata, and the commands a deployment machine runs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import IN_CI, REPO_ROOT, require_shared

TORCH_SIDE = ("torch", "torchvision", "timm", "onnxscript")
GPU_SIDE = ("onnxruntime-gpu", "tensorrt", "pycuda", "cuda-python", "cuda-bindings")


def _python310() -> str:
    """A working Python 3.10: pyenv's (its shims need PYENV_VERSION, so the real binary), else PATH's."""
    candidates = []
    if shutil.which("pyenv"):
        root = subprocess.run(["pyenv", "root"], capture_output=True, text=True).stdout.strip()
        candidates += [str(path) for path in sorted(Path(root).glob("versions/3.10*/bin/python3.10"))]
    candidates += [found for found in [shutil.which("python3.10")] if found]
    for candidate in candidates:
        if subprocess.run([candidate, "--version"], capture_output=True).returncode == 0:
            return candidate
    message = "no working python3.10 (pyenv install 3.10 for the JetPack 6 check)"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def runtime_venv(tmp_path_factory) -> Path:
    venv = tmp_path_factory.mktemp("runtime310") / "venv"
    subprocess.run([_python310(), "-m", "venv", str(venv)], check=True)
    install = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", f"{REPO_ROOT}[cpu]", "numpy<2"],
        capture_output=True, text=True, timeout=900,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    return venv


def _run(venv: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([str(venv / "bin" / "clca-deploy"), *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=600)


def test_installs_no_torch_and_numpy_1(runtime_venv):
    listed = subprocess.run([str(runtime_venv / "bin" / "pip"), "list", "--format=json"], capture_output=True, text=True)
    installed = {entry["name"].lower(): entry["version"] for entry in json.loads(listed.stdout)}
    assert not [name for name in TORCH_SIDE + GPU_SIDE if name in installed], sorted(installed)
    assert installed["numpy"].startswith("1.") and "onnxruntime" in installed


def test_installed_metadata_keeps_runtimes_and_torch_in_extras(runtime_venv):
    script = "import importlib.metadata as m, json; print(json.dumps(m.requires('clca-deploy')))"
    requires = json.loads(subprocess.run([str(runtime_venv / "bin" / "python"), "-c", script], capture_output=True, text=True).stdout)
    name = lambda line: line.split(";")[0].split("[")[0].split(">")[0].split("<")[0].split("=")[0].strip().lower()  # noqa: E731
    unconditional = [line for line in requires if "extra ==" not in line]
    assert not [line for line in unconditional if name(line) in TORCH_SIDE + GPU_SIDE + ("onnxruntime",)], unconditional
    gpu = [name(line) for line in requires if "extra == \"gpu\"" in line]
    assert gpu == ["onnxruntime-gpu"]
    for extra in ("cpu", "gpu", "export", "train", "trt", "serve", "plot", "dev"):
        assert any(f'extra == "{extra}"' in line for line in requires), extra
    # No extra pulls both onnxruntime packages (dev reaches cpu through clca-deploy[cpu,...]).
    for extra in ("cpu", "gpu", "export", "train", "trt", "serve", "plot", "dev"):
        names = {name(line) for line in requires if f'extra == "{extra}"' in line}
        assert not {"onnxruntime", "onnxruntime-gpu"} <= names, extra


def test_runtime_commands_work_without_torch(runtime_venv, plain_onnx, leaves_dir, tmp_path):
    _, model = plain_onnx
    test_images = require_shared(leaves_dir / "test")
    info = _run(runtime_venv, "info", str(model), "--json", cwd=tmp_path)
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["precision"] == "fp32"

    predict = _run(runtime_venv, "predict", str(model), str(test_images / "Acer"), "--json", cwd=tmp_path)
    assert predict.returncode == 0, predict.stderr
    assert len(json.loads(predict.stdout)["predictions"]) >= 1

    report = tmp_path / "bench.json"
    bench = _run(
        runtime_venv, "bench", "--data", str(test_images), "--reference", str(model), "--model", str(model),
        "--limit", "8", "--iters", "2", "--warmup", "1", "--batch-sizes", "1", "--out", str(report), cwd=tmp_path,
    )
    assert bench.returncode == 0, bench.stderr[-2000:]
    rows = json.loads(report.read_text())["results"]
    assert [row["status"] for row in rows] == ["ok", "ok"]
    assert rows[0]["is_reference"] and "checked against PyTorch when exported" in rows[0]["reason"]

    repository = _run(runtime_venv, "triton-repo", str(model), "-o", str(tmp_path / "repo"), "--device", "cpu", cwd=tmp_path)
    assert repository.returncode == 0, repository.stderr
    assert (tmp_path / "repo" / "clca_classifier" / "1" / "model.onnx").is_file()

    doctor = _run(runtime_venv, "doctor", "--json", cwd=tmp_path)
    assert doctor.returncode == 0, doctor.stderr
    assert json.loads(doctor.stdout)["format"] == "clca_deploy.doctor/1"


@pytest.mark.parametrize(
    "command, extra",
    [
        (["export", "CHECKPOINT", "-o", "out.onnx"], "clca-deploy[export]"),
        (["info", "CHECKPOINT"], "clca-deploy[export]"),
        (["build-trt", "MODEL", "--fp16"], "clca-deploy[trt"),  # [trt], or [trt-cu12] / [trt-cu13] by the driver
    ],
)
def test_commands_that_need_more_say_which_extra(runtime_venv, plain_onnx, tmp_path, command, extra):
    checkpoint, model = plain_onnx
    args = [str(checkpoint) if arg == "CHECKPOINT" else str(model) if arg == "MODEL" else arg for arg in command]
    done = _run(runtime_venv, *args, cwd=tmp_path)
    assert done.returncode == 2 and extra in done.stderr and done.stderr.count("\n") == 1, done.stderr
    assert list(tmp_path.iterdir()) == []


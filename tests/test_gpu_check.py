"""benchmarks/gpu_check.py as a command on this machine (no GPU): one line, exit 2, a JSON saying why, no
traceback; from any folder, and without PyTorch (a Jetson or GPU server with the runtime extras only).
The check itself, against fake machines, is in tests/gpu_check/."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from clca_deploy.system.gpu import gpu_unavailable_reason
from tests.conftest import REPO_ROOT
from tests.test_imports import BLOCK_TORCH

SCRIPT = REPO_ROOT / "benchmarks" / "gpu_check.py"


@pytest.fixture
def no_gpu():
    reason = gpu_unavailable_reason(0)
    if reason is None:
        pytest.skip("a GPU is present: the check would run for minutes")
    return reason


def check_refusal(done: subprocess.CompletedProcess, out, reason: str) -> None:
    assert done.returncode == 2, done.stderr
    assert done.stderr == f"gpu_check: needs an NVIDIA GPU, and {reason}.\n"
    assert "Traceback" not in done.stderr and done.stdout == ""
    doc = json.loads(out.read_text())
    assert doc["format"] == "clca_deploy.gpu_check/2" and doc["status"] == "refused" and doc["steps"] == []
    assert doc["reason"] == f"needs an NVIDIA GPU, and {reason}" and doc["environment"]["cpu_count"] >= 1


def test_gpu_check_refuses_cleanly_without_a_gpu(tmp_path, no_gpu):
    done = subprocess.run([sys.executable, str(SCRIPT), "--out", f"{tmp_path}/results/"], capture_output=True,
                          text=True, timeout=60, cwd=tmp_path)
    check_refusal(done, tmp_path / "results" / "gpu_check.json", no_gpu)


def test_gpu_check_needs_no_torch_to_start(tmp_path, no_gpu):
    out = tmp_path / "x.json"
    script = BLOCK_TORCH + (
        f"import runpy; sys.argv = ['gpu_check.py', '--out', {str(out)!r}]\n"
        f"runpy.run_path({str(SCRIPT)!r}, run_name='__main__')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    check_refusal(done, out, no_gpu)


def test_an_output_that_cannot_be_written_is_refused_before_anything(tmp_path):
    (tmp_path / "file").write_text("")
    done = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path / "file" / "x.json")],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and done.stderr.startswith("gpu_check: output folder ")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]

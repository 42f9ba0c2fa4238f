"""benchmarks/gpu_check.py on a machine without a GPU: one line, exit 2, nothing written, no traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

from clca_deploy.system.gpu import gpu_unavailable_reason
from tests.conftest import REPO_ROOT


def test_gpu_check_refuses_cleanly_without_a_gpu(tmp_path):
    if gpu_unavailable_reason(0) is None:
        pytest.skip("a GPU is present: the check would run for minutes")
    out = tmp_path / "x.json"
    done = subprocess.run(
        [sys.executable, str(REPO_ROOT / "benchmarks" / "gpu_check.py"), "--out", str(out)],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("gpu_check: needs an NVIDIA GPU") and done.stderr.count("\n") == 1
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert not out.exists()

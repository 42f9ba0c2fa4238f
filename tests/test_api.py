"""The Python API: docs/api.md's tour runs as written, and library calls print nothing to stdout."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from clca_deploy import api
from tests.conftest import GOLDEN_DIR, LEAVES_DIR, REPO_ROOT, SHARED, require_shared

TOUR = REPO_ROOT / "docs" / "api.md"


def _tour_code() -> str:
    blocks = re.findall(r"```python\n(.*?)```", TOUR.read_text(), flags=re.S)
    assert len(blocks) == 1, "docs/api.md holds one Python tour"
    return blocks[0]


@pytest.mark.slow
def test_the_tour_runs_as_written_and_prints_only_its_own_lines(tmp_path):
    require_shared(GOLDEN_DIR)
    require_shared(LEAVES_DIR)
    code = _tour_code()
    # The tour runs from the repository root; here its two folders are pointed at the same places.
    code = code.replace('Path("../shared")', f'Path({str(SHARED)!r})')
    code = code.replace('Path("api-tour")', f'Path({str(tmp_path / "api-tour")!r})')
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT,
                          env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert lines[0].startswith("exported ") and "top-1 agreement 100%" in lines[0]
    assert re.match(r".*model\.int8\.onnx: \d+ GEMMs in INT8$", lines[1])
    assert len([line for line in lines if line.endswith("]") and ".jpg" in line]) == 2
    assert "logits (1, " in done.stdout
    assert len([line for line in lines if "p50" in line]) == 3  # the reference and both files
    assert len(lines) == 1 + 1 + 2 + 1 + 3, lines  # nothing but the tour's own prints
    assert (tmp_path / "api-tour" / "model.int8.onnx").is_file()


def test_a_library_call_prints_nothing(plain_onnx, tmp_path, capsys):
    _, onnx_path = plain_onnx
    capsys.readouterr()
    result = api.calibrate(onnx_path, tmp_path / "plain.fp16.onnx", fp16=True)
    assert result.precision == "fp16"
    assert capsys.readouterr().out == ""


def test_fp16_takes_no_calibration_settings(plain_onnx, tmp_path):
    _, onnx_path = plain_onnx
    with pytest.raises(api.ClcaDeployError, match="FP16 takes no calibration settings; drop num_images"):
        api.calibrate(onnx_path, tmp_path / "x.onnx", fp16=True, num_images=8)


def test_the_verbs_are_importable_from_one_place():
    for name in api.__all__:
        assert callable(getattr(api, name)), name
    done = subprocess.run([sys.executable, "-c", "import sys, clca_deploy.api; print('torch' in sys.modules)"],
                          capture_output=True, text=True, cwd=REPO_ROOT)
    assert done.stdout.strip() == "False"  # importing the API loads no heavy library

"""The command line: output of `info` and one-line errors with exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys

from typer.testing import CliRunner

from clca_deploy.cli import app
from tests.conftest import load_golden

runner = CliRunner()


def test_info_on_golden_checkpoint():
    path, meta, _ = load_golden("evit_tiny_clca_k0.1_224")
    result = runner.invoke(app, ["info", str(path)])
    assert result.exit_code == 0, result.output
    assert "evit_vit_tiny_patch16_224" in result.output
    assert "3:   198 -> 22    + 6" in result.output
    assert "GMACs" in result.output


def test_info_json_schedule_matches_fixture():
    path, meta, _ = load_golden("topk_tiny_clca_k0.25_224")
    result = runner.invoke(app, ["info", str(path), "--json"])
    data = json.loads(result.output)
    assert [[s["tokens_in"], s["tokens_out"]] for s in data["schedule"]] == meta["tokens_in_out_per_block"]


def test_errors_are_one_line_and_exit_2(tmp_path):
    bad = tmp_path / "model.pth"
    bad.write_bytes(b"garbage")
    proc = subprocess.run(
        [sys.executable, "-m", "clca_deploy.cli", "info", str(bad)], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1
    assert "Traceback" not in proc.stderr

"""build-trt reads its ONNX file once, besides TensorRT's own parse: one read gives the metadata, the
input and the hash that the plan, the sidecar and the checks all use (on the fake TensorRT)."""

from __future__ import annotations

import builtins
import io
import os
from pathlib import Path

from typer.testing import CliRunner

from clca_deploy.cli import app
from tests.tensorrt import fakes


def _count_opens(monkeypatch, target: Path) -> list[str]:
    """Every open of ``target`` from now on (by builtins.open or io.open, which pathlib and onnx use)."""
    opened: list[str] = []
    real_open = builtins.open

    def spy(file, *args, **kwargs):
        if isinstance(file, (str, os.PathLike)) and Path(file).resolve() == target.resolve():
            opened.append(str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", spy)
    monkeypatch.setattr(io, "open", spy)
    return opened


def test_a_plain_build_reads_the_onnx_file_at_most_twice(monkeypatch, tmp_path):
    fakes.install(monkeypatch)
    onnx_path = fakes.tiny_onnx(tmp_path / "m.onnx")
    opened = _count_opens(monkeypatch, onnx_path)
    result = CliRunner().invoke(app, ["build-trt", str(onnx_path), "-o", str(tmp_path / "m.engine")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "m.engine").is_file() and (tmp_path / "m.engine.json").is_file()
    assert 1 <= len(opened) <= 2, opened  # ours, and the (fake) TensorRT parser's


def test_the_spy_sees_every_read(monkeypatch, tmp_path):
    """The counter is no test that cannot fail: each way this code reads a file is seen."""
    from clca_deploy.artifacts import sha256_file
    from clca_deploy.metadata import load_onnx_structure, read_onnx_file

    onnx_path = fakes.tiny_onnx(tmp_path / "m.onnx")
    opened = _count_opens(monkeypatch, onnx_path)
    read_onnx_file(onnx_path)
    load_onnx_structure(onnx_path)
    sha256_file(onnx_path)
    assert len(opened) == 3, opened

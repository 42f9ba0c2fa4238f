"""Every number option is checked for NaN, infinity and range before any work: a NaN tolerance would turn
export's parity gate off, an infinite workspace would overflow, and a bad demo setting used to be found
only after the demo had written its data."""

from __future__ import annotations

import pytest
import torch

from tests.model.test_checkpoint import official_dict, tiny_model
from tests.security.harness import Snapshot, assert_refused, run_cli
from tests.test_outputs_safety import write_tiny_onnx


@pytest.fixture
def inputs(tmp_path):
    checkpoint = tmp_path / "model.pth"
    torch.save(official_dict(tiny_model()), checkpoint)
    write_tiny_onnx(tmp_path / "model.onnx")
    (tmp_path / "data").mkdir()
    return tmp_path


CASES = [
    (["export", "model.pth", "-o", "out.onnx", "--tolerance", "nan"], "--tolerance"),
    (["export", "model.pth", "-o", "out.onnx", "--tolerance", "-1"], "--tolerance"),
    (["export", "model.pth", "-o", "out.onnx", "--tolerance", "inf"], "--tolerance"),
    (["export", "model.pth", "-o", "out.onnx", "--keep", "nan"], "keep rate"),
    (["info", "model.pth", "--keep", "inf"], "keep rate"),
    (["sweep", "model.pth", "--keep", "nan", "--data", "data", "--workdir", "sweep"], "keep rate"),
    (["train", "data", "-o", "out.pth", "--lr", "inf"], "learning rate"),
    (["train", "data", "-o", "out.pth", "--minutes", "nan"], "minutes"),
    (["train", "data", "-o", "out.pth", "--keep", "-0.5"], "keep rate"),
    (["build-trt", "model.onnx", "--workspace", "inf"], "--workspace"),
    (["build-trt", "model.onnx", "--workspace", "nan"], "--workspace"),
    (["demo", "--keep", "nan", "--workdir", "demo"], "keep rate"),
    (["demo", "--img-size", "13", "--workdir", "demo"], "patch size"),
]


@pytest.mark.parametrize("args, fragment", CASES, ids=lambda case: " ".join(case) if isinstance(case, list) else None)
def test_a_bad_number_is_refused_before_any_work(inputs, args, fragment):
    before = Snapshot.of(inputs)
    assert_refused(run_cli(args, inputs, memory_mb=None), fragment)
    assert before.changes() == []  # nothing written, nothing changed

"""The demo pipeline end to end (tiny settings), and its reuse of a first run's artefacts."""

from __future__ import annotations

import json
import re

import pytest

from clca_deploy.pipeline.demo import DemoConfig, run_demo
from clca_deploy.errors import ClcaDeployError


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("demo")
    config = DemoConfig(workdir=workdir, img_size=32, epochs=1, calibration_images=16, batch_sizes=(2,), iters=2)
    lines = []
    result, report = run_demo(config, log=lines.append)
    return config, result, report, lines


def test_demo_makes_every_artefact_and_reports_what_it_wrote(first_run):
    config, result, report, lines = first_run
    names = [step.name for step in result.steps]
    assert names == ["data", "train", "export", "int8", "tensorrt", "triton", "bench"]
    assert [step.action for step in result.steps if step.name != "tensorrt"] == ["made"] * 6
    for step in result.steps:
        assert any(line.startswith(f"[{names.index(step.name) + 1}/7] {step.name}") and step.path in line for line in lines)
    served = next(step for step in result.steps if step.name == "triton")
    assert (config.workdir / "triton-repo" / "leaves" / "config.pbtxt").is_file()
    counts = re.search(r"^(\d+) test images served .*: top-1 equal (\d+)/(\d+), top-5 equal (\d+)/(\d+), "
                       r"scores within [\d.e-]+ \(int8\) (\d+)/(\d+), largest difference [\d.e+-]+$", served.detail)
    assert counts and int(counts[1]) > 0 and len(set(counts.groups())) == 1, served.detail
    saved = json.loads((config.workdir / "bench.json").read_text())
    labels = [row["label"] for row in saved["results"]]
    assert len(labels) == 3 and any("int8" in label for label in labels)
    # The table is rendered from this report, and the file holds the same numbers.
    assert saved == json.loads(json.dumps(report.to_dict()))


def test_second_run_reuses_the_first_runs_artefacts(first_run):
    config, first, _, _ = first_run
    stamps = {p: p.stat().st_mtime_ns for p in config.workdir.rglob("*") if p.suffix in (".pth", ".onnx")}
    second, _ = run_demo(config, log=lambda _: None)
    assert {s.name: s.action for s in second.steps if s.name in ("data", "train", "export", "int8")} == {
        "data": "reused", "train": "reused", "export": "reused", "int8": "reused"}
    assert next(s for s in second.steps if s.name == "triton").action == "reused"
    assert stamps == {p: p.stat().st_mtime_ns for p in stamps}


def test_a_workdir_trained_with_other_settings_is_not_overwritten(first_run):
    config, _, _, _ = first_run
    before = (config.workdir / "model.pth").read_bytes()
    from dataclasses import replace

    with pytest.raises(ClcaDeployError, match="other settings"):
        run_demo(replace(config, keep_rate=0.5), log=lambda _: None)
    assert (config.workdir / "model.pth").read_bytes() == before


def test_a_bench_report_the_work_folder_cannot_take_is_rescued(tmp_path, monkeypatch):
    """The demo's bench JSON on a full disk: one error line naming the rescue copy, which holds the report."""
    from pathlib import Path

    from clca_deploy.artifacts import WriteFailed
    from clca_deploy.bench.report import BenchReport
    from clca_deploy.pipeline.demo import _save_bench

    report = BenchReport((), {"labelled": False}, (), {"iters": 1, "warmup": 0}, {}, "2026-12-06T00:00:00+00:00")

    def full(path):
        raise WriteFailed(f"no space left in {tmp_path}; free some.", Path(path), tmp_path)

    monkeypatch.setattr(BenchReport, "write_json", lambda self, path: full(path))
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))  # the rescue copy lands here, not in /tmp
    with pytest.raises(ClcaDeployError) as error:
        _save_bench(report, tmp_path / "bench.json")
    rescued = re.search(r"The results were saved in (\S+) instead\.", str(error.value))
    assert rescued and Path(rescued.group(1)).parent == tmp_path
    assert json.loads(Path(rescued.group(1)).read_text()) == json.loads(report.to_json())

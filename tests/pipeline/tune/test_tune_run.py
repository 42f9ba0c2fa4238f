"""`tune` end to end on a tiny golden checkpoint and real leaves (onnxruntime, CPU): the pick, the
deployment, the record a rerun resumes from, a budget nothing meets, and refusals before any work."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clca_deploy.cli import app
from clca_deploy.errors import ClcaDeployError
from clca_deploy.pipeline.tune import Budget, TuneConfig, run_tune
from tests.conftest import LEAVES_DIR, load_golden, require_shared

pytestmark = pytest.mark.slow
KEEPS = (0.1, 1.0)


def _config(workdir: Path, budget_ms: float | None = 10_000.0, **changes) -> TuneConfig:
    checkpoint, _, _ = load_golden("evit_tiny_clca_k0.1_224")
    settings = dict(checkpoint=checkpoint, data=require_shared(LEAVES_DIR) / "test", budget=Budget(ms=budget_ms),
                    workdir=workdir, keep_rates=KEEPS, precisions=("fp32",), runtimes=("onnxruntime",), minutes=5,
                    min_agreement=None, limit=12, iters=3, warmup=1, steps=False)
    return TuneConfig(**{**settings, **changes})


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("tune")
    lines: list[str] = []
    return run_tune(_config(workdir), log=lines.append), workdir, lines


def test_a_loose_budget_picks_the_most_faithful_and_writes_the_deployment(tuned):
    result, workdir, _ = tuned
    measured = {m.candidate.key: m for m in result.measurements}
    assert set(measured) == {"onnxruntime/fp32/-/keep0.1", "onnxruntime/fp32/-/keep1"}
    assert all(m.status == "ok" and m.p90_ms > 0 for m in measured.values())
    # The checkpoint runs at its own keep rate 0.1: that export agrees with it on every image, so it wins.
    assert measured["onnxruntime/fp32/-/keep0.1"].agreement == 100.0
    assert result.pick.chosen.candidate.key == "onnxruntime/fp32/-/keep0.1"
    deployed = Path(result.deployment["model"])
    assert deployed.parent == workdir / "deploy" and deployed.read_bytes() == Path(result.pick.chosen.model_path).read_bytes()
    assert (workdir / "deploy" / "triton" / "clca" / "config.pbtxt").is_file()
    assert (workdir / "tune.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = json.loads((workdir / "tune.json").read_text())
    assert report["pick"]["candidate"] == "onnxruntime/fp32/-/keep0.1" and len(report["candidates"]) == 2
    assert report["settings"]["batch"] == 1 and report["environment"]["cpu_count"] >= 1


def test_a_rerun_reuses_every_file_and_measurement(tuned):
    _, workdir, _ = tuned
    lines: list[str] = []
    again = run_tune(_config(workdir), log=lines.append)
    assert any(line.startswith("resuming: 2 candidates") for line in lines), lines
    assert not any(line.startswith(("exporting", "[")) for line in lines), lines  # nothing exported or screened again
    assert again.pick.chosen.candidate.key == "onnxruntime/fp32/-/keep0.1"


def test_an_interrupted_run_resumes_where_it_stopped(tmp_path, tuned):
    _, done_workdir, _ = tuned
    # A clock that runs out after the first candidate: the second is cut off, the record keeps the first.
    ticks = itertools.chain([0.0, 0.0], itertools.repeat(1e9))
    first = run_tune(_config(tmp_path), log=lambda _: None, clock=lambda: next(ticks))
    statuses = {m.candidate.key: m.status for m in first.measurements}
    assert statuses == {"onnxruntime/fp32/-/keep0.1": "ok", "onnxruntime/fp32/-/keep1": "skipped"}
    lines: list[str] = []
    second = run_tune(_config(tmp_path), log=lines.append)
    assert any(line.startswith("resuming: 1 candidates") for line in lines), lines
    screened = [line for line in lines if line.startswith("[")]
    assert len(screened) == 1 and "keep1:" in screened[0]
    assert {m.candidate.key: m.status for m in second.measurements} == {
        "onnxruntime/fp32/-/keep0.1": "ok", "onnxruntime/fp32/-/keep1": "ok"}


def test_a_budget_nothing_meets_exits_1_naming_the_closest(tuned):
    _, workdir, _ = tuned
    checkpoint, _, _ = load_golden("evit_tiny_clca_k0.1_224")
    done = CliRunner().invoke(app, [
        "tune", str(checkpoint), "--data", str(LEAVES_DIR / "test"), "--budget-ms", "0.001", "--keep", "0.1,1.0",
        "--precision", "fp32", "--runtime", "onnxruntime", "-o", str(workdir), "--limit", "12", "--iters", "3",
        "--no-steps", "--min-agreement", "0"])
    assert done.exit_code == 1, done.output
    assert "onnxruntime/fp32/-/keep0.1" in done.stderr and "budget" in done.stderr
    assert not json.loads((workdir / "tune.json").read_text())["pick"]["candidate"]


@pytest.mark.parametrize("changes, message", [
    ({"budget": Budget()}, "give one budget"),
    ({"budget": Budget(ms=5, mj=5)}, "give one budget"),
    ({"keep_rates": (0.0,)}, "keep rates must be in (0, 1]"),
    ({"precisions": ("int4",)}, "--precision takes"),
    ({"runtimes": ("torch",)}, "tune runs onnxruntime, openvino or tensorrt"),
    ({"budget": Budget(mj=5.0)}, "--budget-mj needs a power sensor"),
])
def test_bad_requests_are_one_line_before_any_work(tmp_path, changes, message):
    with pytest.raises(ClcaDeployError, match=message.replace("(", r"\(").replace(")", r"\)").replace("]", r"\]")):
        run_tune(_config(tmp_path / "w", **changes), log=lambda _: None)
    assert not (tmp_path / "w").exists()

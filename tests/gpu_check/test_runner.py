"""gpu_check's runner: budget, statuses, partial results, dependencies, and a JSON that is valid after
every step and after a kill (SIGTERM inside a step; kill -9 of a child process mid-step)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks.gpu_check.outcome import Skip, StepError
from benchmarks.gpu_check.plan import Step
from benchmarks.gpu_check.report import FORMAT, STATUSES, Report, jsonable, summary
from benchmarks.gpu_check.runner import Budget, run_plan
from benchmarks.gpu_check.work import Work
from tests.conftest import REPO_ROOT
from tests.gpu_check.helpers import BARE_H100, TINY, by_name, load


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def work_for(tmp_path: Path, machine=BARE_H100) -> Work:
    return Work(machine, TINY, tmp_path)


def test_the_budget_leaves_out_what_would_not_fit_and_the_json_is_valid_after_every_step(tmp_path):
    clock, out = FakeClock(), tmp_path / "check.json"
    report = Report(out, {"device": 0})
    seen = []

    def step(seconds):
        def run(work):
            seen.append(load(out))  # what a kill right now would leave
            clock.now += seconds
            return {"took": seconds}
        return run

    steps = [Step("a", step(40), 30), Step("b", step(40), 30), Step("c", step(40), 30), Step("d", step(5), 10),
             Step("e", step(5), 1, needs=("c",))]
    code = run_plan(steps, work_for(tmp_path), report, Budget(100, clock), echo=lambda _: None)
    doc = load(out)
    assert code == 0 and doc["status"] == "finished" and doc["format"] == FORMAT
    records = by_name(doc)
    assert [records[n]["status"] for n in "abcde"] == ["ok", "ok", "not started", "ok", "not started"]
    assert records["c"]["reason"] == "about 30 s needed, 20 s of the 100 s budget left (raise --budget-s)"
    assert records["e"]["reason"] == "needs 'c', which was not started"
    assert records["a"]["result"] == {"took": 40} and doc["elapsed_s"] == 85
    # Before each step, the file held the plan and every step before it, finished, and this one running.
    assert [by_name(snapshot)["a"]["status"] for snapshot in seen] == ["running", "ok", "ok"]
    assert [by_name(snapshot)["b"]["status"] for snapshot in seen] == ["planned", "running", "ok"]
    assert by_name(seen[0])["d"]["status"] == "planned" and seen[0]["status"] == "running"


def test_failures_skips_and_partial_results(tmp_path):
    def fails(work):
        raise RuntimeError("no kernel image is available\nfor execution on the device")

    def partial(work):
        raise StepError("onnxruntime fell back to the CPU", {"rows": [{"label": "x", "status": "failed"}]})

    def skips(work):
        raise Skip("all 12 trt tests were skipped: TensorRT is not installed")

    steps = [Step("fails", fails, 1), Step("needs it", lambda w: {}, 1, needs=("fails",)), Step("partial", partial, 1),
             Step("skips", skips, 1), Step("fine", lambda w: {"x": 1}, 1)]
    out = tmp_path / "check.json"
    code = run_plan(steps, work_for(tmp_path), Report(out, {}), Budget(100), echo=lambda _: None)
    records = by_name(load(out))
    assert code == 1
    assert records["fails"]["status"] == "failed"
    assert records["fails"]["reason"] == "RuntimeError: no kernel image is available"  # one line
    assert "Traceback" in records["fails"]["traceback"]
    assert records["needs it"] == {**records["needs it"], "status": "skipped", "reason": "needs 'fails', which failed"}
    assert records["partial"]["status"] == "failed" and records["partial"]["result"]["rows"][0]["label"] == "x"
    assert records["skips"]["status"] == "skipped" and "TensorRT is not installed" in records["skips"]["reason"]
    assert records["fine"]["status"] == "ok"
    assert {record["status"] for record in records.values()} <= set(STATUSES)


def test_results_are_made_json_when_recorded():
    import numpy as np

    assert jsonable({"p": Path("/x"), "f": np.float32(0.5), "a": np.arange(3), "t": (1, 2)}) == {
        "p": "/x", "f": 0.5, "a": [0, 1, 2], "t": [1, 2]}


def test_only_skips_and_budget_exit_0(tmp_path):
    steps = [Step("skips", lambda w: (_ for _ in ()).throw(Skip("nothing here")), 1), Step("too big", lambda w: {}, 500)]
    assert run_plan(steps, work_for(tmp_path), Report(tmp_path / "c.json", {}), Budget(100), echo=lambda _: None) == 0


def test_sigterm_inside_a_step_marks_it_and_writes_the_rest(tmp_path):
    def terminated(work):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises before this ends
        return {}

    out = tmp_path / "check.json"
    before = signal.getsignal(signal.SIGTERM)
    steps = [Step("first", lambda w: {}, 1), Step("cut", terminated, 1), Step("after", lambda w: {}, 1)]
    code = run_plan(steps, work_for(tmp_path), Report(out, {}), Budget(100), echo=lambda _: None)
    doc = load(out)
    assert code == 1 and doc["status"] == "interrupted"
    assert [r["status"] for r in doc["steps"]] == ["ok", "interrupted", "not started"]
    assert signal.getsignal(signal.SIGTERM) is before  # put back


CHILD = """
import sys, time
from pathlib import Path
sys.path.insert(0, {repo!r})
from benchmarks.gpu_check.plan import Step
from benchmarks.gpu_check.report import Report
from benchmarks.gpu_check.runner import Budget, run_plan
from benchmarks.gpu_check.work import Work
from tests.gpu_check.helpers import BARE_H100, TINY

def blocks(work):
    Path({marker!r}).write_text("running")
    time.sleep(120)
    return {{}}

steps = [Step("quick", lambda w: {{"value": 42}}, 1), Step("blocks", blocks, 1), Step("never", lambda w: {{}}, 1)]
run_plan(steps, Work(BARE_H100, TINY, Path({folder!r})), Report(Path({out!r}), {{"device": 0}}), Budget(600))
"""


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_kill_9_in_the_middle_of_a_step_leaves_a_valid_json(tmp_path):
    out, marker = tmp_path / "check.json", tmp_path / "marker"
    script = CHILD.format(repo=str(REPO_ROOT), marker=str(marker), folder=str(tmp_path), out=str(out))
    child = subprocess.Popen([sys.executable, "-c", script], cwd=REPO_ROOT, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert child.poll() is None, "the child ended before its blocking step"
            assert time.monotonic() < deadline, "the blocking step never started"
            time.sleep(0.05)
    finally:
        child.kill()  # SIGKILL: no handler runs, nothing more is written
        child.wait()
    doc = json.loads(out.read_text())
    assert doc["status"] == "running"
    assert [(r["name"], r["status"]) for r in doc["steps"]] == [("quick", "ok"), ("blocks", "running"), ("never", "planned")]
    assert by_name(doc)["quick"]["result"] == {"value": 42}
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".check.json")]  # no temporary left visible


def test_summary_prints_the_figures(tmp_path):
    doc = {"gpu": {"name": "H100"}, "device": 1, "elapsed_s": 300, "budget_s": 480, "steps": [
        {"name": "torch GPU keep 1", "status": "ok", "seconds": 40.0, "result": {"rows": [
            {"label": "torch cuda:1 fp16 autocast keep 1", "status": "ok",
             "latency": {"1": {"p50_ms": 3.2}, "8": {"p50_ms": 11.5, "images_per_second": 695.6, "power_w": 410.2,
                                                    "energy_mj_per_image": 5.9}},
             "agreement": {"top1_agreement": 100.0, "max_abs": 0.0123}},
            {"label": "onnxruntime cuda:1 fp32 keep 1", "status": "skipped", "reason": "no CUDA provider"}]}},
        {"name": "CUDA bindings", "status": "ok", "seconds": 1.0, "result": {"bindings": {
            "cuda-python": {"status": "ok", "bytes": 64 << 20, "h2d_gb_per_s": 24.51, "d2h_gb_per_s": 25.0}}}},
        {"name": "trt tests", "status": "skipped", "reason": "TensorRT cannot run here"}]}
    text = summary(doc)
    assert "gpu_check: H100, device 1, 300 s of a 480 s budget" in text
    line = next(line for line in text.splitlines() if line.startswith("torch cuda:1 fp16"))
    assert line.split()[-9:] == ["b1", "3.20", "b8", "11.50", "695.6", "100.0", "0.012", "410.2", "5.90"]
    assert "onnxruntime cuda:1 fp32 keep 1: skipped: no CUDA provider" in text.splitlines()
    assert "cuda-python: host->GPU 24.5 GB/s" in text and "[skipped] trt tests: TensorRT cannot run here" in text

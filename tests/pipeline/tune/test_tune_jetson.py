"""`tune` on a Jetson profile, all of it faked: TensorRT 10.3 on an Orin (tests/tensorrt/fakes) builds and
runs the engines, and tegrastats (its recorded AGX Orin line, tests/bench/test_power.py) reads the board
power, so an energy budget is measured, picked and deployed (engine and sidecar)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clca_deploy.bench.power.meter import Detection
from clca_deploy.bench.power.picker import register_power_sampler, unregister_power_sampler
from clca_deploy.bench.power.tegrastats import TegrastatsSampler
from clca_deploy.pipeline.tune import Budget, run_tune
from tests.bench.test_power import AGX_ORIN_JP6, repeating
from tests.pipeline.tune.test_tune_run import _config
from tests.tensorrt import fakes

pytestmark = pytest.mark.slow


@pytest.fixture
def jetson(monkeypatch):
    stack = fakes.install(monkeypatch, "10.3.0", devices=(("Orin", "8.7"),))
    monkeypatch.setattr("clca_deploy.bench.power.rails.jetson_power_mode", lambda: "MAXN")  # nvpmodel's mode

    def detect_tegrastats(device_index):
        return Detection.found(TegrastatsSampler(lines=repeating(AGX_ORIN_JP6)))

    register_power_sampler(detect_tegrastats, first=True)
    yield stack
    unregister_power_sampler(detect_tegrastats)


def test_an_energy_budget_on_a_jetson_picks_and_deploys_an_engine(jetson, tmp_path):
    config = _config(tmp_path, budget_ms=None, budget=Budget(mj=1e6), runtimes=("tensorrt",),
                     precisions=("fp32", "fp16", "int8"), keep_rates=(0.1,), limit=8, calibration_images=8)
    result = run_tune(config, log=lambda _: None)
    measured = {m.candidate.key: m for m in result.measurements}
    assert set(measured) == {"tensorrt/fp32/-/keep0.1", "tensorrt/fp16/-/keep0.1", "tensorrt/int8/-/keep0.1"}
    assert all(m.status == "ok" for m in measured.values()), [m.reason for m in measured.values()]
    # Energy per image = board power (the recorded line's VDD_IN) x time per image: present for every engine.
    assert all(m.energy_mj_per_image is not None and m.energy_mj_per_image > 0 for m in measured.values())
    chosen = result.pick.chosen
    assert chosen is not None and chosen.candidate.runtime == "tensorrt"
    deployed = Path(result.deployment["model"])
    assert deployed.suffix == ".engine" and deployed.with_name(deployed.name + ".json").is_file()
    report = json.loads((tmp_path / "tune.json").read_text())
    assert report["pick"]["candidate"] == chosen.candidate.key
    assert report["settings"]["power_mode"] == "MAXN"  # recorded, and part of what a resumed run must match
    assert {c["candidate"]["precision"] for c in report["candidates"]} == {"fp32", "fp16", "int8"}

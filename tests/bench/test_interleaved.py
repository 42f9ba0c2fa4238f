"""The harness that times several runtimes side by side must not charge one runtime for another's call."""

from __future__ import annotations

import pytest

from clca_deploy.bench.latency import measure_interleaved


class _SwitchingMachine:
    """A fake clock and fake runtimes: each call takes its runtime's own time, plus a penalty when the
    previous call was another runtime's (its worker threads still spinning, as onnxruntime's do)."""

    def __init__(self, own_ms: dict[str, float], switch_penalty_ms: float):
        self.now, self.last, self.own_ms, self.penalty = 0.0, None, own_ms, switch_penalty_ms

    def clock(self) -> float:
        return self.now

    def run(self, name: str):
        def call(batch):
            self.now += (self.own_ms[name] + (self.penalty if self.last not in (None, name) else 0.0)) / 1000.0
            self.last = name
        return call


@pytest.mark.parametrize("order", [("ort", "ours", "peer"), ("ort", "peer", "ours"), ("peer", "ort", "ours")])
def test_each_runtime_is_timed_at_its_own_speed_whatever_runs_before_it(order):
    machine = _SwitchingMachine({"ort": 900.0, "ours": 250.0, "peer": 260.0}, switch_penalty_ms=30.0)
    stats = measure_interleaved({name: machine.run(name) for name in order}, [0], warmup=2, iters=12, clock=machine.clock)
    assert {name: len(s.samples_ms) for name, s in stats.items()} == {name: 12 for name in order}
    # Timed call by call, whichever runtime followed "ort" would read 30 ms slower than itself.
    assert {name: s.p50_ms for name, s in stats.items()} == pytest.approx({"ort": 900.0, "ours": 250.0, "peer": 260.0})

"""measure_latency's time-based power window (issue 24, item 4), on a fake clock that only the timed calls
move: never a real duration. (Here because it is gpu_check's issue; the harness is bench's.)"""

from __future__ import annotations

import json

import numpy as np
import pytest

from clca_deploy.bench.latency import MAX_TIMED_CALLS, LatencyStats, measure_latency
from clca_deploy.bench.power.meter import PowerMeasurement, ThreadedPowerSampler
from clca_deploy.bench.power.meter import POWER_WINDOW_S
from clca_deploy.bench.power.window import MIN_WINDOW_S, PowerWindow, window_seconds

BATCH = np.zeros((4, 3, 8, 8), np.float32)


class Clock:
    """Fake time, moved by the backend's calls."""

    def __init__(self, per_call: float):
        self.now, self.per_call, self.calls = 100.0, per_call, 0

    def __call__(self) -> float:
        return self.now

    def run(self, batch: np.ndarray) -> np.ndarray:
        self.calls += 1
        self.now += self.per_call
        return batch


class Sensor:
    """A stand-in sampler that declares the window it needs; its reading covers 2 J over 2.5 s."""

    source = "stand-in sensor"

    def __init__(self, min_window_s: float | None):
        if min_window_s is not None:
            self.min_window_s = min_window_s
        self.log = []

    def start(self):
        self.log.append("start")

    def stop(self):
        self.log.append("stop")
        return PowerMeasurement(0.8, 2.0, 50, 2.5, self.source)


def test_calls_go_on_until_the_seconds_and_the_count_are_both_reached():
    clock = Clock(per_call=0.3)  # an H100-fast model would be 0.0005; the arithmetic is the same
    stats = measure_latency(clock.run, BATCH, warmup=2, iters=3, min_seconds=2.0, clock=clock)
    assert stats.timed_calls == 7 == clock.calls - 2  # 7 * 0.3 s = 2.1 s >= 2 s; 6 calls would be 1.8 s
    assert stats.min_seconds == 2.0 and stats.samples_ms == pytest.approx((300.0,) * 7)

    clock = Clock(per_call=0.3)
    stats = measure_latency(clock.run, BATCH, warmup=0, iters=10, min_seconds=2.0, clock=clock)
    assert stats.timed_calls == 10  # the count is the longer requirement here


def test_a_sensor_sets_the_window_and_energy_is_per_image_actually_timed():
    clock, sensor = Clock(per_call=0.25), Sensor(min_window_s=1.0)
    stats = measure_latency(clock.run, BATCH, warmup=1, iters=2, power_sampler=sensor, clock=clock)
    assert stats.timed_calls == 4 and stats.min_seconds == 1.0 and sensor.log == ["start", "stop"]
    # 2 J over the 4 calls of 4 images that were timed (not the 2 asked for): 2000 mJ / 16.
    assert stats.energy_mj_per_image == pytest.approx(2000.0 / 16) and stats.power_w == pytest.approx(0.8)
    as_json = json.loads(json.dumps(stats.to_dict()))
    assert as_json["timed_calls"] == 4 and as_json["min_seconds"] == 1.0
    assert LatencyStats.from_dict(as_json) == stats


def test_no_sensor_no_window():
    clock = Clock(per_call=0.001)
    stats = measure_latency(clock.run, BATCH, warmup=0, iters=5, power_reason="no power sensor: here", clock=clock)
    assert stats.timed_calls == 5 and stats.min_seconds is None and stats.power_reason == "no power sensor: here"


def test_a_very_fast_call_stops_at_the_cap():
    clock = Clock(per_call=1e-7)  # 100 000 calls are 0.01 s: the window gives way, memory does not
    stats = measure_latency(clock.run, BATCH, warmup=0, iters=3, min_seconds=2.0, clock=clock)
    assert stats.timed_calls == MAX_TIMED_CALLS


class Meter(ThreadedPowerSampler):
    source = "a real-kind sampler"


def test_window_seconds_by_kind_of_sampler():
    assert window_seconds(None) == 0.0
    assert window_seconds(Meter()) == POWER_WINDOW_S == 2.0  # every real sensor: time-based
    assert window_seconds(Sensor(min_window_s=None)) == 0.0  # a stand-in that reads nothing needs nothing
    assert window_seconds(Sensor(min_window_s=0.7)) == 0.7
    assert POWER_WINDOW_S >= MIN_WINDOW_S  # the default window always passes the window's own check


def test_a_sensor_that_fails_to_start_asks_for_no_window():
    class Broken(Meter):
        def start(self):
            raise RuntimeError("NVML_ERROR_GPU_IS_LOST")

    with PowerWindow(Broken()) as window:
        assert window.min_seconds == 0.0  # no reading is coming: no reason to keep calling
    assert window.fields(5, 1)["power_reason"] == "a real-kind sampler failed: RuntimeError: NVML_ERROR_GPU_IS_LOST"

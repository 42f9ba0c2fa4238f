"""The one latency harness: warm-up, then raw per-iteration samples and their statistics."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np

from clca_deploy.bench.power.window import PowerWindow
from clca_deploy.bench.power.meter import ThreadedPowerSampler

# A time-based window stops here even short of its seconds: a call of a few microseconds would
# otherwise fill memory (and the report) with millions of samples.
MAX_TIMED_CALLS = 100_000


def _opt(kind, value):
    # numpy scalars are not JSON-serialisable, and JSON gives lists where we keep tuples: coerce on entry.
    return None if value is None else kind(value)


@dataclass(frozen=True)
class LatencyStats:
    """Host-to-host latency of one call on a batch (input on the host, output back on the host).

    The power fields cover the same timed calls (warm-up excluded): mean board power, energy per
    image, which sensor and rail, the Jetson power mode and the number of readings; or all None and
    ``power_reason`` saying why (no sensor here, a sampler failure, a window too short).

    ``min_seconds``: the timed calls went on for at least this long (a power window), so there may be
    more of them than were asked for; ``timed_calls`` says how many. None: a count of calls only.
    """

    batch_size: int
    warmup: int
    samples_ms: tuple[float, ...]
    power_w: float | None = None
    energy_mj_per_image: float | None = None
    power_source: str | None = None
    power_mode: str | None = None
    power_samples: int | None = None
    power_reason: str | None = None
    min_seconds: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "samples_ms", tuple(float(s) for s in self.samples_ms))
        for name in ("power_w", "energy_mj_per_image", "min_seconds"):
            object.__setattr__(self, name, _opt(float, getattr(self, name)))
        object.__setattr__(self, "power_samples", _opt(int, self.power_samples))

    @property
    def timed_calls(self) -> int:
        return len(self.samples_ms)

    @property
    def p50_ms(self) -> float:
        return float(np.percentile(self.samples_ms, 50))

    @property
    def p90_ms(self) -> float:
        return float(np.percentile(self.samples_ms, 90))

    @property
    def p99_ms(self) -> float:
        return float(np.percentile(self.samples_ms, 99))

    @property
    def mean_ms(self) -> float:
        return float(np.mean(self.samples_ms))

    @property
    def std_ms(self) -> float:
        return float(np.std(self.samples_ms))

    @property
    def images_per_second(self) -> float:
        return 1000.0 * self.batch_size / self.p50_ms

    def to_dict(self) -> dict:
        return {
            **asdict(self),
            "timed_calls": self.timed_calls,
            "p50_ms": self.p50_ms,
            "p90_ms": self.p90_ms,
            "p99_ms": self.p99_ms,
            "mean_ms": self.mean_ms,
            "std_ms": self.std_ms,
            "images_per_second": self.images_per_second,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "LatencyStats":
        """Inverse of ``to_dict``; the derived statistics in ``d`` are recomputed, not read."""
        # The power fields came after version 1 of the report format; reports without them stay readable.
        return cls(
            batch_size=int(d["batch_size"]),
            warmup=int(d["warmup"]),
            samples_ms=tuple(float(s) for s in d["samples_ms"]),
            power_w=d.get("power_w"),
            energy_mj_per_image=d.get("energy_mj_per_image"),
            power_source=d.get("power_source"),
            power_mode=d.get("power_mode"),
            power_samples=d.get("power_samples"),
            power_reason=d.get("power_reason"),
            min_seconds=d.get("min_seconds"),
        )


def measure_latency(
    run: Callable[[np.ndarray], object],
    batch: np.ndarray,
    warmup: int,
    iters: int,
    power_sampler: ThreadedPowerSampler | None = None,
    power_reason: str | None = None,
    min_seconds: float | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> LatencyStats:
    """Time ``run(batch)``; ``run`` must return only after its result is on the host.

    With ``power_sampler``, board power is sampled over the timed calls (not the warm-up); without
    one, ``power_reason`` says why not. A failing sampler never fails the timing.

    The timed calls go on until there have been ``iters`` of them and they have lasted ``min_seconds``
    (``LatencyStats.timed_calls`` says how many there were). ``min_seconds`` None: what the power
    sampler needs for a reading (``meter.POWER_WINDOW_S``, 2 s, while a sensor is read; 0 otherwise).
    """
    for _ in range(warmup):
        run(batch)
    with PowerWindow(power_sampler, power_reason) as power:
        floor = power.min_seconds if min_seconds is None else float(min_seconds)
        samples = _timed_calls(run, batch, iters, floor, clock)
    return LatencyStats(
        batch_size=len(batch), warmup=warmup, samples_ms=tuple(samples), min_seconds=floor or None,
        **power.fields(len(samples), len(batch)),
    )


def _timed_calls(run, batch: np.ndarray, iters: int, min_seconds: float, clock: Callable[[], float]) -> list[float]:
    """Milliseconds of each call, until ``iters`` calls and ``min_seconds``; the seconds give way at MAX_TIMED_CALLS."""
    samples: list[float] = []
    started = clock()
    while len(samples) < iters or (clock() - started < min_seconds and len(samples) < MAX_TIMED_CALLS):
        start = clock()
        run(batch)
        samples.append((clock() - start) * 1000.0)
    return samples


ROUND_CALLS = 5  # timed calls per contender per round; one untimed call before them absorbs the switch


def time_in_rounds(runs: dict[str, Callable[[np.ndarray], object]], batch: np.ndarray, warmup: int, iters: int,
                   clock: Callable[[], float] = time.perf_counter) -> dict[str, list[float]]:
    """Milliseconds of each run's calls, the runs taking turns in rounds of ROUND_CALLS calls.

    Rounds, not call-by-call alternation: a runtime's worker threads keep spinning for a while after a call,
    and on a machine with few cores they slow the next runtime's call (a few-millisecond model measured
    call by call read 2-3x its own time). Each round starts with an untimed call; drift still hits every
    run alike, a round apart."""
    for _ in range(warmup):
        for run in runs.values():
            run(batch)
    samples: dict[str, list[float]] = {name: [] for name in runs}
    while min(len(values) for values in samples.values()) < iters:
        for name, run in runs.items():
            run(batch)
            for _ in range(min(ROUND_CALLS, iters - len(samples[name]))):
                start = clock()
                run(batch)
                samples[name].append((clock() - start) * 1000.0)
    return samples


def measure_interleaved(
    runs: dict[str, Callable[[np.ndarray], object]], batch: np.ndarray, warmup: int, iters: int,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, LatencyStats]:
    """Time several runtimes on the same batch, taking turns in rounds (``time_in_rounds``).

    On a shared machine the speed drifts over minutes; taking turns puts every runtime under the
    same drift, so their comparison stays fair even when absolute numbers move. Turns are rounds
    opened by an untimed call, not single calls: timed call by call, the OpenVINO file that followed
    onnxruntime read 8-16% slower than itself (onnxruntime's threads still spinning), whichever file
    it was (docs/benchmarks.md, "Timing several runtimes").
    """
    samples = time_in_rounds(runs, batch, warmup, iters, clock)
    # One board-power reading cannot be split between runtimes that ran in alternation.
    reason = "not measured: several runtimes were timed in alternation"
    return {
        name: LatencyStats(batch_size=len(batch), warmup=warmup, samples_ms=tuple(values), power_reason=reason)
        for name, values in samples.items()
    }


def timing_batch(images: np.ndarray, size: int) -> np.ndarray:
    """``size`` images to time a call on: the first ``size``, repeated where there are fewer, contiguous."""
    return np.ascontiguousarray(np.resize(images, (size, *images.shape[1:])) if len(images) < size else images[:size])

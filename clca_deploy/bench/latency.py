"""The one latency harness: warm-up, then raw per-iteration samples and their statistics."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np

from clca_deploy.bench.power.window import PowerWindow
from clca_deploy.bench.power.meter import ThreadedPowerSampler


def _opt(kind, value):
    # numpy scalars are not JSON-serialisable, and JSON gives lists where we keep tuples: coerce on entry.
    return None if value is None else kind(value)


@dataclass(frozen=True)
class LatencyStats:
    """Host-to-host latency of one call on a batch (input on the host, output back on the host).

    The power fields cover the same timed calls (warm-up excluded): mean board power, energy per
    image, which sensor and rail, the Jetson power mode and the number of readings; or all None and
    ``power_reason`` saying why (no sensor here, a sampler failure, a window too short).
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

    def __post_init__(self) -> None:
        object.__setattr__(self, "samples_ms", tuple(float(s) for s in self.samples_ms))
        for name in ("power_w", "energy_mj_per_image"):
            object.__setattr__(self, name, _opt(float, getattr(self, name)))
        object.__setattr__(self, "power_samples", _opt(int, self.power_samples))

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
        )


def measure_latency(
    run: Callable[[np.ndarray], object],
    batch: np.ndarray,
    warmup: int,
    iters: int,
    power_sampler: ThreadedPowerSampler | None = None,
    power_reason: str | None = None,
) -> LatencyStats:
    """Time ``run(batch)``; ``run`` must return only after its result is on the host.

    With ``power_sampler``, board power is sampled over the timed calls (not the warm-up); without
    one, ``power_reason`` says why not. A failing sampler never fails the timing.
    """
    for _ in range(warmup):
        run(batch)
    samples = []
    with PowerWindow(power_sampler, power_reason) as power:
        for _ in range(iters):
            start = time.perf_counter()
            run(batch)
            samples.append((time.perf_counter() - start) * 1000.0)
    return LatencyStats(
        batch_size=len(batch), warmup=warmup, samples_ms=tuple(samples), **power.fields(iters, len(batch))
    )


def measure_interleaved(
    runs: dict[str, Callable[[np.ndarray], object]], batch: np.ndarray, warmup: int, iters: int
) -> dict[str, LatencyStats]:
    """Time several runtimes on the same batch, alternating call by call.

    On a shared machine the speed drifts over minutes; alternating puts every runtime under
    the same drift, so their comparison stays fair even when absolute numbers move.
    """
    for _ in range(warmup):
        for run in runs.values():
            run(batch)
    samples: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(iters):
        for name, run in runs.items():
            start = time.perf_counter()
            run(batch)
            samples[name].append((time.perf_counter() - start) * 1000.0)
    # One board-power reading cannot be split between runtimes that ran in alternation.
    reason = "not measured: several runtimes were timed in alternation"
    return {
        name: LatencyStats(batch_size=len(batch), warmup=warmup, samples_ms=tuple(values), power_reason=reason)
        for name, values in samples.items()
    }

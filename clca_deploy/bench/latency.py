"""The one latency harness: warm-up, then raw per-iteration samples and their statistics."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class LatencyStats:
    """Host-to-host latency of one call on a batch (input on the host, output back on the host)."""

    batch_size: int
    warmup: int
    samples_ms: tuple[float, ...]

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
        return cls(
            batch_size=int(d["batch_size"]),
            warmup=int(d["warmup"]),
            samples_ms=tuple(float(s) for s in d["samples_ms"]),
        )


def measure_latency(run: Callable[[np.ndarray], object], batch: np.ndarray, warmup: int, iters: int) -> LatencyStats:
    """Time ``run(batch)``; ``run`` must return only after its result is on the host."""
    for _ in range(warmup):
        run(batch)
    samples = []
    for _ in range(iters):
        start = time.perf_counter()
        run(batch)
        samples.append((time.perf_counter() - start) * 1000.0)
    return LatencyStats(batch_size=len(batch), warmup=warmup, samples_ms=tuple(samples))


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
    return {
        name: LatencyStats(batch_size=len(batch), warmup=warmup, samples_ms=tuple(values))
        for name, values in samples.items()
    }

"""What every power sampler shares: the measurement, the energy arithmetic, the sampling thread, and
what a sampler module's ``detect()`` answers.

The concrete samplers (``tegrastats`` and ``jtop`` on Jetson, ``nvml`` on NVIDIA GPU servers) only
say how to open their sensor and how to read it; the window bookkeeping lives here.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable, Sequence


@dataclass(frozen=True)
class Detection:
    """A sampler module's answer for this machine: a sampler ready to start, or why it does not apply."""

    sampler: "ThreadedPowerSampler | None"
    reason: str | None = None  # when ``sampler`` is None: "not a Jetson", "NVML does not start (...)"

    @classmethod
    def found(cls, sampler: "ThreadedPowerSampler") -> "Detection":
        return cls(sampler)

    @classmethod
    def absent(cls, reason: str) -> "Detection":
        return cls(None, reason)


# How long `measure_latency` keeps calling while a sensor is read: a count of calls is no window (300
# calls of a small model take 0.15 s on an H100), so windows are time-based; two NVML averaging periods
# make the running average settle on the load, and the energy counter's steps become small beside it.
POWER_WINDOW_S = 2.0


class PowerSamplingError(RuntimeError):
    """A sampler could not measure; the message is the reason the report gives."""


@dataclass(frozen=True)
class PowerMeasurement:
    """Board power over one timed window."""

    mean_w: float  # time-weighted mean over the window
    energy_j: float | None  # energy over the window
    samples: int  # readings that fell inside the window
    seconds: float  # length of the window
    source: str  # which sensor and rail, e.g. "tegrastats VDD_IN"
    power_mode: str | None = None  # Jetson nvpmodel mode, e.g. "MAXN"


def integrate_power(samples: Sequence[tuple[float, float]], start: float, end: float) -> tuple[float, float]:
    """(mean watts, joules) over [start, end] from (time s, watts) readings taken inside it.

    Trapezoids between readings; the first and the last reading are held to the window's edges,
    so readings that come at uneven intervals (a busy host delays the sampling thread) still weigh
    by the time they stand for. A single reading stands for the whole window.
    """
    if not samples:
        raise ValueError("no power readings to integrate")
    if end <= start:
        raise ValueError(f"empty window [{start}, {end}]")
    points = sorted(samples)
    energy = points[0][1] * (points[0][0] - start) + points[-1][1] * (end - points[-1][0])
    for (t_a, w_a), (t_b, w_b) in zip(points, points[1:]):
        energy += 0.5 * (w_a + w_b) * (t_b - t_a)
    return energy / (end - start), energy


class ThreadedPowerSampler:
    """Reads power in a background thread between ``start()`` and ``stop()``; reusable.

    ``window.PowerWindow`` is the context manager around it that never raises.

    Subclasses implement ``_open`` (acquire the sensor), ``_run(emit)`` (call ``emit(watts)`` for
    each reading until ``self._stopping`` is set or the source ends) and ``_close``. ``start()``
    returns once the first reading has arrived, so that sensor start-up (a subprocess, a driver
    handle) stays out of the timed window.
    """

    source = "power sensor"
    startup_timeout_s = 3.0
    min_window_s = POWER_WINDOW_S  # how long bench times while this sensor is read (window.window_seconds)

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._first = threading.Event()
        self._lock = threading.Lock()
        self._samples: list[tuple[float, float]] = []
        self._error: Exception | None = None
        self._start = 0.0
        self.power_mode: str | None = None

    # -- for subclasses -------------------------------------------------------------------------
    def _open(self) -> None: ...

    def _run(self, emit: Callable[[float], None]) -> None:
        raise NotImplementedError

    def _close(self) -> None:
        """Make ``_run`` return (stop a subprocess, close a client); runs before the thread is joined."""

    def _release(self) -> None:
        """Free what ``_run`` was reading from; runs after the thread has ended."""

    def _at_start(self) -> None:
        """Called just before the window opens (NVML reads its energy counter here)."""

    def _at_stop(self) -> None:
        """Called just after the window closes, before ``_close``."""

    def _failure_detail(self) -> str | None:
        """Why the source gave no reading, when it can tell."""
        return None if self._error is None else f"{type(self._error).__name__}: {self._error}"

    def _no_samples_reason(self, seconds: float) -> str:
        detail = self._failure_detail()
        if detail:
            return f"{self.source}: no reading during the timed window ({detail})"
        return f"{self.source}: no reading during the {seconds:.3f} s timed window; time more iterations"

    def _result(self, window: list[tuple[float, float]], start: float, end: float) -> PowerMeasurement:
        if not window:
            raise PowerSamplingError(self._no_samples_reason(end - start))
        mean_w, energy_j = integrate_power(window, start, end)
        return PowerMeasurement(mean_w, energy_j, len(window), end - start, self.source, self.power_mode)

    # -- the interface ----------------------------------------------------------------------------
    @property
    def sample_count(self) -> int:
        """Readings so far since ``start()`` (including the first one, before the window)."""
        with self._lock:
            return len(self._samples)

    def start(self) -> None:
        if self._thread is not None:
            raise PowerSamplingError(f"{self.source}: start() called twice without stop()")
        self._samples, self._error = [], None
        self._stopping.clear()
        self._first.clear()
        self._open()
        self._thread = threading.Thread(target=self._loop, name=f"power: {self.source}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + self.startup_timeout_s
        # Wait for the first reading, but not the full timeout when the source died (a tool that
        # printed an error and exited).
        while not self._first.wait(0.02) and self._thread.is_alive() and time.monotonic() < deadline:
            pass
        if not self._first.is_set():
            self._shutdown()
            detail = self._failure_detail()
            detail = f" ({detail})" if detail else ""
            raise PowerSamplingError(f"{self.source}: no reading within {self.startup_timeout_s:g} s{detail}")
        self._at_start()
        self._start = time.monotonic()

    def stop(self) -> PowerMeasurement:
        end = time.monotonic()
        if self._thread is None:
            raise PowerSamplingError(f"{self.source}: stop() without start()")
        try:
            self._at_stop()
        finally:
            self._shutdown()
        with self._lock:
            window = [(t, w) for t, w in self._samples if self._start <= t <= end]
        return self._result(window, self._start, end)

    def _emit(self, watts: float) -> None:
        with self._lock:
            self._samples.append((time.monotonic(), float(watts)))
        self._first.set()

    def _loop(self) -> None:
        try:
            self._run(self._emit)
        except Exception as error:  # reported by start()/stop(); a thread must not die silently
            self._error = error

    def _shutdown(self) -> None:
        self._stopping.set()
        try:
            self._close()
        finally:
            if self._thread is not None:
                self._thread.join(timeout=5.0)
            self._thread = None
            self._release()

"""The power fields of one latency row: a sampler around the timed calls, never raising."""

from __future__ import annotations

import math

from clca_deploy.bench.power.meter import PowerMeasurement, PowerSamplingError, ThreadedPowerSampler

# Below this a reading says little: NVML's board power is a 1 s running average on Ampere and newer
# GPUs and its energy counter moves in steps, and tegrastats gives one reading per 50 ms.
MIN_WINDOW_S = 0.5
POWER_FIELDS = ("power_w", "energy_mj_per_image", "power_source", "power_mode", "power_samples", "power_reason")


def window_seconds(sampler: object | None) -> float:
    """How long the timed calls must last for ``sampler`` to give a reading: its ``min_window_s``
    (``POWER_WINDOW_S`` for every real sensor); 0 for None and for a stand-in that declares nothing."""
    return 0.0 if sampler is None else float(getattr(sampler, "min_window_s", 0.0))


def _failure(sampler: ThreadedPowerSampler, error: Exception) -> str:
    if isinstance(error, PowerSamplingError):
        return str(error)
    return f"{sampler.source} failed: {type(error).__name__}: {error}"


class PowerWindow:
    """Samples power around a block of timed calls; never raises: a failing sampler becomes the reason.

    Use::

        with PowerWindow(sampler, reason) as window:
            timed_calls()  # for at least window.min_seconds
        window.fields(calls, batch_size)  # the power fields of LatencyStats
    """

    def __init__(self, sampler: ThreadedPowerSampler | None, reason: str | None = None):
        self._sampler = sampler
        self._reason = reason or (None if sampler is not None else "power not measured")
        self.measurement: PowerMeasurement | None = None

    def __enter__(self) -> PowerWindow:
        if self._sampler is not None:
            try:
                self._sampler.start()
            except Exception as error:
                self._reason, self._sampler = _failure(self._sampler, error), None
        return self

    @property
    def min_seconds(self) -> float:
        """How long the timed calls inside the window should last: 0 without a sampler or once it failed to start."""
        return window_seconds(self._sampler)

    def __exit__(self, *exc: object) -> None:
        # Also on an exception from the timed calls: the sensor (a tegrastats process) must stop.
        if self._sampler is None:
            return
        try:
            self.measurement = self._sampler.stop()
        except Exception as error:
            self._reason = _failure(self._sampler, error)

    def fields(self, iters: int, batch_size: int) -> dict:
        """power_w, energy_mj_per_image, power_source, power_mode, power_samples, or all None and power_reason.

        ``iters``: the calls actually timed inside the window (a time-based window makes more than asked).
        """
        m = self.measurement
        if m is not None and m.seconds < MIN_WINDOW_S:
            needed = math.ceil(iters * MIN_WINDOW_S / m.seconds) if m.seconds > 0 else iters * 10
            # measure_latency times for POWER_WINDOW_S by default; only a caller that set a shorter
            # minimum (or a capped number of calls) lands here, and more calls is then the remedy.
            reason = (
                f"{m.source}: the {m.seconds:.2f} s timed window is too short for a power reading "
                f"(at least {MIN_WINDOW_S:g} s); raise --iters to {needed} or more"
            )
            return {**dict.fromkeys(POWER_FIELDS), "power_reason": reason}
        if m is None:
            return {**dict.fromkeys(POWER_FIELDS), "power_reason": self._reason}
        energy = None if m.energy_j is None else m.energy_j * 1000.0 / (iters * batch_size)
        return {
            "power_w": m.mean_w,
            "energy_mj_per_image": energy,
            "power_source": m.source,
            "power_mode": m.power_mode,
            "power_samples": m.samples,
            "power_reason": None,
        }

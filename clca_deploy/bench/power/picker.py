"""Which power sampler this machine has: the registry of sampler modules, walked in order.

Each sampler module (``tegrastats``, ``jtop``, ``nvml``) has ``detect(device_index)``, saying whether
it applies here for a backend on that CUDA device (None: the CPU) and why not. The first that applies
wins; without one, the reason lists why each did not. Adding a power meter is one module with a
sampler class and ``detect``, plus one entry in ``POWER_SAMPLERS``.
"""

from __future__ import annotations

from typing import Callable

from clca_deploy.bench.power import jtop, nvml, tegrastats
from clca_deploy.bench.power.meter import Detection, ThreadedPowerSampler

Detect = Callable[[int | None], Detection]

# Preference order: Jetson's own tool first, then its service, then NVML for discrete GPUs.
POWER_SAMPLERS: list[Detect] = [tegrastats.detect, jtop.detect, nvml.detect]


def register_power_sampler(detect: Detect, first: bool = False) -> Detect:
    """Add a sampler module's ``detect`` to the registry (``first``: ahead of the built-in ones)."""
    POWER_SAMPLERS.insert(0 if first else len(POWER_SAMPLERS), detect)
    return detect


def unregister_power_sampler(detect: Detect) -> None:
    """Remove a sampler added by :func:`register_power_sampler`."""
    if detect in POWER_SAMPLERS:
        POWER_SAMPLERS.remove(detect)


def pick_power_sampler(device_index: int | None = 0) -> tuple[ThreadedPowerSampler | None, str | None]:
    """(the first sampler that applies to a backend on ``device_index``, None), or (None, why there is none)."""
    reasons: list[str] = []
    for detect in POWER_SAMPLERS:
        found = detect(device_index)
        if found.sampler is not None:
            return found.sampler, None
        if found.reason and found.reason not in reasons:
            reasons.append(found.reason)
    return None, "no power sensor: " + (", and ".join(reasons) or "no power sampler is registered")


def power_sampler_for(backend) -> tuple[ThreadedPowerSampler | None, str | None]:
    """``pick_power_sampler`` for the device ``backend`` runs on; never raises."""
    try:
        return pick_power_sampler(backend.device_index)
    except Exception as error:  # a broken driver or package must cost the power column, not the benchmark
        return None, f"power sensor check failed: {type(error).__name__}: {error}"

"""Jetson board power through the jtop service of jetson-stats, for containers without tegrastats."""

from __future__ import annotations

import importlib
from typing import Callable, Mapping

from clca_deploy.bench.power.meter import Detection
from clca_deploy.bench.power.rails import RailSampler
from clca_deploy.system.jetson import is_jetson


def jtop_rails(power: Mapping) -> dict[str, float]:
    """Rail name -> mW from jetson-stats 4's ``jtop.power`` ({"rail": {...}, "tot": {...}})."""
    rails = {name: float(value["power"]) for name, value in power.get("rail", {}).items() if "power" in value}
    total = power.get("tot", {})
    if total.get("name") and "power" in total:  # jtop moves VDD_IN out of "rail" into "tot"
        rails[total["name"]] = float(total["power"])
    return rails


class JtopSampler(RailSampler):
    """Board power through the jtop service (jetson-stats), for containers without tegrastats.

    The same rail rule as for tegrastats is applied to jtop's rails, not jtop's own total, which on
    AGX Orin adds the VDDQ_VDD2_1V8AO rail too.
    """

    tool = "jtop"

    def __init__(self, interval_s: float = 0.1, module=None):
        super().__init__()
        self.interval_s = interval_s
        self._module = module
        self._jetson = None

    def _open(self) -> None:
        self._start_reading()
        module = self._module or importlib.import_module("jtop")
        self._jetson = module.jtop(interval=self.interval_s)
        self._jetson.start()

    def _run(self, emit: Callable[[float], None]) -> None:
        jetson = self._jetson
        while not self._stopping.is_set() and jetson.ok():
            power = jetson.power
            if not isinstance(power, Mapping):
                raise RuntimeError("jetson-stats before 4.0 (jtop.power is not a dict); pip install -U jetson-stats")
            self._reading(jtop_rails(power), emit)

    def _close(self) -> None:
        if self._jetson is not None:
            self._jetson.close()

    def _release(self) -> None:
        self._jetson = None


def detect(device_index: int | None) -> Detection:
    """jtop applies on a Jetson where jetson-stats is installed (its service reads the rails)."""
    if not is_jetson():
        return Detection.absent("not a Jetson")
    try:
        module = importlib.import_module("jtop")
    except ImportError:
        return Detection.absent("jetson-stats (jtop) is not installed (in a container, mount the jtop socket)")
    return Detection.found(JtopSampler(module=module))

"""NVIDIA GPU board power through NVML (nvidia-ml-py, module ``pynvml``), imported only when asked."""

from __future__ import annotations

import importlib
from typing import Callable

from clca_deploy.bench.power.meter import Detection, PowerMeasurement, ThreadedPowerSampler
from clca_deploy.system.jetson import is_jetson


class NvmlSampler(ThreadedPowerSampler):
    """GPU board power through NVML: the energy counter where the GPU has one, else sampled power."""

    interval_s = 0.02

    def __init__(self, device_index: int = 0, nvml=None):
        super().__init__()
        self.device_index = device_index
        self.source = f"NVML board power, GPU {device_index}"
        self._module = nvml
        self._nvml = None
        self._handle = None
        self._energy_mj: list[float | None] = [None, None]

    def _open(self) -> None:
        nvml = self._module or importlib.import_module("pynvml")
        nvml.nvmlInit()
        try:
            self._handle = nvml.nvmlDeviceGetHandleByIndex(self.device_index)
        except Exception:
            nvml.nvmlShutdown()
            raise
        self._nvml = nvml
        self._energy_mj = [None, None]

    def _run(self, emit: Callable[[float], None]) -> None:
        nvml, handle = self._nvml, self._handle
        while not self._stopping.is_set():
            emit(nvml.nvmlDeviceGetPowerUsage(handle) / 1000.0)  # milliwatts
            self._stopping.wait(self.interval_s)

    def _energy(self) -> float | None:
        try:
            return float(self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle))  # mJ, Volta and newer
        except Exception:  # NVML_ERROR_NOT_SUPPORTED on older GPUs: fall back to sampled power
            return None

    def _at_start(self) -> None:
        self._energy_mj[0] = self._energy()

    def _at_stop(self) -> None:
        self._energy_mj[1] = self._energy()

    def _release(self) -> None:
        nvml, self._nvml = self._nvml, None
        if nvml is not None:
            nvml.nvmlShutdown()

    def _result(self, window, start: float, end: float) -> PowerMeasurement:
        begin, finish = self._energy_mj
        # The counter integrates in the driver, without our sampling gaps; sampled power is the fallback
        # (and on Ampere+ nvmlDeviceGetPowerUsage is itself a 1 s average, which lags a short window).
        if begin is not None and finish is not None and finish > begin:
            energy_j = (finish - begin) / 1000.0
            source = f"NVML board energy counter, GPU {self.device_index}"
            return PowerMeasurement(energy_j / (end - start), energy_j, len(window), end - start, source)
        return super()._result(window, start, end)


def detect(device_index: int | None) -> Detection:
    """NVML applies to a backend on a discrete NVIDIA GPU whose power the driver reports."""
    if device_index is None:
        return Detection.absent("NVML reads a GPU's board power, and this backend runs on the CPU")
    if is_jetson():
        return Detection.absent("NVML reports no board power on a Jetson")
    try:
        nvml = importlib.import_module("pynvml")
    except ImportError:
        return Detection.absent("nvidia-ml-py (NVML) is not installed (pip install nvidia-ml-py)")
    try:
        nvml.nvmlInit()
    except Exception as error:
        return Detection.absent(f"NVML does not start ({error}); is there an NVIDIA driver?")
    try:
        count = nvml.nvmlDeviceGetCount()
        if not 0 <= device_index < count:
            return Detection.absent(f"NVML sees {count} GPU(s), none with index {device_index}")
        nvml.nvmlDeviceGetPowerUsage(nvml.nvmlDeviceGetHandleByIndex(device_index))
    except Exception as error:
        return Detection.absent(f"NVML cannot read the power of GPU {device_index} ({error})")
    finally:
        nvml.nvmlShutdown()
    return Detection.found(NvmlSampler(device_index, nvml=nvml))

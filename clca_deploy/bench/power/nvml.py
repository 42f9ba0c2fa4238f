"""NVIDIA GPU board power through NVML (nvidia-ml-py, module ``pynvml``), imported only when asked.

NVML numbers GPUs in PCI order and ignores CUDA_VISIBLE_DEVICES, so NVML's GPU 1 is often not CUDA's
GPU 1 on a multi-GPU server. The sampler finds the board by the PCI bus id (else the UUID) that the CUDA
driver reports for the backend's device, never by the ordinal.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

from clca_deploy.bench.power.meter import Detection, PowerMeasurement, PowerSamplingError, ThreadedPowerSampler
from clca_deploy.errors import UnsupportedError
from clca_deploy.system.gpu import GpuInfo, gpu_info
from clca_deploy.system.jetson import is_jetson


def _board(gpu: GpuInfo) -> str:
    """The GPU measured, as reports name it: CUDA ordinal and PCI bus id (no UUID, as in GpuInfo.to_dict)."""
    return f"GPU {gpu.index}" + (f" (PCI {gpu.pci_bus_id})" if gpu.pci_bus_id else "")


def nvml_handle(nvml: Any, gpu: GpuInfo) -> Any:
    """NVML's handle for the board CUDA calls ``gpu``; PowerSamplingError saying why when NVML has no such GPU."""
    lookups = []
    if gpu.pci_bus_id:
        lookups.append((f"by PCI bus id {gpu.pci_bus_id}", "nvmlDeviceGetHandleByPciBusId", gpu.pci_bus_id))
    if gpu.uuid:  # a second chance where the bus id lookup fails (NVML_ERROR_NO_PERMISSION on some hosts)
        lookups.append(("by UUID", "nvmlDeviceGetHandleByUUID", gpu.uuid))
    if not lookups:
        raise PowerSamplingError(
            f"the CUDA driver reports neither a PCI bus id nor a UUID for GPU {gpu.index} ({gpu.name}), "
            "so NVML's numbering cannot be matched to CUDA's"
        )
    failures = []
    for label, function, key in lookups:
        try:
            return getattr(nvml, function)(key)
        except Exception as error:  # pynvml raises NVMLError_NotFound etc.; any failure only costs the match
            failures.append(f"{label}: {error}")
    raise PowerSamplingError(
        f"NVML has no GPU matching CUDA GPU {gpu.index} ({gpu.name}): {'; '.join(failures)}"
    )


class NvmlSampler(ThreadedPowerSampler):
    """GPU board power through NVML: the energy counter where the GPU has one, else sampled power."""

    interval_s = 0.02

    def __init__(self, gpu: GpuInfo, nvml=None):
        super().__init__()
        self.gpu = gpu
        self.device_index = gpu.index  # the CUDA ordinal, as every backend names its device
        self.source = f"NVML board power, {_board(gpu)}"
        self._module = nvml
        self._nvml = None
        self._handle = None
        self._energy_mj: list[float | None] = [None, None]

    def _open(self) -> None:
        nvml = self._module or importlib.import_module("pynvml")
        nvml.nvmlInit()
        try:
            self._handle = nvml_handle(nvml, self.gpu)
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
            source = f"NVML board energy counter, {_board(self.gpu)}"
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
        gpu = gpu_info(device_index)  # the board identity NVML is matched by
    except UnsupportedError as error:
        return Detection.absent(f"NVML cannot be matched to the backend's GPU: {error}")
    try:
        nvml.nvmlInit()
    except Exception as error:
        return Detection.absent(f"NVML does not start ({error}); is there an NVIDIA driver?")
    try:
        nvml.nvmlDeviceGetPowerUsage(nvml_handle(nvml, gpu))
    except PowerSamplingError as error:
        return Detection.absent(str(error))
    except Exception as error:
        return Detection.absent(f"NVML cannot read the power of {_board(gpu)} ({error})")
    finally:
        nvml.nvmlShutdown()
    return Detection.found(NvmlSampler(gpu, nvml=nvml))

"""Board power and energy during the timed calls: which sensor this machine has, and the window.

Jetson: tegrastats (or jtop) board power, with the nvpmodel power mode (``bench.tegrastats``). NVIDIA
GPU servers: NVML, through nvidia-ml-py (module ``pynvml``), imported only here and only when asked.
Anywhere else there is no sensor, and the report says so instead of a number.
"""

from __future__ import annotations

import importlib
import math
import shutil
from pathlib import Path
from typing import Callable

from clca_deploy.bench.power_meter import PowerMeasurement, PowerSamplingError, ThreadedPowerSampler
from clca_deploy.bench.tegrastats import JtopSampler, TegrastatsSampler

TEGRA_RELEASE = Path("/etc/nv_tegra_release")  # written by Jetson Linux (L4T) on every Jetson
# Below this a reading says little: NVML's board power is a 1 s running average on Ampere and newer
# GPUs and its energy counter moves in steps, and tegrastats gives one reading per 50 ms.
MIN_WINDOW_S = 0.5
POWER_FIELDS = ("power_w", "energy_mj_per_image", "power_source", "power_mode", "power_samples", "power_reason")


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


def is_jetson() -> bool:
    """True on a Jetson (tegrastats on PATH, or the L4T release file)."""
    return shutil.which("tegrastats") is not None or TEGRA_RELEASE.exists()


def _nvml_sampler(device_index: int) -> tuple[NvmlSampler | None, str | None]:
    try:
        nvml = importlib.import_module("pynvml")
    except ImportError:
        return None, (
            "no power sensor: not a Jetson, and nvidia-ml-py (NVML) is not installed (pip install nvidia-ml-py)"
        )
    try:
        nvml.nvmlInit()
    except Exception as error:
        return None, f"no power sensor: not a Jetson, and NVML does not start ({error}); is there an NVIDIA driver?"
    try:
        count = nvml.nvmlDeviceGetCount()
        if not 0 <= device_index < count:
            return None, f"no power sensor: NVML sees {count} GPU(s), none with index {device_index}"
        nvml.nvmlDeviceGetPowerUsage(nvml.nvmlDeviceGetHandleByIndex(device_index))
    except Exception as error:
        return None, f"no power sensor: NVML cannot read the power of GPU {device_index} ({error})"
    finally:
        nvml.nvmlShutdown()
    return NvmlSampler(device_index, nvml=nvml), None


def pick_power_sampler(device_index: int = 0) -> tuple[ThreadedPowerSampler | None, str | None]:
    """(a sampler for this machine, None), or (None, why there is none)."""
    if is_jetson():
        if shutil.which("tegrastats"):
            return TegrastatsSampler(), None
        try:
            return JtopSampler(module=importlib.import_module("jtop")), None
        except ImportError:
            return None, (
                "no power sensor: a Jetson, but tegrastats is not on PATH and jetson-stats (jtop) is not "
                "installed; in a container, mount /usr/bin/tegrastats or the jtop socket"
            )
    return _nvml_sampler(device_index)


def gpu_device(backend) -> int | None:
    """The CUDA device a backend runs on, or None when it runs on the CPU."""
    device = getattr(backend, "device", None)
    if getattr(backend, "name", None) == "tensorrt":
        return device if isinstance(device, int) else 0
    if getattr(device, "type", None) == "cuda":  # a torch.device
        return device.index or 0
    gpu = [p for p in getattr(backend, "providers", ()) if p in ("CUDAExecutionProvider", "TensorrtExecutionProvider")]
    if not gpu:
        return None
    try:
        return int(backend.session.get_provider_options()[gpu[0]].get("device_id", 0))
    except Exception:  # an onnxruntime without provider options: its default device
        return 0


def power_sampler_for(backend) -> tuple[ThreadedPowerSampler | None, str | None]:
    """``pick_power_sampler`` for the device ``backend`` runs on; never raises."""
    try:
        device = gpu_device(backend)
        sampler, reason = pick_power_sampler(device or 0)
    except Exception as error:  # a broken driver or package must cost the power column, not the benchmark
        return None, f"power sensor check failed: {type(error).__name__}: {error}"
    if isinstance(sampler, NvmlSampler) and device is None:
        return None, "not measured: NVML reads a GPU's board power, and this backend runs on the CPU"
    return sampler, reason


def _failure(sampler: ThreadedPowerSampler, error: Exception) -> str:
    if isinstance(error, PowerSamplingError):
        return str(error)
    return f"{sampler.source} failed: {type(error).__name__}: {error}"


class PowerWindow:
    """Samples power around a block of timed calls; never raises: a failing sampler becomes the reason.

    Use::

        with PowerWindow(sampler, reason) as window:
            timed_calls()
        window.fields(iters, batch_size)  # the power fields of LatencyStats
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

    def __exit__(self, *exc: object) -> None:
        # Also on an exception from the timed calls: the sensor (a tegrastats process) must stop.
        if self._sampler is None:
            return
        try:
            self.measurement = self._sampler.stop()
        except Exception as error:
            self._reason = _failure(self._sampler, error)

    def fields(self, iters: int, batch_size: int) -> dict:
        """power_w, energy_mj_per_image, power_source, power_mode, power_samples, or all None and power_reason."""
        m = self.measurement
        if m is not None and m.seconds < MIN_WINDOW_S:
            needed = math.ceil(iters * MIN_WINDOW_S / m.seconds) if m.seconds > 0 else iters * 10
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

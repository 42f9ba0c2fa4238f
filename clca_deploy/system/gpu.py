"""CUDA GPUs seen through the driver API (libcuda.so.1 over ctypes), never through torch.

libcuda.so.1 is installed with every NVIDIA driver, Jetson included (JetPack puts it under
/usr/lib/aarch64-linux-gnu/tegra/, on the loader's path), so this works wherever TensorRT can, with
no Python CUDA package and no torch. The driver applies CUDA_VISIBLE_DEVICES itself.

A CUDA ordinal names a GPU for this process only: CUDA_VISIBLE_DEVICES and CUDA_DEVICE_ORDER renumber
them, and NVML (nvidia-smi) numbers the same GPUs in PCI order regardless. Each GpuInfo therefore
carries the PCI bus id and UUID the driver reports, which name the board itself.

cuInit runs once per process and its answer is cached. Like any CUDA call it makes the process a
CUDA process: a child forked afterwards must not use CUDA (start such children with "spawn").
"""

from __future__ import annotations

import ctypes
import functools
import os
import re
import shutil
import subprocess
from dataclasses import asdict, dataclass
from typing import Any

from clca_deploy.errors import UnsupportedError

LIBRARY = "libcuda.so.1"

# cuda.h: CUresult and CUdevice_attribute values (stable across CUDA versions).
CUDA_SUCCESS = 0
CUDA_ERROR_STUB_LIBRARY = 34
CUDA_ERROR_INSUFFICIENT_DRIVER = 35
CUDA_ERROR_DEVICE_UNAVAILABLE = 46
CUDA_ERROR_NO_DEVICE = 100
ATTRIBUTE_INTEGRATED = 18
ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75
ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76
# cuDeviceGetPCIBusId writes "domain:bus:device.function" in hexadecimal (13 characters with the NUL
# for a 4-digit domain); NVML's wider buffer leaves room for its 8-digit domains.
PCI_BUS_ID_BUFFER = 32
_PCI_BUS_ID = re.compile(r"[0-9A-Fa-f]{1,8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.[0-7]")

_INIT_ERRORS = {
    CUDA_ERROR_NO_DEVICE: "CUDA_ERROR_NO_DEVICE: the driver sees no device",
    CUDA_ERROR_INSUFFICIENT_DRIVER: "CUDA_ERROR_INSUFFICIENT_DRIVER: the NVIDIA driver is too old",
    CUDA_ERROR_STUB_LIBRARY: (
        "CUDA_ERROR_STUB_LIBRARY: the libcuda.so.1 found is the CUDA toolkit's stub, not a driver; "
        "check LD_LIBRARY_PATH"
    ),
    CUDA_ERROR_DEVICE_UNAVAILABLE: "CUDA_ERROR_DEVICE_UNAVAILABLE: the GPU is busy or in exclusive use",
}


@dataclass(frozen=True)
class GpuInfo:
    """One CUDA device as the driver reports it."""

    index: int
    name: str
    compute_capability: str  # "8.7"
    total_memory_bytes: int | None
    integrated: bool  # True on Jetson: the GPU shares the CPU's memory
    driver_version: str | None  # CUDA driver API version, e.g. "12.6"
    # The board, whatever the CUDA ordinal: "0000:3B:00.0" as cuDeviceGetPCIBusId writes it, and
    # "GPU-<8-4-4-4-12 hex>" as NVML and nvidia-smi write the UUID. None where the driver does not say.
    pci_bus_id: str | None = None
    uuid: str | None = None

    def to_dict(self) -> dict:
        """The GPU for reports and `doctor --json`; the UUID stays out, as it names one physical board
        wherever a report is shared, and the PCI bus id already tells a machine's GPUs apart."""
        data = asdict(self)
        del data["uuid"]
        return data


@dataclass(frozen=True)
class _Probe:
    devices: tuple[GpuInfo | str, ...]  # a str is why that device could not be read
    reason: str | None  # why there is no device at all


def _load_driver() -> Any:
    """The CUDA driver library; the seam tests replace with a fake. Raises OSError when it is absent."""
    return ctypes.CDLL(LIBRARY)


def _driver_version_text(code: int) -> str:
    """cuDriverGetVersion's 1000 * major + 10 * minor as "major.minor": 12060 -> "12.6"."""
    return f"{code // 1000}.{(code % 1000) // 10}"


def _visible_devices_note() -> str:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    return f"; CUDA_VISIBLE_DEVICES={visible!r}" if visible is not None else ""


def _pci_bus_id(lib: Any, device: int) -> str | None:
    """The device's PCI bus id, or None where the driver lacks the call or answers something else."""
    buffer = ctypes.create_string_buffer(PCI_BUS_ID_BUFFER)
    try:
        rc = lib.cuDeviceGetPCIBusId(buffer, len(buffer), device)
    except AttributeError:  # a driver library without the symbol: the GPU stays usable, only unmatched
        return None
    text = buffer.value.decode("ascii", errors="replace")
    return text if rc == CUDA_SUCCESS and _PCI_BUS_ID.fullmatch(text) else None


def uuid_text(raw: bytes) -> str:
    """A CUuuid's 16 bytes as NVML and nvidia-smi print the GPU's UUID: "GPU-" and 8-4-4-4-12 lower-case hex."""
    digits = raw.hex()
    return f"GPU-{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:32]}"


def _uuid(lib: Any, device: int) -> str | None:
    """The GPU's UUID, or None where the driver lacks the call or fails it.

    The plain cuDeviceGetUuid symbol, which every driver since CUDA 9.2 exports; NVIDIA documents _v2 as
    returning the MIG instance's UUID in MIG mode, and board power belongs to the physical GPU.
    """
    raw = (ctypes.c_ubyte * 16)()
    try:
        rc = lib.cuDeviceGetUuid(raw, device)
    except AttributeError:
        return None
    return uuid_text(bytes(raw)) if rc == CUDA_SUCCESS and any(raw) else None


def _read_device(lib: Any, index: int, driver_version: str | None) -> GpuInfo | str:
    device = ctypes.c_int()
    rc = lib.cuDeviceGet(ctypes.pointer(device), index)
    if rc != CUDA_SUCCESS:
        return f"cuDeviceGet({index}) failed with CUDA error {rc}"
    name = ctypes.create_string_buffer(256)
    rc = lib.cuDeviceGetName(name, len(name), device.value)
    if rc != CUDA_SUCCESS:
        return f"cuDeviceGetName failed for GPU {index} with CUDA error {rc}"
    values = {}
    for key, attribute in (
        ("major", ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR),
        ("minor", ATTRIBUTE_COMPUTE_CAPABILITY_MINOR),
        ("integrated", ATTRIBUTE_INTEGRATED),
    ):
        value = ctypes.c_int()
        rc = lib.cuDeviceGetAttribute(ctypes.pointer(value), attribute, device.value)
        if rc != CUDA_SUCCESS:
            return f"cuDeviceGetAttribute({attribute}) failed for GPU {index} with CUDA error {rc}"
        values[key] = value.value
    memory = ctypes.c_size_t()
    # Memory is informative only: a failure leaves it unknown rather than hiding the GPU.
    total = memory.value if lib.cuDeviceTotalMem_v2(ctypes.pointer(memory), device.value) == CUDA_SUCCESS else None
    return GpuInfo(
        index=index,
        name=name.value.decode(errors="replace").strip(),
        compute_capability=f"{values['major']}.{values['minor']}",
        total_memory_bytes=total,
        integrated=bool(values["integrated"]),
        driver_version=driver_version,
        pci_bus_id=_pci_bus_id(lib, device.value),
        uuid=_uuid(lib, device.value),
    )


def _query(lib: Any) -> _Probe:
    """Every device the driver library ``lib`` reports, or the reason it reports none."""
    rc = lib.cuInit(0)
    if rc != CUDA_SUCCESS:
        detail = _INIT_ERRORS.get(rc, f"cuInit failed with CUDA error {rc}")
        prefix = "no CUDA GPU on this machine" if rc == CUDA_ERROR_NO_DEVICE else "the CUDA driver did not start"
        return _Probe((), f"{prefix} ({detail}{_visible_devices_note()})")
    version = ctypes.c_int()
    driver_version = (
        _driver_version_text(version.value) if lib.cuDriverGetVersion(ctypes.pointer(version)) == CUDA_SUCCESS else None
    )
    count = ctypes.c_int()
    rc = lib.cuDeviceGetCount(ctypes.pointer(count))
    if rc != CUDA_SUCCESS:
        return _Probe((), f"the CUDA driver did not start (cuDeviceGetCount failed with CUDA error {rc})")
    if count.value == 0:
        return _Probe((), f"no CUDA GPU on this machine (the driver reports 0 devices{_visible_devices_note()})")
    return _Probe(tuple(_read_device(lib, index, driver_version) for index in range(count.value)), None)


@functools.lru_cache(maxsize=1)
def _probe() -> _Probe:
    try:
        lib = _load_driver()
    except OSError:
        return _Probe((), f"no CUDA GPU on this machine ({LIBRARY} not found: no NVIDIA driver)")
    return _query(lib)


def list_gpus() -> list[GpuInfo]:
    """The CUDA GPUs this process can use; [] when there is no driver or no device."""
    return [device for device in _probe().devices if isinstance(device, GpuInfo)]


def gpu_info(index: int = 0) -> GpuInfo:
    """GPU ``index``, or UnsupportedError saying why it cannot be used."""
    probe = _probe()
    if probe.reason:
        raise UnsupportedError(probe.reason)
    count = len(probe.devices)
    if not 0 <= index < count:
        plural = "GPU" if count == 1 else "GPUs"
        raise UnsupportedError(
            f"there is no CUDA GPU {index}: this machine has {count} {plural} (use 0..{count - 1})"
            + _visible_devices_note()
        )
    device = probe.devices[index]
    if isinstance(device, str):
        raise UnsupportedError(f"CUDA GPU {index} cannot be read: {device}")
    return device


def gpu_unavailable_reason(index: int = 0) -> str | None:
    """None when ``gpu_info(index)`` works, else the reason it does not."""
    try:
        gpu_info(index)
    except UnsupportedError as exc:
        return str(exc)
    return None


# nvidia-smi, an extra source for `doctor`: it reports the kernel driver's version (e.g. 570.124.06),
# which the driver API does not, and it still answers when libcuda.so.1 cannot be loaded.
NVIDIA_SMI_QUERY = ("--query-gpu=name,compute_cap,memory.total,driver_version", "--format=csv,noheader,nounits")


@dataclass(frozen=True)
class SmiGpu:
    name: str
    compute_capability: str | None
    memory_mib: int | None  # None where nvidia-smi prints "[N/A]" (Jetson Thor's shared memory)
    driver_version: str


def parse_nvidia_smi(text: str) -> list[SmiGpu]:
    """Rows of ``nvidia-smi --query-gpu=name,compute_cap,memory.total,driver_version --format=csv,noheader,nounits``."""
    gpus = []
    for line in text.splitlines():
        # GPU names have no commas, so a plain split is exact; the driver version is the last field.
        fields = [field.strip() for field in line.split(",")]
        if len(fields) != 4 or not fields[0]:
            continue
        name, capability, memory, driver = fields
        gpus.append(
            SmiGpu(
                name=name,
                compute_capability=capability if re.fullmatch(r"\d+\.\d+", capability) else None,
                memory_mib=int(memory) if memory.isdigit() else None,
                driver_version=driver,
            )
        )
    return gpus


def query_nvidia_smi(timeout: float = 2.0) -> list[SmiGpu] | None:
    """What nvidia-smi reports, or None when it is absent, fails or hangs (a wedged driver can hang it)."""
    binary = shutil.which("nvidia-smi")
    if binary is None:
        return None
    try:
        done = subprocess.run([binary, *NVIDIA_SMI_QUERY], capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return parse_nvidia_smi(done.stdout) if done.returncode == 0 else None

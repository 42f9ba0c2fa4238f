"""GPU identity through a fake CUDA driver library that behaves like libcuda over ctypes."""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
from dataclasses import dataclass

import pytest

from clca_deploy.errors import UnsupportedError
from clca_deploy.system import gpu
from clca_deploy.system.gpu import GpuInfo, SmiGpu


@dataclass
class FakeDevice:
    name: str
    major: int
    minor: int
    integrated: int = 0
    memory: int = 0
    pci_bus_id: str = ""  # as cuDeviceGetPCIBusId writes it; "" makes the call fail
    uuid: bytes = b""  # the CUuuid's 16 bytes; b"" makes the call fail


class FakeDriver:
    """The driver API functions gpu.py calls: CUresult return codes, results through pointer arguments.

    ``devices`` are every GPU in the driver's own order; like the real driver, cuInit applies
    CUDA_VISIBLE_DEVICES (ordinals or "GPU-" UUID prefixes), so CUDA ordinals are positions in that list.
    """

    HANDLE_BASE = 1000  # device handles differ from ordinals, as nothing promises they are equal

    def __init__(self, devices=(), init_rc=0, count_rc=0, version=12060, memory_rc=0, identity_rc=0):
        self.all_devices = list(devices)
        self.devices = list(devices)
        self.init_rc, self.count_rc, self.version, self.memory_rc = init_rc, count_rc, version, memory_rc
        self.identity_rc = identity_rc  # what cuDeviceGetPCIBusId and cuDeviceGetUuid return
        self.init_calls = 0

    def _device(self, handle: int) -> FakeDevice:
        return self.devices[handle - self.HANDLE_BASE]

    def _visible(self, entry: str) -> FakeDevice | None:
        if entry.isdigit():
            return self.all_devices[int(entry)] if int(entry) < len(self.all_devices) else None
        return next((d for d in self.all_devices if d.uuid and gpu.uuid_text(d.uuid).startswith(entry)), None)

    def cuInit(self, flags):
        assert flags == 0
        self.init_calls += 1
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        if visible is not None:
            # The driver stops at the first entry that names no device, as CUDA documents.
            self.devices = []
            for entry in visible.split(","):
                device = self._visible(entry.strip())
                if device is None:
                    break
                self.devices.append(device)
        return self.init_rc

    def cuDriverGetVersion(self, version):
        version.contents.value = self.version
        return 0

    def cuDeviceGetCount(self, count):
        count.contents.value = len(self.devices)
        return self.count_rc

    def cuDeviceGet(self, device, ordinal):
        if not 0 <= ordinal < len(self.devices):
            return 101  # CUDA_ERROR_INVALID_DEVICE
        device.contents.value = self.HANDLE_BASE + ordinal
        return 0

    def cuDeviceGetName(self, buffer, length, handle):
        assert isinstance(buffer, ctypes.Array) and length == len(buffer)
        buffer.value = self._device(handle).name.encode()[: length - 1]
        return 0

    def cuDeviceGetAttribute(self, value, attribute, handle):
        device = self._device(handle)
        values = {75: device.major, 76: device.minor, 18: device.integrated}
        if attribute not in values:
            return 1  # CUDA_ERROR_INVALID_VALUE
        value.contents.value = values[attribute]
        return 0

    def cuDeviceTotalMem_v2(self, size, handle):
        assert isinstance(size.contents, ctypes.c_size_t)
        size.contents.value = self._device(handle).memory
        return self.memory_rc

    def cuDeviceGetPCIBusId(self, buffer, length, handle):
        assert isinstance(buffer, ctypes.Array) and length == len(buffer) >= 13  # cuda.h: room for 13 characters
        text = self._device(handle).pci_bus_id
        if self.identity_rc or not text:
            return self.identity_rc or 1
        buffer.value = text.encode()[: length - 1]
        return 0

    def cuDeviceGetUuid(self, uuid, handle):
        assert isinstance(uuid, ctypes.Array) and ctypes.sizeof(uuid) == 16  # CUuuid: 16 bytes
        raw = self._device(handle).uuid
        if self.identity_rc or not raw:
            return self.identity_rc or 1
        ctypes.memmove(uuid, raw, 16)
        return 0


H100_UUID = bytes.fromhex("5c1b1e3a9d2f4e7b8a6c0d1e2f3a4b5c")
A2000_UUID = bytes.fromhex("0a1b2c3d4e5f60718293a4b5c6d7e8f9")
H100 = FakeDevice("NVIDIA H100 80GB HBM3", 9, 0, 0, 85_520_809_984, "0000:3B:00.0", H100_UUID)
A2000 = FakeDevice("NVIDIA RTX A2000 12GB", 8, 6, 0, 12_622_168_064, "0000:AF:00.0", A2000_UUID)
ORIN = FakeDevice("Orin", 8, 7, 1, 7_990_140_928)


@pytest.fixture(autouse=True)
def fresh_probe(monkeypatch):
    """Each test sees its own driver: the per-process cache is emptied before and after."""
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    gpu._probe.cache_clear()
    yield
    gpu._probe.cache_clear()


def use_driver(monkeypatch, driver):
    monkeypatch.setattr(gpu, "_load_driver", lambda: driver)
    return driver


def test_two_gpus_are_listed_with_their_facts(monkeypatch):
    use_driver(monkeypatch, FakeDriver([H100, A2000]))
    assert gpu.list_gpus() == [
        GpuInfo(0, "NVIDIA H100 80GB HBM3", "9.0", 85_520_809_984, False, "12.6",
                "0000:3B:00.0", "GPU-5c1b1e3a-9d2f-4e7b-8a6c-0d1e2f3a4b5c"),
        GpuInfo(1, "NVIDIA RTX A2000 12GB", "8.6", 12_622_168_064, False, "12.6",
                "0000:AF:00.0", "GPU-0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9"),
    ]
    assert gpu.gpu_info(1).name == "NVIDIA RTX A2000 12GB"
    assert gpu.gpu_unavailable_reason(0) is None
    assert gpu.gpu_unavailable_reason(1) is None


def test_jetson_gpu_is_integrated_and_driver_version_is_decoded(monkeypatch):
    use_driver(monkeypatch, FakeDriver([ORIN], version=13000))
    info = gpu.gpu_info()
    assert (info.compute_capability, info.integrated, info.driver_version) == ("8.7", True, "13.0")
    assert info.to_dict() == {
        "index": 0, "name": "Orin", "compute_capability": "8.7", "total_memory_bytes": 7_990_140_928,
        "integrated": True, "driver_version": "13.0", "pci_bus_id": None,
    }


def test_driver_is_queried_once_per_process(monkeypatch):
    driver = use_driver(monkeypatch, FakeDriver([H100]))
    gpu.list_gpus()
    gpu.gpu_info(0)
    gpu.gpu_unavailable_reason(0)
    assert driver.init_calls == 1


def test_missing_library_means_no_driver(monkeypatch):
    def missing():
        raise OSError("libcuda.so.1: cannot open shared object file: No such file or directory")

    monkeypatch.setattr(gpu, "_load_driver", missing)
    assert gpu.list_gpus() == []
    assert gpu.gpu_unavailable_reason() == "no CUDA GPU on this machine (libcuda.so.1 not found: no NVIDIA driver)"
    with pytest.raises(UnsupportedError, match="libcuda.so.1 not found"):
        gpu.gpu_info()


def test_no_device_error_from_cuinit(monkeypatch):
    use_driver(monkeypatch, FakeDriver([H100], init_rc=100))
    assert gpu.list_gpus() == []
    assert gpu.gpu_unavailable_reason() == (
        "no CUDA GPU on this machine (CUDA_ERROR_NO_DEVICE: the driver sees no device)"
    )


def test_no_device_names_an_empty_cuda_visible_devices(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    use_driver(monkeypatch, FakeDriver([H100], init_rc=100))
    assert gpu.gpu_unavailable_reason().endswith("the driver sees no device; CUDA_VISIBLE_DEVICES='')")


@pytest.mark.parametrize(
    "code, expected",
    [
        (999, "the CUDA driver did not start (cuInit failed with CUDA error 999)"),
        (35, "the CUDA driver did not start (CUDA_ERROR_INSUFFICIENT_DRIVER: the NVIDIA driver is too old)"),
    ],
)
def test_other_cuinit_errors_are_reported_with_their_code(monkeypatch, code, expected):
    use_driver(monkeypatch, FakeDriver([H100], init_rc=code))
    assert gpu.gpu_unavailable_reason() == expected
    with pytest.raises(UnsupportedError):
        gpu.gpu_info()


def test_zero_devices_without_an_error(monkeypatch):
    use_driver(monkeypatch, FakeDriver([]))
    assert gpu.list_gpus() == []
    assert gpu.gpu_unavailable_reason() == "no CUDA GPU on this machine (the driver reports 0 devices)"


@pytest.mark.parametrize("index", [2, -1])
def test_index_out_of_range_says_how_many_there_are(monkeypatch, index):
    use_driver(monkeypatch, FakeDriver([H100, A2000]))
    with pytest.raises(UnsupportedError) as caught:
        gpu.gpu_info(index)
    assert str(caught.value) == f"there is no CUDA GPU {index}: this machine has 2 GPUs (use 0..1)"
    assert gpu.gpu_unavailable_reason(index) == str(caught.value)


def test_unreadable_memory_keeps_the_gpu(monkeypatch):
    use_driver(monkeypatch, FakeDriver([H100], memory_rc=1))
    assert gpu.gpu_info().total_memory_bytes is None
    assert gpu.gpu_info().name == "NVIDIA H100 80GB HBM3"


def test_uuid_is_written_as_nvml_writes_it():
    assert gpu.uuid_text(bytes(range(16))) == "GPU-00010203-0405-0607-0809-0a0b0c0d0e0f"


@pytest.mark.parametrize("visible, expected", [("1", [A2000]), ("1,0", [A2000, H100]), ("GPU-0a1b", [A2000])])
def test_pci_bus_id_and_uuid_follow_the_board_under_cuda_visible_devices(monkeypatch, visible, expected):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    use_driver(monkeypatch, FakeDriver([H100, A2000]))
    found = gpu.list_gpus()
    # CUDA ordinals restart at 0 in the visible order; the PCI bus id and UUID still name the board.
    assert [info.index for info in found] == list(range(len(expected)))
    assert [(info.name, info.pci_bus_id, info.uuid) for info in found] == [
        (device.name, device.pci_bus_id, gpu.uuid_text(device.uuid)) for device in expected
    ]


def test_to_dict_records_the_pci_bus_id_but_not_the_uuid(monkeypatch):
    use_driver(monkeypatch, FakeDriver([A2000]))
    data = gpu.gpu_info().to_dict()
    assert data["pci_bus_id"] == "0000:AF:00.0" and "uuid" not in data
    assert gpu.gpu_info().uuid == "GPU-0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9"


def test_unreadable_identity_keeps_the_gpu(monkeypatch):
    use_driver(monkeypatch, FakeDriver([H100], identity_rc=999))
    info = gpu.gpu_info()
    assert (info.name, info.pci_bus_id, info.uuid) == ("NVIDIA H100 80GB HBM3", None, None)


def test_a_driver_without_the_identity_calls_keeps_the_gpu(monkeypatch):
    class OldDriver(FakeDriver):
        def __getattribute__(self, name):
            if name in ("cuDeviceGetPCIBusId", "cuDeviceGetUuid"):  # as ctypes.CDLL says of a missing symbol
                raise AttributeError(f"undefined symbol: {name}")
            return super().__getattribute__(name)

    use_driver(monkeypatch, OldDriver([H100]))
    info = gpu.gpu_info()
    assert info.compute_capability == "9.0" and (info.pci_bus_id, info.uuid) == (None, None)


@pytest.mark.parametrize("answer", ["not-a-bus-id", "0000:3B:00", "0000:3B:00.0\x1b[2J"])
def test_a_pci_bus_id_that_is_not_one_is_dropped(monkeypatch, answer):
    use_driver(monkeypatch, FakeDriver([FakeDevice("GPU", 8, 9, pci_bus_id=answer, uuid=bytes(16))]))
    info = gpu.gpu_info()
    assert info.pci_bus_id is None and info.uuid is None  # an all-zero UUID names nothing either


def test_real_driver_probe_is_consistent():
    """The real ctypes path (no fake): a reason exactly when no GPU is listed, on any machine."""
    gpus = gpu.list_gpus()
    reason = gpu.gpu_unavailable_reason(0)
    assert (reason is None) == bool(gpus), reason
    for info in gpus:
        assert info.name and info.compute_capability.count(".") == 1


NVIDIA_SMI_OUTPUT = """\
NVIDIA H100 80GB HBM3, 9.0, 81559, 550.54.15
NVIDIA GeForce RTX 4090, 8.9, 24564, 560.35.03

NVIDIA Thor, 11.0, [N/A], 580.00
No devices were found
"""


def test_nvidia_smi_parser_on_recorded_lines():
    assert gpu.parse_nvidia_smi(NVIDIA_SMI_OUTPUT) == [
        SmiGpu("NVIDIA H100 80GB HBM3", "9.0", 81559, "550.54.15"),
        SmiGpu("NVIDIA GeForce RTX 4090", "8.9", 24564, "560.35.03"),
        SmiGpu("NVIDIA Thor", "11.0", None, "580.00"),
    ]


def test_nvidia_smi_absent_gives_none(monkeypatch):
    monkeypatch.setattr(gpu.shutil, "which", lambda name: None)
    assert gpu.query_nvidia_smi() is None


def test_nvidia_smi_is_run_with_the_query(tmp_path, monkeypatch):
    fake = tmp_path / "nvidia-smi"
    fake.write_text('#!/bin/sh\n[ "$1" = "--query-gpu=name,compute_cap,memory.total,driver_version" ] || exit 9\n'
                    'echo "NVIDIA L4, 8.9, 23034, 570.124.06"\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert gpu.query_nvidia_smi() == [SmiGpu("NVIDIA L4", "8.9", 23034, "570.124.06")]


# A stand-in libcuda.so.1 with the driver API's C signatures (cuda.h), so the real ctypes calls are
# exercised: int and size_t out-pointers, a char buffer, device handles passed by value.
FAKE_LIBCUDA_C = r"""
#include <stddef.h>
#include <string.h>
typedef int CUresult;
typedef int CUdevice;
CUresult cuInit(unsigned int flags) { return flags == 0 ? 0 : 1; }
CUresult cuDriverGetVersion(int *version) { *version = 12080; return 0; }
CUresult cuDeviceGetCount(int *count) { *count = 1; return 0; }
CUresult cuDeviceGet(CUdevice *device, int ordinal) { if (ordinal != 0) return 101; *device = 7; return 0; }
CUresult cuDeviceGetName(char *name, int len, CUdevice dev) {
    if (dev != 7) return 101;
    strncpy(name, "NVIDIA L40S", (size_t)len);
    return 0;
}
CUresult cuDeviceGetAttribute(int *value, int attribute, CUdevice dev) {
    if (dev != 7) return 101;
    switch (attribute) {
        case 75: *value = 8; return 0;
        case 76: *value = 9; return 0;
        case 18: *value = 0; return 0;
    }
    return 1;
}
CUresult cuDeviceTotalMem_v2(size_t *bytes, CUdevice dev) {
    if (dev != 7) return 101;
    *bytes = (size_t)48305799168ULL;  /* over 2**32: a 32-bit out-parameter would truncate it */
    return 0;
}
CUresult cuDeviceGetPCIBusId(char *pciBusId, int len, CUdevice dev) {
    if (dev != 7 || len < 13) return 1;
    strncpy(pciBusId, "0000:C1:00.0", (size_t)len);
    return 0;
}
typedef struct { char bytes[16]; } CUuuid;
CUresult cuDeviceGetUuid(CUuuid *uuid, CUdevice dev) {
    if (dev != 7) return 101;
    for (int i = 0; i < 16; i++) uuid->bytes[i] = (char)(0xf0 + i);
    return 0;
}
"""


def test_ctypes_calls_against_a_compiled_driver_stand_in(tmp_path, monkeypatch):
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler to build the stand-in libcuda")
    source = tmp_path / "libcuda.c"
    source.write_text(FAKE_LIBCUDA_C)
    library = tmp_path / "libcuda.so.1"
    subprocess.run([compiler, "-shared", "-fPIC", "-o", str(library), str(source)], check=True, capture_output=True)
    monkeypatch.setattr(gpu, "_load_driver", lambda: ctypes.CDLL(str(library)))
    assert gpu.list_gpus() == [
        GpuInfo(0, "NVIDIA L40S", "8.9", 48_305_799_168, False, "12.8", "0000:C1:00.0",
                "GPU-f0f1f2f3-f4f5-f6f7-f8f9-fafbfcfdfeff"),
    ]

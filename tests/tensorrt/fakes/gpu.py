"""The one fake GPU under all three fakes: devices, primary contexts, per-thread context stacks, device and
page-locked memory, and streams whose work is queued and applied only at synchronize.

pycuda, cuda-python and TensorRT share it, so a pointer from one binding works with the other and with an
engine, as on a real GPU. It raises CudaError for what the CUDA driver refuses; each binding fake turns that
into its own error form.
"""

from __future__ import annotations

import ctypes
import threading
import time
from dataclasses import dataclass, field

import numpy as np


class CudaError(Exception):
    """A refused CUDA call; each binding fake turns it into its own error form."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code


@dataclass
class _Stream:
    device: int
    queue: list = field(default_factory=list)


class FakeGpu:
    """Devices, primary contexts, per-thread context stacks, device and pinned memory, streams."""

    def __init__(self, devices=(("FakeGPU", "8.7"),), delay: float = 1e-4):
        self.devices = tuple(devices)
        self.delay = delay  # a sleep in each queued call lets other threads run in between (GIL switch)
        self._lock = threading.RLock()
        self._local = threading.local()
        self._next_pointer = 0x7F0000000000
        self.primary_refs = {i: 0 for i in range(len(self.devices))}
        self.device_memory: dict[int, tuple[int, np.ndarray]] = {}  # pointer -> (device, bytes)
        self.pinned: dict[int, ctypes.Array] = {}  # host address -> owning buffer
        self.streams: dict[int, _Stream] = {}
        self.counts = {"alloc": 0, "free": 0, "pinned": 0, "free_pinned": 0, "stream": 0, "destroy_stream": 0}
        self.events: list[tuple] = []  # ("build", device), ("deserialize", device), ("synchronize", handle), ...

    # contexts
    def _stack(self) -> list[int]:
        if not hasattr(self._local, "stack"):
            self._local.stack = []
        return self._local.stack

    def current(self) -> int | None:
        stack = self._stack()
        return stack[-1] if stack else None

    def require_current(self) -> int:
        device = self.current()
        if device is None:
            raise CudaError("CUDA_ERROR_INVALID_CONTEXT", "invalid device context (no context is current on this thread)")
        return device

    def check_device_index(self, index) -> int:
        if not isinstance(index, int) or not 0 <= index < len(self.devices):
            raise CudaError("CUDA_ERROR_INVALID_DEVICE", f"invalid device ordinal {index}")
        return index

    def retain_primary(self, device: int) -> None:
        with self._lock:
            self.primary_refs[self.check_device_index(device)] += 1

    def release_primary(self, device: int) -> None:
        with self._lock:
            if self.primary_refs[device] <= 0:
                raise CudaError("CUDA_ERROR_INVALID_CONTEXT", f"primary context of device {device} is not retained")
            self.primary_refs[device] -= 1

    def push(self, device: int) -> None:
        if self.primary_refs.get(device, 0) <= 0:
            raise CudaError("CUDA_ERROR_INVALID_CONTEXT", "context was released")
        self._stack().append(device)

    def pop(self) -> int:
        stack = self._stack()
        if not stack:
            raise CudaError("CUDA_ERROR_INVALID_CONTEXT", "no context to pop")
        return stack.pop()

    # memory
    def alloc(self, nbytes: int) -> int:
        device = self.require_current()
        if not isinstance(nbytes, int) or nbytes <= 0:
            raise CudaError("CUDA_ERROR_INVALID_VALUE", f"cannot allocate {nbytes!r} bytes")
        with self._lock:
            pointer = self._next_pointer
            self._next_pointer += (nbytes + 0xFFFF) & ~0xFFFF
            self.device_memory[pointer] = (device, np.full(nbytes, 0x7F, np.uint8))
            self.counts["alloc"] += 1
        return pointer

    def free(self, pointer: int) -> None:
        self.require_current()
        with self._lock:
            if int(pointer) not in self.device_memory:
                raise CudaError("CUDA_ERROR_INVALID_VALUE", f"device pointer {int(pointer):#x} is not allocated")
            del self.device_memory[int(pointer)]
            self.counts["free"] += 1

    def device_view(self, pointer: int, nbytes: int) -> np.ndarray:
        """The bytes at ``pointer`` (a live allocation of the current device), or CudaError."""
        device = self.require_current()
        with self._lock:
            for base, (owner, data) in self.device_memory.items():
                if base <= int(pointer) < base + len(data):
                    if owner != device:
                        raise CudaError("CUDA_ERROR_INVALID_VALUE", f"pointer {int(pointer):#x} belongs to device {owner}")
                    start = int(pointer) - base
                    if start + nbytes > len(data):
                        raise CudaError("CUDA_ERROR_INVALID_VALUE", f"{nbytes} bytes overrun the allocation at {base:#x}")
                    return data[start : start + nbytes]
        raise CudaError("CUDA_ERROR_INVALID_VALUE", f"device pointer {int(pointer):#x} is not allocated (freed or unknown)")

    def host_alloc(self, nbytes: int) -> int:
        self.require_current()
        buffer = (ctypes.c_byte * max(1, nbytes))()
        ctypes.memset(buffer, 0x7F, max(1, nbytes))  # uninitialised memory: reading it early gives huge values
        with self._lock:
            self.pinned[ctypes.addressof(buffer)] = buffer
            self.counts["pinned"] += 1
        return ctypes.addressof(buffer)

    def host_free(self, address: int) -> None:
        self.require_current()
        with self._lock:
            if int(address) not in self.pinned:
                raise CudaError("CUDA_ERROR_INVALID_VALUE", f"host address {int(address):#x} is not page-locked memory")
            self.pinned.pop(int(address))  # kept alive by whatever array still views it; counted as freed
            self.counts["free_pinned"] += 1

    def check_host(self, address: int, nbytes: int) -> None:
        with self._lock:
            for base, buffer in self.pinned.items():
                if base <= address and address + nbytes <= base + ctypes.sizeof(buffer):
                    return
        raise CudaError("CUDA_ERROR_INVALID_VALUE", f"host range {address:#x}+{nbytes} is not in live page-locked memory")

    # streams
    def create_stream(self) -> int:
        device = self.require_current()
        with self._lock:
            handle = self._next_pointer
            self._next_pointer += 0x100
            self.streams[handle] = _Stream(device)
            self.counts["stream"] += 1
        return handle

    def stream(self, handle) -> _Stream:
        device = self.require_current()
        stream = self.streams.get(int(handle))
        if stream is None:
            raise CudaError("CUDA_ERROR_INVALID_HANDLE", f"stream {int(handle):#x} does not exist (destroyed or unknown)")
        if stream.device != device:
            raise CudaError("CUDA_ERROR_INVALID_HANDLE", f"stream {int(handle):#x} belongs to device {stream.device}")
        return stream

    def enqueue(self, handle, operation) -> None:
        stream = self.stream(handle)
        time.sleep(self.delay)
        with self._lock:
            stream.queue.append(operation)

    def synchronize(self, handle) -> None:
        stream = self.stream(handle)
        time.sleep(self.delay)
        with self._lock:
            operations, stream.queue[:] = list(stream.queue), []
            self.events.append(("synchronize", int(handle)))
        for operation in operations:
            operation()

    def destroy_stream(self, handle) -> None:
        self.stream(handle)
        with self._lock:
            del self.streams[int(handle)]
            self.counts["destroy_stream"] += 1

    def copy_htod_async(self, pointer: int, address: int, nbytes: int, handle) -> None:
        target = self.device_view(pointer, nbytes)
        self.check_host(address, nbytes)

        def apply():  # DMA at stream time: reads the host buffer as it is then
            target[:] = np.frombuffer(ctypes.string_at(address, nbytes), np.uint8)

        self.enqueue(handle, apply)

    def copy_dtoh_async(self, address: int, pointer: int, nbytes: int, handle) -> None:
        source = self.device_view(pointer, nbytes)
        self.check_host(address, nbytes)

        def apply():
            ctypes.memmove(address, source.ctypes.data, nbytes)

        self.enqueue(handle, apply)

    def live(self) -> dict[str, int]:
        """What is still held: all zeros after a clean close."""
        return {
            "device_allocations": len(self.device_memory), "pinned_buffers": len(self.pinned), "streams": len(self.streams),
            "primary_context_refs": sum(self.primary_refs.values()), "pushed_contexts_this_thread": len(self._stack()),
        }

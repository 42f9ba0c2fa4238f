"""A fake ``pycuda`` / ``pycuda.driver`` over the fake GPU.

Like pycuda it refuses every call before ``init()`` and turns each refused CUDA call into ``LogicError``;
it has no default stream (a copy must name its stream), a DeviceAllocation frees once, and a Stream is
destroyed when the object is collected. Names are recorded as pycuda spells them: ``driver.mem_alloc``,
``driver.Stream.synchronize``, ``driver.Context.pop`` ...
"""

from __future__ import annotations

import ctypes
import types

import numpy as np

from .gpu import CudaError, FakeGpu
from .recording import Fake, Namespace, Recorder, RecordedModule, bind, plain_module, record_then_get


class Error(Exception):
    pass


class LogicError(Error):
    pass


class PycudaDriver:
    """One install's pycuda.driver: its GPU, its recorder and whether ``init()`` ran.

    The module's functions are this object's methods, and its classes are subclasses bound to it (``bind``),
    so the fake module holds no state of its own.
    """

    def __init__(self, gpu: FakeGpu, recorder: Recorder):
        self.gpu, self.recorder, self.initialised = gpu, recorder, False
        self.Device, self.Context = bind(self, Device), bind(self, Context)
        self.DeviceAllocation, self.Stream = bind(self, DeviceAllocation), bind(self, Stream)

    def call(self, function, *args):
        if not self.initialised:
            raise LogicError("cuInit has not been called")
        try:
            return function(*args)
        except CudaError as exc:
            raise LogicError(str(exc)) from None

    def init(self, flags=0):
        self.initialised = True

    def pop_context(self):
        return self.call(self.gpu.pop)

    def pagelocked_empty(self, shape, dtype, order="C", mem_flags=0):
        dtype = np.dtype(dtype)
        shape = tuple(shape) if isinstance(shape, (tuple, list)) else (int(shape),)
        nbytes = int(np.prod(shape)) * dtype.itemsize
        address = self.call(self.gpu.host_alloc, nbytes)
        # A ctypes array type per size, over the page-locked buffer the GPU owns.
        allocation_type = type("PagelockedHostAllocation", (ctypes.c_byte * max(1, nbytes),), {
            "__getattribute__": record_then_get(self.recorder, "driver.PagelockedHostAllocation"),
            "free": lambda _: self.call(self.gpu.host_free, address),
        })
        allocation = allocation_type.from_address(address)
        return np.ndarray(shape, dtype, buffer=allocation, order=order)  # .base is the allocation, as in pycuda

    def memcpy_htod_async(self, dest, src, stream=None):
        address, nbytes = _host_range(src)
        self.call(self.gpu.copy_htod_async, int(dest), address, nbytes, _stream_handle(stream))

    def memcpy_dtoh_async(self, dest, src, stream=None):
        address, nbytes = _host_range(dest)
        self.call(self.gpu.copy_dtoh_async, address, int(src), nbytes, _stream_handle(stream))

    def module(self) -> types.ModuleType:
        """The ``pycuda.driver`` module, its look-ups recorded as ``driver.<name>``."""
        driver = RecordedModule("pycuda.driver", self.recorder, "driver.")
        context_namespace = Namespace(self.recorder, "driver.Context", attributes={"pop": self.pop_context})
        for name, value in {
            "init": self.init, "Device": self.Device, "Context": context_namespace, "mem_alloc": self.DeviceAllocation,
            "Stream": self.Stream, "pagelocked_empty": self.pagelocked_empty, "memcpy_htod_async": self.memcpy_htod_async,
            "memcpy_dtoh_async": self.memcpy_dtoh_async, "Error": Error, "LogicError": LogicError,
        }.items():
            setattr(driver, name, value)
        return driver


def _host_range(array):
    if not isinstance(array, np.ndarray) or not array.flags.c_contiguous:
        raise TypeError("expected a contiguous numpy array")
    return array.ctypes.data, array.nbytes


def _stream_handle(stream):
    if stream is None:
        raise LogicError("the fake has no default stream; pass the stream")
    return stream._handle


class Context(Fake):
    _api_name = "driver.Context"

    def __init__(self, device):
        super().__init__()
        self._device, self._detached = device, False

    def push(self):
        self._env.call(self._env.gpu.push, self._device)

    def detach(self):
        if self._detached:
            raise LogicError("context already detached")
        self._detached = True
        self._env.call(self._env.gpu.release_primary, self._device)


class Device(Fake):
    _api_name = "driver.Device"

    def __init__(self, index):
        super().__init__()
        self._index = self._env.call(self._env.gpu.check_device_index, index)

    def retain_primary_context(self):
        self._env.call(self._env.gpu.retain_primary, self._index)
        return self._env.Context(self._index)

    def name(self):
        return self._env.gpu.devices[self._index][0]

    def compute_capability(self):
        return tuple(int(part) for part in self._env.gpu.devices[self._index][1].split("."))


class DeviceAllocation(Fake):
    """What ``driver.mem_alloc(nbytes)`` returns."""

    _api_name = "driver.DeviceAllocation"

    def __init__(self, nbytes):
        super().__init__()
        self._pointer, self._freed = self._env.call(self._env.gpu.alloc, nbytes), False

    def __int__(self):
        return self._pointer

    __index__ = __int__

    def free(self):
        if not self._freed:  # pycuda frees once; a second free is a no-op
            self._env.call(self._env.gpu.free, self._pointer)
            self._freed = True


class Stream(Fake):
    _api_name = "driver.Stream"

    def __init__(self, flags=0):
        super().__init__()
        self._handle = self._env.call(self._env.gpu.create_stream)
        self._destroyed = False

    @property
    def handle(self):
        return self._handle

    def synchronize(self):
        self._env.call(self._env.gpu.synchronize, self._handle)

    def __del__(self):  # pycuda destroys its stream when the object is collected
        gpu = self._env.gpu
        if not self._destroyed and self._handle in gpu.streams:
            with gpu._lock:
                gpu.streams.pop(self._handle, None)
                gpu.counts["destroy_stream"] += 1
            self._destroyed = True


def make_pycuda(gpu: FakeGpu, recorder: Recorder) -> tuple[types.ModuleType, types.ModuleType]:
    """(pycuda, pycuda.driver) over ``gpu``."""
    driver = PycudaDriver(gpu, recorder).module()
    package = plain_module("pycuda")
    package.driver = driver
    return package, driver

"""Strict, recording fakes of tensorrt, pycuda.driver and cuda-python's cuda.bindings.driver over one fake GPU.

The fakes refuse what the real libraries refuse, so ordering and profile bugs show on a machine without a
GPU: shapes outside the optimization profile, execution with an input shape or address missing, a timing
cache from elsewhere, precision flags on a strongly typed network, CUDA calls outside a pushed context,
copies into freed or unknown pointers, device->host results read before the stream is synchronized
(every stream operation is queued and applied at synchronize), and anything left allocated at close.

Every fake object records the names our code touches, in the real libraries' naming ("Builder.create_network",
"IExecutionContext.set_input_shape", "driver.mem_alloc", "driver.Stream.synchronize", "driver.cuMemAlloc",
...), so tests can check them against the real bindings' name lists (tests/tensorrt/bindings.py). Only names
reached from outside the fakes are recorded: fake internals use underscore attributes.

The engine's "model" is logits = mean over pixels @ ``weights(num_classes)``, checkable with numpy.
"""

from __future__ import annotations

import ctypes
import functools
import importlib.machinery
import inspect
import json
import sys
import threading
import time
import types
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

PLAN_MAGIC = b"FAKE-TRT-PLAN\n"
CACHE_MAGIC = b"FAKE-TRT-CACHE\n"
STRONG_TYPING_ERROR = "IBuilder::buildSerializedNetwork: Error Code 3: API Usage Error (Parameter check failed, condition: !config.getFlag(BuilderFlag::k{flag}). )"
WEAK_ONLY_FLAGS = ("FP16", "INT8", "BF16", "FP8", "INT4", "OBEY_PRECISION_CONSTRAINTS", "PREFER_PRECISION_CONSTRAINTS")
REMOVED_IN_11 = (
    "BuilderFlag.FP16", "BuilderFlag.INT8", "BuilderFlag.BF16", "BuilderFlag.FP8", "BuilderFlag.INT4",
    "BuilderFlag.OBEY_PRECISION_CONSTRAINTS", "BuilderFlag.PREFER_PRECISION_CONSTRAINTS", "IBuilderConfig.int8_calibrator",
    "IInt8Calibrator", "IInt8EntropyCalibrator", "IInt8EntropyCalibrator2", "IInt8MinMaxCalibrator", "IInt8LegacyCalibrator",
    "Builder.platform_has_fast_fp16", "Builder.platform_has_fast_int8",
)


def weights(num_classes: int) -> np.ndarray:
    """The fake engine's "model": logits = images.mean(axis=(2, 3)) @ weights(num_classes)."""
    return ((np.arange(3 * num_classes, dtype=np.float32).reshape(3, num_classes) - 20) / 10).astype(np.float32)


def expected_logits(images: np.ndarray, num_classes: int) -> np.ndarray:
    return images.astype(np.float32).mean(axis=(2, 3)) @ weights(num_classes)


# ---------------------------------------------------------------- recording


class Recorder:
    """The dotted names touched, in first-touch order (thread-safe)."""

    def __init__(self, label: str):
        self.label, self._names, self._lock = label, {}, threading.Lock()
        self.signatures: dict[str, tuple[str, ...]] = {}  # callable name -> the fake's parameter names

    def add_callable(self, name: str, value) -> None:
        """Keep the parameter names of the fake callable behind ``name``, to compare with the real ones."""
        target = value
        if isinstance(value, Namespace):
            target = object.__getattribute__(value, "_constructor")
        if isinstance(target, type):
            target = target.__init__
        if not callable(target):
            return
        try:
            parameters = inspect.signature(target).parameters.values()
        except (TypeError, ValueError):
            return
        names = tuple(p.name for p in parameters if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD))
        with self._lock:
            self.signatures.setdefault(name, names)

    def add(self, name: str) -> None:
        with self._lock:
            self._names.setdefault(name, None)

    @property
    def names(self) -> frozenset[str]:
        return frozenset(self._names)

    def sorted(self) -> list[str]:
        return sorted(self._names)

    def clear(self) -> None:
        with self._lock:
            self._names.clear()


def keyword_recording(recorder: Recorder, qualname: str, function):
    """``function``, recording ``qualname(keyword)`` for each keyword argument a caller passes."""
    if recorder is not None:
        recorder.add_callable(qualname, function)
    if not isinstance(function, (types.FunctionType, types.MethodType, types.BuiltinFunctionType)):
        return function

    def call(*args, **kwargs):
        for keyword in kwargs:
            recorder.add(f"{qualname}({keyword})")
        return function(*args, **kwargs)

    call.__wrapped__ = function
    return call


class Recorded:
    """Records ``<api name>.<attribute>`` for every public attribute looked up (found or not), and
    ``<api name>.<method>(<keyword>)`` for every keyword argument passed to a method."""

    _api_name = "?"

    def __init__(self, recorder: Recorder | None):
        object.__setattr__(self, "_recorder", recorder)

    def __getattribute__(self, name):
        if name.startswith("_"):
            return object.__getattribute__(self, name)
        recorder = object.__getattribute__(self, "_recorder")
        qualname = f"{object.__getattribute__(self, '_api_name')}.{name}"
        if recorder is None:
            return object.__getattribute__(self, name)
        recorder.add(qualname)
        return keyword_recording(recorder, qualname, object.__getattribute__(self, name))


class Member(int):
    """An enum member: an int, as pybind11 enums convert with int()."""

    def __new__(cls, value: int, qualname: str):
        member = super().__new__(cls, value)
        member._qualname = qualname
        return member

    def __repr__(self) -> str:
        return f"<{self._qualname}: {int(self)}>"

    __str__ = __repr__


class Namespace(Recorded):
    """An enum, or a class used through its attributes and its constructor (``trt.Logger.WARNING``, ``trt.Logger(...)``)."""

    def __init__(self, recorder, api_name, members=(), attributes=None, constructor=None):
        super().__init__(recorder)
        object.__setattr__(self, "_api_name", api_name)
        values = {name: Member(i, f"{api_name}.{name}") for i, name in enumerate(members)} if not isinstance(members, dict) else {
            name: Member(v, f"{api_name}.{name}") for name, v in members.items()
        }
        values.update(attributes or {})
        object.__setattr__(self, "_members", values)
        object.__setattr__(self, "_constructor", constructor)

    def __getattr__(self, name):
        members = object.__getattribute__(self, "_members")
        if name in members:
            qualname = f"{object.__getattribute__(self, '_api_name')}.{name}"
            return keyword_recording(object.__getattribute__(self, "_recorder"), qualname, members[name])
        raise AttributeError(f"type object '{object.__getattribute__(self, '_api_name')}' has no attribute '{name}'")

    def __call__(self, *args, **kwargs):
        constructor = object.__getattribute__(self, "_constructor")
        for keyword in kwargs:
            object.__getattribute__(self, "_recorder").add(f"{object.__getattribute__(self, '_api_name')}({keyword})")
        if constructor is None:
            raise TypeError(f"{object.__getattribute__(self, '_api_name')}: No constructor defined!")
        return constructor(*args, **kwargs)

    def _get(self, name):
        return object.__getattribute__(self, "_members")[name]


class RecordedModule(types.ModuleType):
    """A module whose public attribute look-ups are recorded as ``<prefix><name>``."""

    def __init__(self, name: str, recorder: Recorder, prefix: str):
        super().__init__(name)
        self.__spec__ = importlib.machinery.ModuleSpec(name, None)  # find_spec() answers from sys.modules
        self._recorder, self._prefix = recorder, prefix

    def __getattribute__(self, name):
        if name.startswith("_"):
            return types.ModuleType.__getattribute__(self, name)
        self_dict = types.ModuleType.__getattribute__(self, "__dict__")
        qualname = self_dict["_prefix"] + name
        self_dict["_recorder"].add(qualname)
        return keyword_recording(self_dict["_recorder"], qualname, types.ModuleType.__getattribute__(self, name))


def plain_module(name: str) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=True)
    return module


# ---------------------------------------------------------------- the fake GPU (shared by both CUDA bindings and TensorRT)


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


# ---------------------------------------------------------------- pycuda.driver


def make_pycuda(gpu: FakeGpu, recorder: Recorder) -> tuple[types.ModuleType, types.ModuleType]:
    """(pycuda, pycuda.driver) over ``gpu``."""
    driver = RecordedModule("pycuda.driver", recorder, "driver.")
    state = {"initialised": False}

    class Error(Exception):
        pass

    class LogicError(Error):
        pass

    def call(function, *args):
        if not state["initialised"]:
            raise LogicError("cuInit has not been called")
        try:
            return function(*args)
        except CudaError as exc:
            raise LogicError(str(exc)) from None

    class Context(Recorded):
        _api_name = "driver.Context"

        def __init__(self, device):
            super().__init__(recorder)
            self._device, self._detached = device, False

        def push(self):
            call(gpu.push, self._device)

        def detach(self):
            if self._detached:
                raise LogicError("context already detached")
            self._detached = True
            call(gpu.release_primary, self._device)

    class Device(Recorded):
        _api_name = "driver.Device"

        def __init__(self, index):
            super().__init__(recorder)
            self._index = call(gpu.check_device_index, index)

        def retain_primary_context(self):
            call(gpu.retain_primary, self._index)
            return Context(self._index)

        def name(self):
            return gpu.devices[self._index][0]

        def compute_capability(self):
            return tuple(int(part) for part in gpu.devices[self._index][1].split("."))

    class DeviceAllocation(Recorded):
        _api_name = "driver.DeviceAllocation"

        def __init__(self, nbytes):
            super().__init__(recorder)
            self._pointer, self._freed = call(gpu.alloc, nbytes), False

        def __int__(self):
            return self._pointer

        __index__ = __int__

        def free(self):
            if not self._freed:  # pycuda frees once; a second free is a no-op
                call(gpu.free, self._pointer)
                self._freed = True

    class Stream(Recorded):
        _api_name = "driver.Stream"

        def __init__(self, flags=0):
            super().__init__(recorder)
            self._handle = call(gpu.create_stream)
            self._destroyed = False

        @property
        def handle(self):
            return self._handle

        def synchronize(self):
            call(gpu.synchronize, self._handle)

        def __del__(self):  # pycuda destroys its stream when the object is collected
            if not self._destroyed and self._handle in gpu.streams:
                with gpu._lock:
                    gpu.streams.pop(self._handle, None)
                    gpu.counts["destroy_stream"] += 1
                self._destroyed = True

    def pagelocked_empty(shape, dtype, order="C", mem_flags=0):
        dtype = np.dtype(dtype)
        shape = tuple(shape) if isinstance(shape, (tuple, list)) else (int(shape),)
        nbytes = int(np.prod(shape)) * dtype.itemsize
        address = call(gpu.host_alloc, nbytes)
        allocation_type = type("PagelockedHostAllocation", (ctypes.c_byte * max(1, nbytes),), {
            "__getattribute__": _record_then_get(recorder, "driver.PagelockedHostAllocation"),
            "free": lambda self: call(gpu.host_free, address),
        })
        allocation = allocation_type.from_address(address)
        return np.ndarray(shape, dtype, buffer=allocation, order=order)  # .base is the allocation, as in pycuda

    def host_range(array):
        if not isinstance(array, np.ndarray) or not array.flags.c_contiguous:
            raise TypeError("expected a contiguous numpy array")
        return array.ctypes.data, array.nbytes

    def memcpy_htod_async(dest, src, stream=None):
        address, nbytes = host_range(src)
        call(gpu.copy_htod_async, int(dest), address, nbytes, _stream_handle(stream))

    def memcpy_dtoh_async(dest, src, stream=None):
        address, nbytes = host_range(dest)
        call(gpu.copy_dtoh_async, address, int(src), nbytes, _stream_handle(stream))

    def _stream_handle(stream):
        if stream is None:
            raise LogicError("the fake has no default stream; pass the stream")
        return stream._handle

    def init(flags=0):
        state["initialised"] = True

    context_namespace = Namespace(recorder, "driver.Context", attributes={"pop": lambda: call(gpu.pop)})
    for name, value in {
        "init": init, "Device": Device, "Context": context_namespace, "mem_alloc": DeviceAllocation, "Stream": Stream,
        "pagelocked_empty": pagelocked_empty, "memcpy_htod_async": memcpy_htod_async, "memcpy_dtoh_async": memcpy_dtoh_async,
        "Error": Error, "LogicError": LogicError,
    }.items():
        setattr(driver, name, value)
    package = plain_module("pycuda")
    package.driver = driver
    return package, driver


def _record_then_get(recorder: Recorder, api_name: str):
    def __getattribute__(self, name):
        if name.startswith("_"):
            return object.__getattribute__(self, name)
        recorder.add(f"{api_name}.{name}")
        return keyword_recording(recorder, f"{api_name}.{name}", object.__getattribute__(self, name))

    return __getattribute__


# ---------------------------------------------------------------- cuda-python: cuda.bindings.driver

CU_RESULTS = {
    "CUDA_SUCCESS": 0, "CUDA_ERROR_INVALID_VALUE": 1, "CUDA_ERROR_NOT_INITIALIZED": 3, "CUDA_ERROR_INVALID_DEVICE": 101,
    "CUDA_ERROR_INVALID_CONTEXT": 201, "CUDA_ERROR_INVALID_HANDLE": 400,
}


def make_cuda_python(gpu: FakeGpu, recorder: Recorder) -> dict[str, types.ModuleType]:
    """sys.modules entries for cuda, cuda.bindings, cuda.bindings.driver over ``gpu``."""
    driver = RecordedModule("cuda.bindings.driver", recorder, "driver.")
    results = Namespace(recorder, "driver.CUresult", CU_RESULTS)
    success = results._get("CUDA_SUCCESS")
    state = {"initialised": False}

    class Handle:
        """CUdevice, CUcontext, CUdeviceptr, CUstream: opaque values that convert with int()."""

        def __init__(self, value):
            self._value = int(value)

        def __int__(self):
            return self._value

        def __eq__(self, other):
            return isinstance(other, (Handle, int)) and int(other) == self._value

        def __hash__(self):
            return hash(self._value)

    handle_types = {name: type(name, (Handle,), {}) for name in ("CUdevice", "CUcontext", "CUdeviceptr", "CUstream")}

    def returning(count):
        """A driver call returning (CUresult, *count values); CUDA_ERROR_NOT_INITIALIZED before cuInit."""

        def decorate(function):
            @functools.wraps(function)  # keeps the real keyword names visible to the signature check
            def call(*args):
                if not state["initialised"]:
                    return (results._get("CUDA_ERROR_NOT_INITIALIZED"),) + (None,) * count
                try:
                    values = function(*args)
                except CudaError as exc:
                    return (results._get(exc.code),) + (None,) * count
                return (success, *values)

            return call

        return decorate

    # Parameter names as cuda-bindings spells them (checked by test_binding_conformance).
    def cuInit(Flags):
        state["initialised"] = True
        return (success,)

    @returning(1)
    def cuDeviceGet(ordinal):
        return (handle_types["CUdevice"](gpu.check_device_index(ordinal)),)

    @returning(1)
    def cuDevicePrimaryCtxRetain(dev):
        gpu.retain_primary(int(dev))
        return (handle_types["CUcontext"](int(dev)),)

    @returning(0)
    def cuDevicePrimaryCtxRelease(dev):
        gpu.release_primary(int(dev))
        return ()

    @returning(0)
    def cuCtxPushCurrent(ctx):
        gpu.push(int(ctx))
        return ()

    @returning(1)
    def cuCtxPopCurrent():
        return (handle_types["CUcontext"](gpu.pop()),)

    @returning(1)
    def cuMemAlloc(bytesize):
        return (handle_types["CUdeviceptr"](gpu.alloc(bytesize)),)

    @returning(0)
    def cuMemFree(dptr):
        gpu.free(int(dptr))
        return ()

    @returning(1)
    def cuMemHostAlloc(bytesize, Flags):
        return (gpu.host_alloc(bytesize),)

    @returning(0)
    def cuMemFreeHost(p):
        gpu.host_free(int(p))
        return ()

    @returning(1)
    def cuStreamCreate(Flags):
        return (handle_types["CUstream"](gpu.create_stream()),)

    @returning(0)
    def cuStreamSynchronize(hStream):
        gpu.synchronize(int(hStream))
        return ()

    @returning(0)
    def cuStreamDestroy(hStream):
        gpu.destroy_stream(int(hStream))
        return ()

    @returning(0)
    def cuMemcpyHtoDAsync(dstDevice, srcHost, ByteCount, hStream):
        gpu.copy_htod_async(int(dstDevice), int(srcHost), int(ByteCount), int(hStream))
        return ()

    @returning(0)
    def cuMemcpyDtoHAsync(dstHost, srcDevice, ByteCount, hStream):
        gpu.copy_dtoh_async(int(dstHost), int(srcDevice), int(ByteCount), int(hStream))
        return ()

    def cuGetErrorString(error):
        names = {value: name for name, value in CU_RESULTS.items()}
        return (success, names.get(int(error), "CUDA_ERROR_UNKNOWN").lower().replace("_", " ").encode())

    functions = {name: value for name, value in locals().items() if name.startswith("cu")}
    for name, value in {**functions, **handle_types, "CUresult": results}.items():
        setattr(driver, name, value)
    bindings, cuda = plain_module("cuda.bindings"), plain_module("cuda")
    bindings.driver, cuda.bindings = driver, bindings
    return {"cuda": cuda, "cuda.bindings": bindings, "cuda.bindings.driver": driver}


# ---------------------------------------------------------------- tensorrt


def version_tuple(version: str) -> tuple[int, int]:
    major, minor = version.split(".")[:2]
    return int(major), int(minor)


@dataclass
class TrtControls:
    """Failures a test can switch on, and what the fake TensorRT logged."""

    parser_errors: list[str] = field(default_factory=list)
    fail_build: bool = False
    errors: list[str] = field(default_factory=list)  # what TensorRT would have logged as errors
    calls: list[tuple] = field(default_factory=list)  # ("create_network", flags), ("set_flag", "FP16"), ...


def read_network(path: str) -> dict:
    """What the fake parser takes from an ONNX file: I/O names, shapes (-1 dynamic), precision."""
    import onnx

    model = onnx.load(path, load_external_data=False)
    dims = lambda value: [d.dim_value if d.HasField("dim_value") else -1 for d in value.type.tensor_type.shape.dim]  # noqa: E731
    props = {p.key: p.value for p in model.metadata_props}
    return {
        "inputs": [{"name": v.name, "shape": dims(v)} for v in model.graph.input],
        "outputs": [{"name": v.name, "shape": dims(v)} for v in model.graph.output],
        "precision": props.get("precision", "fp32"),
    }


def make_tensorrt(version: str, gpu: FakeGpu, recorder: Recorder, controls: TrtControls) -> types.ModuleType:
    """A tensorrt module of ``version``: 10.x keeps the weak-typing API, 11.x lacks it (AttributeError)."""
    trt = RecordedModule("tensorrt", recorder, "")
    eleven = version_tuple(version)[0] >= 11
    flags = ["TF32", "REFIT", "DEBUG", "GPU_FALLBACK", "SPARSE_WEIGHTS", "VERSION_COMPATIBLE", "STRIP_PLAN"]
    if not eleven:
        flags += list(WEAK_ONLY_FLAGS) + ["DIRECT_IO"]
    BuilderFlag = Namespace(recorder, "BuilderFlag", flags)
    creation = {"STRONGLY_TYPED": 1} if eleven else {"EXPLICIT_BATCH": 0, "STRONGLY_TYPED": 1}
    NetworkFlag = Namespace(recorder, "NetworkDefinitionCreationFlag", creation)
    MemoryPoolType = Namespace(recorder, "MemoryPoolType", ["WORKSPACE", "DLA_MANAGED_SRAM", "DLA_LOCAL_DRAM", "DLA_GLOBAL_DRAM", "TACTIC_DRAM"])
    TensorIOMode = Namespace(recorder, "TensorIOMode", ["NONE", "INPUT", "OUTPUT"])
    DataType = Namespace(recorder, "DataType", ["FLOAT", "HALF", "INT8", "INT32", "BOOL"])
    severities = ["INTERNAL_ERROR", "ERROR", "WARNING", "INFO", "VERBOSE"]
    numpy_types = {int(DataType._get("FLOAT")): np.float32, int(DataType._get("HALF")): np.float16,
                   int(DataType._get("INT8")): np.int8, int(DataType._get("INT32")): np.int32, int(DataType._get("BOOL")): np.bool_}

    def error(message: str) -> None:
        controls.errors.append(message)

    class Logger(Recorded):
        _api_name = "Logger"

        def __init__(self, min_severity=None):
            super().__init__(recorder)
            self._severity = min_severity

    class IParserError(Recorded):
        _api_name = "IParserError"

        def __init__(self, text):
            super().__init__(recorder)
            self._text = text

        def __str__(self):
            return self._text

        def desc(self):
            return self._text

    class INetworkDefinition(Recorded):
        _api_name = "INetworkDefinition"

        def __init__(self, strongly_typed):
            super().__init__(recorder)
            self._strongly_typed, self._graph = strongly_typed, None

    class OnnxParser(Recorded):
        _api_name = "OnnxParser"

        def __init__(self, network, logger):
            super().__init__(recorder)
            if not isinstance(network, INetworkDefinition) or not isinstance(logger, Logger):
                raise TypeError("OnnxParser(network: INetworkDefinition, logger: ILogger)")
            self._network, self._errors = network, []

        def parse_from_file(self, model):
            if not Path(model).is_file():
                self._errors = [f"Failed to open file: {model}"]
            elif controls.parser_errors:
                self._errors = list(controls.parser_errors)
            else:
                self._network._graph = read_network(str(model))
            return not self._errors

        @property
        def num_errors(self):
            return len(self._errors)

        def get_error(self, index):
            return IParserError(self._errors[index])

    class IOptimizationProfile(Recorded):
        _api_name = "IOptimizationProfile"

        def __init__(self):
            super().__init__(recorder)
            self._shapes, self._valid = {}, True

        def set_shape(self, input, min, opt, max):  # noqa: A002 (the real keyword names)
            shapes = [tuple(int(d) for d in s) for s in (min, opt, max)]
            if len({len(s) for s in shapes}) != 1 or not all(a <= b <= c for a, b, c in zip(*shapes)) or shapes[0][0] < 0:
                error(f"IOptimizationProfile::setDimensions: invalid dimensions {shapes} for {input}")
                self._valid = False
            self._shapes[input] = shapes

    class ITimingCache(Recorded):
        _api_name = "ITimingCache"

        def __init__(self, origin, entries, foreign):
            super().__init__(recorder)
            self._origin, self._entries, self._foreign = origin, entries, foreign

        def serialize(self):
            return IHostMemory(CACHE_MAGIC + json.dumps({"origin": self._origin, "entries": self._entries}).encode())

        def combine(self, other, ignore_mismatch):
            return False

        def reset(self):
            self._entries = 0
            return True

    class IHostMemory(bytearray):
        _api_name = "IHostMemory"
        __getattribute__ = _record_then_get(recorder, "IHostMemory")

        @property
        def nbytes(self):
            return len(self)

    class IBuilderConfig(Recorded):
        _api_name = "IBuilderConfig"

        def __init__(self, builder):
            super().__init__(recorder)
            self._flags, self._pools, self._profiles, self._cache, self._calibrator = set(), {}, [], None, None

        def set_memory_pool_limit(self, pool, pool_size):
            if not isinstance(pool, Member) or not pool._qualname.startswith("MemoryPoolType."):
                raise TypeError("set_memory_pool_limit(pool: MemoryPoolType, pool_size: int)")
            self._pools[pool._qualname] = int(pool_size)

        def set_flag(self, flag):
            if not isinstance(flag, Member) or not flag._qualname.startswith("BuilderFlag."):
                raise TypeError("set_flag(flag: BuilderFlag)")
            self._flags.add(flag._qualname.split(".", 1)[1])
            controls.calls.append(("set_flag", flag._qualname.split(".", 1)[1]))

        def get_flag(self, flag):
            return flag._qualname.split(".", 1)[1] in self._flags

        def clear_flag(self, flag):
            self._flags.discard(flag._qualname.split(".", 1)[1])

        def add_optimization_profile(self, profile):
            controls.calls.append(("add_optimization_profile", dict(profile._shapes)))
            if not profile._valid:
                return -1
            self._profiles.append(profile)
            return len(self._profiles) - 1

        @property
        def num_optimization_profiles(self):
            return len(self._profiles)

        def create_timing_cache(self, serialized_timing_cache):
            data = bytes(serialized_timing_cache)
            origin = _origin()
            if data == b"":
                return ITimingCache(origin, 0, foreign=False)
            if data.startswith(CACHE_MAGIC):
                try:
                    content = json.loads(data[len(CACHE_MAGIC):])
                    return ITimingCache(content["origin"], content["entries"], foreign=content["origin"] != origin)
                except (ValueError, KeyError):
                    pass
            return ITimingCache("unknown", 0, foreign=True)  # as TensorRT does for another version's or GPU's blob

        def set_timing_cache(self, cache, ignore_mismatch):
            if cache._foreign and not ignore_mismatch:
                error("IBuilderConfig::setTimingCache: Error Code 2: timing cache mismatch (another TensorRT version or device)")
                return False
            self._cache = cache
            return True

        def get_timing_cache(self):
            return self._cache

        if not eleven:
            @property
            def int8_calibrator(self):
                return self._calibrator

            @int8_calibrator.setter
            def int8_calibrator(self, value):
                self._calibrator = value

    def _origin() -> str:
        device = gpu.current()
        return f"{version}/{gpu.devices[device][1] if device is not None else '?'}"

    class Builder(Recorded):
        _api_name = "Builder"

        def __init__(self, logger):
            super().__init__(recorder)
            if not isinstance(logger, Logger):
                raise TypeError("Builder(logger: ILogger)")

        def create_network(self, flags=0):
            controls.calls.append(("create_network", int(flags)))
            allowed = sum(1 << v for v in creation.values())
            if int(flags) & ~allowed:
                error(f"IBuilder::createNetworkV2: Error Code 3: unknown network creation flags {int(flags):#x}")
                return None
            return INetworkDefinition(eleven or bool(int(flags) & (1 << creation["STRONGLY_TYPED"])))

        def create_builder_config(self):
            return IBuilderConfig(self)

        def create_optimization_profile(self):
            return IOptimizationProfile()

        if not eleven:
            @property
            def platform_has_fast_fp16(self):
                return True

            @property
            def platform_has_fast_int8(self):
                return True

        @property
        def platform_has_tf32(self):
            return True

        def build_serialized_network(self, network, config):
            device = gpu.current()
            if device is None:
                error("IBuilder::buildSerializedNetwork: Error Code 1: Cuda Runtime (invalid device context)")
                return None
            graph = network._graph
            if graph is None:
                error("IBuilder::buildSerializedNetwork: Error Code 4: Network has no inputs (nothing was parsed)")
                return None
            if network._strongly_typed:
                for flag in WEAK_ONLY_FLAGS:
                    if flag in config._flags:
                        error(STRONG_TYPING_ERROR.format(flag=flag))
                        return None
            controls.calls.append(("build_serialized_network", device))
            if controls.fail_build:
                error("IBuilder::buildSerializedNetwork: Error Code 10: Internal Error (could not find any implementation)")
                return None
            for profile in config._profiles:
                unknown = set(profile._shapes) - {t["name"] for t in graph["inputs"]}
                if unknown:
                    error(f"IBuilder::buildSerializedNetwork: Error Code 4: the optimization profile names unknown inputs {sorted(unknown)}")
                    return None
            profile_shapes = {}
            for tensor in graph["inputs"]:
                shape, given = tensor["shape"], [p._shapes[tensor["name"]] for p in config._profiles if tensor["name"] in p._shapes]
                if -1 in shape and not given:
                    error("IBuilder::buildSerializedNetwork: Error Code 4: Network has dynamic or shape inputs, but no optimization profile has been defined.")
                    return None
                low, opt, high = given[0] if given else (shape, shape, shape)
                for bound in (low, opt, high):
                    if len(bound) != len(shape) or any(d != -1 and d != b for d, b in zip(shape, bound)):
                        error(f"Error Code 4: profile shape {bound} does not fit input {tensor['name']} {shape}")
                        return None
                profile_shapes[tensor["name"]] = [list(low), list(opt), list(high)]
            if network._strongly_typed:
                compute = graph["precision"]
            else:
                compute = "int8" if "INT8" in config._flags and graph["precision"] == "int8" else "fp16" if "FP16" in config._flags else graph["precision"]
            if config._cache is not None:
                config._cache._entries += 1
                config._cache._origin, config._cache._foreign = _origin(), False
            gpu.events.append(("build", device))
            plan = {
                "version": version, "device": device, "cc": gpu.devices[device][1], "graph": graph, "profile": profile_shapes,
                "strongly_typed": network._strongly_typed, "flags": sorted(config._flags), "compute": compute,
                "workspace": config._pools.get("MemoryPoolType.WORKSPACE"),
            }
            return IHostMemory(PLAN_MAGIC + json.dumps(plan).encode())

    class Runtime(Recorded):
        _api_name = "Runtime"

        def __init__(self, logger):
            super().__init__(recorder)
            if not isinstance(logger, Logger):
                raise TypeError("Runtime(logger: ILogger)")

        def deserialize_cuda_engine(self, serialized_engine):
            data = bytes(serialized_engine)
            device = gpu.current()
            gpu.events.append(("deserialize", device))
            if device is None:
                error("IRuntime::deserializeCudaEngine: Error Code 1: Cuda Runtime (invalid device context)")
                return None
            if not data.startswith(PLAN_MAGIC):
                error("IRuntime::deserializeCudaEngine: Error Code 1: Serialization (magic tag does not match)")
                return None
            plan = json.loads(data[len(PLAN_MAGIC):])
            if plan["version"] != version:
                error(f"IRuntime::deserializeCudaEngine: Error Code 1: Serialization (The engine plan file is not compatible with this version of TensorRT, expecting library version {version} got {plan['version']})")
                return None
            if plan["cc"] != gpu.devices[device][1]:
                error(f"Error Code 1: the engine was built for compute capability {plan['cc']}, this device is {gpu.devices[device][1]}")
                return None
            return ICudaEngine(plan, device)

    class ICudaEngine(Recorded):
        _api_name = "ICudaEngine"

        def __init__(self, plan, device):
            super().__init__(recorder)
            self._plan, self._device = plan, device
            graph = plan["graph"]
            self._tensors = [(t["name"], "INPUT", t["shape"]) for t in graph["inputs"]]
            self._tensors += [(t["name"], "OUTPUT", t["shape"]) for t in graph["outputs"]]

        def _find(self, name):
            for tensor in self._tensors:
                if tensor[0] == name:
                    return tensor
            return None

        @property
        def num_io_tensors(self):
            return len(self._tensors)

        def get_tensor_name(self, index):
            if not 0 <= index < len(self._tensors):
                raise IndexError(index)
            return self._tensors[index][0]

        def get_tensor_mode(self, name):
            tensor = self._find(name)
            return TensorIOMode._get(tensor[1] if tensor else "NONE")

        def get_tensor_dtype(self, name):
            return DataType._get("FLOAT")  # the exports keep float32 I/O at every precision

        def get_tensor_shape(self, name):
            tensor = self._find(name)
            return tuple(tensor[2]) if tensor else ()

        def get_tensor_profile_shape(self, name, profile_index):
            return [tuple(s) for s in self._plan["profile"][name]]

        @property
        def num_optimization_profiles(self):
            return 1

        def create_execution_context(self):
            return IExecutionContext(self)

    class IExecutionContext(Recorded):
        _api_name = "IExecutionContext"

        def __init__(self, engine):
            super().__init__(recorder)
            self._engine, self._shapes, self._addresses = engine, {}, {}

        def set_input_shape(self, name, shape):
            time.sleep(gpu.delay)
            tensor = self._engine._find(name)
            shape = tuple(int(d) for d in shape)
            if tensor is None or tensor[1] != "INPUT" or len(shape) != len(tensor[2]):
                error(f"IExecutionContext::setInputShape: Error Code 3: {name} is not an input of rank {len(shape)}")
                return False
            low, _, high = self._engine._plan["profile"][name]
            if not all(a <= d <= b for a, d, b in zip(low, shape, high)):
                error(f"IExecutionContext::setInputShape: Error Code 3: shape {shape} outside the profile {low}..{high} of {name}")
                return False
            self._shapes[name] = shape
            return True

        def get_tensor_shape(self, name):
            tensor = self._engine._find(name)
            if tensor is None:
                return ()
            if tensor[1] == "INPUT":
                return self._shapes.get(name, tuple(tensor[2]))
            batch = next(iter(self._shapes.values()))[0] if self._shapes else -1
            return tuple(batch if d == -1 else d for d in tensor[2])

        def set_tensor_address(self, name, memory):
            if self._engine._find(name) is None:
                error(f"IExecutionContext::setTensorAddress: Error Code 3: no tensor {name}")
                return False
            self._addresses[name] = int(memory)
            return True

        def get_tensor_address(self, name):
            return self._addresses.get(name, 0)

        def execute_async_v3(self, stream_handle):
            engine = self._engine
            if gpu.current() != engine._device:
                error("IExecutionContext::enqueueV3: Error Code 1: Cuda Runtime (the engine's context is not current)")
                return False
            missing = [t[0] for t in engine._tensors if t[1] == "INPUT" and t[0] not in self._shapes]
            missing += [t[0] for t in engine._tensors if t[0] not in self._addresses]
            if missing:
                error(f"IExecutionContext::enqueueV3: Error Code 3: input shape or address not set for {missing}")
                return False
            (input_name, _, _), (output_name, _, _) = engine._tensors[0], engine._tensors[1]
            shape = self._shapes[input_name]
            out_shape = self.get_tensor_shape(output_name)
            try:
                images = gpu.device_view(self._addresses[input_name], int(np.prod(shape)) * 4)
                logits = gpu.device_view(self._addresses[output_name], int(np.prod(out_shape)) * 4)
                gpu.stream(stream_handle)
            except CudaError as exc:
                error(f"IExecutionContext::enqueueV3: Error Code 1: Cuda Runtime ({exc})")
                return False

            def run():
                batch = images.view(np.float32).reshape(shape)
                logits[:] = expected_logits(batch, out_shape[-1]).astype(np.float32).view(np.uint8).reshape(-1)

            gpu.enqueue(stream_handle, run)
            return True

    def nptype(trt_type):
        return numpy_types[int(trt_type)]

    logger_class = Namespace(recorder, "Logger", {name: i for i, name in enumerate(severities)}, constructor=Logger)
    logger_class._members["Severity"] = Namespace(recorder, "Logger.Severity", {name: i for i, name in enumerate(severities)})
    names = {
        "__version__": version, "Logger": logger_class, "ILogger": Logger, "Builder": Namespace(recorder, "Builder", constructor=Builder),
        "Runtime": Namespace(recorder, "Runtime", constructor=Runtime), "OnnxParser": Namespace(recorder, "OnnxParser", constructor=OnnxParser),
        "BuilderFlag": BuilderFlag, "NetworkDefinitionCreationFlag": NetworkFlag, "MemoryPoolType": MemoryPoolType,
        "TensorIOMode": TensorIOMode, "DataType": DataType, "nptype": nptype,
        "INetworkDefinition": INetworkDefinition, "IBuilderConfig": IBuilderConfig, "ICudaEngine": ICudaEngine,
        "IExecutionContext": IExecutionContext, "ITimingCache": ITimingCache, "IOptimizationProfile": IOptimizationProfile,
        "IHostMemory": IHostMemory,
    }
    if not eleven:
        for name in ("IInt8Calibrator", "IInt8EntropyCalibrator", "IInt8EntropyCalibrator2", "IInt8MinMaxCalibrator", "IInt8LegacyCalibrator"):
            names[name] = type(name, (), {})
    for name, value in names.items():
        setattr(trt, name, value)
    return trt


# ---------------------------------------------------------------- installing everything


@dataclass
class FakeStack:
    """What a test installed: the GPU, the three modules, their recorders and the TensorRT controls."""

    gpu: FakeGpu
    trt: types.ModuleType
    controls: TrtControls
    recorders: dict[str, Recorder]  # "tensorrt", "pycuda", "cuda-python"
    version: str

    def clear_records(self) -> None:
        for recorder in self.recorders.values():
            recorder.clear()

    def records(self) -> dict[str, list[str]]:
        return {name: recorder.sorted() for name, recorder in self.recorders.items()}

    def signatures(self) -> dict[str, dict[str, tuple[str, ...]]]:
        """{library: {callable name: the fake's parameter names}} for every callable our code looked up."""
        return {name: dict(recorder.signatures) for name, recorder in self.recorders.items()}


def install(monkeypatch, version: str = "10.13.3.9.post1", devices=(("FakeGPU", "8.7"),),
            bindings: tuple[str, ...] = ("pycuda", "cuda-python")) -> FakeStack:
    """Put fake tensorrt (``version``), the CUDA bindings named and ``devices`` in place of the real ones."""
    from clca_deploy.system.gpu import GpuInfo

    gpu = FakeGpu(devices)
    recorders = {name: Recorder(name) for name in ("tensorrt", "pycuda", "cuda-python")}
    controls = TrtControls()
    trt = make_tensorrt(version, gpu, recorders["tensorrt"], controls)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    for name in ("pycuda", "pycuda.driver", "cuda", "cuda.bindings", "cuda.bindings.driver", "cuda.cuda"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    if "pycuda" in bindings:
        package, driver = make_pycuda(gpu, recorders["pycuda"])
        monkeypatch.setitem(sys.modules, "pycuda", package)
        monkeypatch.setitem(sys.modules, "pycuda.driver", driver)
    if "cuda-python" in bindings:
        for name, module in make_cuda_python(gpu, recorders["cuda-python"]).items():
            monkeypatch.setitem(sys.modules, name, module)

    def reason(index: int = 0) -> str | None:
        count = len(gpu.devices)
        return None if 0 <= index < count else f"there is no CUDA GPU {index}: this machine has {count} GPU(s)"

    def info(index: int = 0) -> GpuInfo:
        name, cc = gpu.devices[index]
        return GpuInfo(index=index, name=name, compute_capability=cc, total_memory_bytes=8 << 30, integrated=False, driver_version="12.6")

    monkeypatch.setattr("clca_deploy.tensorrt.toolkit.gpu_unavailable_reason", reason)
    monkeypatch.setattr("clca_deploy.tensorrt.toolkit.gpu_info", info)
    monkeypatch.setattr("clca_deploy.tensorrt.toolkit.installed_bindings", lambda: tuple(bindings))
    monkeypatch.setattr("clca_deploy.tensorrt.cuda.installed_bindings", lambda: tuple(bindings))
    return FakeStack(gpu=gpu, trt=trt, controls=controls, recorders=recorders, version=version)


def tiny_onnx(path, precision: str = "fp32", batch: int | None = None, img_size: int = 32, num_classes: int = 15):
    """A small ONNX file with clca-deploy metadata (the fake parser reads only its I/O and precision)."""
    import onnx
    from onnx import TensorProto, helper

    dims = [batch or "batch", 3, img_size, img_size]
    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["images"], ["pooled"]), helper.make_node("Flatten", ["pooled"], ["flat"]),
         helper.make_node("MatMul", ["flat", "w"], ["logits"])],
        "tiny",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch or "batch", num_classes])],
        [onnx.numpy_helper.from_array(weights(num_classes), "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    props = {
        "clca_deploy.format": "1", "clca_deploy.version": "0.1.0", "model": "evit_deit_tiny_patch16_224",
        "method": "evit", "backbone": "deit_tiny", "keep_rate": "[0.5, 0.5, 0.5]", "trained_keep_rate": "[0.5]",
        "reduction_loc": "[3, 6, 9]", "token_schedule": "[[197, 197]]", "img_size": str(img_size),
        "resize_size": str(img_size + 4), "interpolation": "bicubic", "mean": "[0.5, 0.5, 0.5]", "std": "[0.5, 0.5, 0.5]",
        "num_classes": str(num_classes), "clca_config": "{}", "precision": precision,
    }
    for key, value in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))
    return Path(path)

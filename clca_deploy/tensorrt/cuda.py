"""The CUDA calls the TensorRT runtime needs, over either Python binding: pycuda or cuda-python.

Both are thin layers over the CUDA driver API, so one small interface covers them: the device's
primary context (the one the CUDA runtime, TensorRT and torch share), device and page-locked host
memory, one stream, asynchronous copies. pycuda is preferred when both are installed (a user who
built it chose it); cuda-python (``cuda-bindings``, what NVIDIA's TensorRT samples use since 10.14)
installs from a wheel everywhere, Jetson included.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
from typing import Any, Iterator

import numpy as np

from clca_deploy.errors import ClcaDeployError, UnsupportedError

BINDINGS = ("pycuda", "cuda-python")


def _has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a parent package that is missing or broken
        return False


def installed_bindings() -> tuple[str, ...]:
    """The CUDA bindings importable here, in order of preference."""
    found = []
    if _has_module("pycuda"):
        found.append("pycuda")
    if _has_module("cuda.bindings") or _has_module("cuda.cuda"):
        found.append("cuda-python")
    return tuple(found)


def choose_binding(requested: str | None, installed: tuple[str, ...]) -> str:
    """``requested`` if installed, else the first installed binding; an error naming the fix otherwise."""
    if requested is not None and requested not in BINDINGS:
        raise ClcaDeployError(f"unknown CUDA binding '{requested}'; use one of {', '.join(BINDINGS)}.")
    if requested is not None:
        if requested not in installed:
            raise UnsupportedError(f"the CUDA binding {requested} is not installed")
        return requested
    if not installed:
        raise UnsupportedError("no CUDA Python binding is installed (cuda-python or pycuda)")
    return installed[0]


class PyCudaBinding:
    """pycuda.driver: allocations are objects freed by ``.free()``; the device pointer is ``int(alloc)``."""

    name = "pycuda"

    def __init__(self, device_index: int):
        import pycuda.driver as driver

        self._driver = driver
        try:
            driver.init()
            self._context = driver.Device(device_index).retain_primary_context()
        except driver.Error as exc:  # pycuda's own LogicError/RuntimeError: one line, like cuda-python's
            raise ClcaDeployError(f"pycuda cannot open CUDA device {device_index}: {exc}") from exc
        self._allocations: dict[int, Any] = {}

    def push(self) -> None:
        self._context.push()

    def pop(self) -> None:
        self._driver.Context.pop()

    def alloc(self, nbytes: int) -> int:
        allocation = self._driver.mem_alloc(nbytes)
        self._allocations[int(allocation)] = allocation
        return int(allocation)

    def free(self, pointer: int) -> None:
        self._allocations.pop(pointer).free()

    def pinned(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        return self._driver.pagelocked_empty(shape, dtype)

    def free_pinned(self, array: np.ndarray) -> None:
        array.base.free()  # pycuda's HostAllocation owns the memory

    def stream(self) -> Any:
        return self._driver.Stream()

    def stream_handle(self, stream: Any) -> int:
        return int(stream.handle)

    def synchronize(self, stream: Any) -> None:
        stream.synchronize()

    def destroy_stream(self, stream: Any) -> None:
        """pycuda destroys a stream when the object is collected."""

    def copy_to_device(self, pointer: int, host: np.ndarray, stream: Any) -> None:
        self._driver.memcpy_htod_async(pointer, host, stream)

    def copy_to_host(self, host: np.ndarray, pointer: int, stream: Any) -> None:
        self._driver.memcpy_dtoh_async(host, pointer, stream)

    def release(self) -> None:
        self._context.detach()


def _import_cuda_driver():
    try:
        from cuda.bindings import driver  # cuda-python >= 12.6 (cuda-bindings)
    except ImportError:
        from cuda import cuda as driver  # older cuda-python
    return driver


class CudaPythonBinding:
    """cuda-python's driver module: every call returns (CUresult, *values); errors are checked here."""

    name = "cuda-python"

    def __init__(self, device_index: int):
        self._cu = _import_cuda_driver()
        self._check(self._cu.cuInit(0), "cuInit")
        (self._device,) = self._check(self._cu.cuDeviceGet(device_index), "cuDeviceGet")
        (self._context,) = self._check(self._cu.cuDevicePrimaryCtxRetain(self._device), "cuDevicePrimaryCtxRetain")
        self._pinned: dict[int, int] = {}

    def _check(self, result: Any, call: str) -> tuple:
        error, *values = result if isinstance(result, tuple) else (result,)
        if error != self._cu.CUresult.CUDA_SUCCESS:
            _, text = self._cu.cuGetErrorString(error)
            detail = text.decode() if isinstance(text, bytes) else str(error)
            raise ClcaDeployError(f"CUDA call {call} failed: {detail}")
        return tuple(values)

    def push(self) -> None:
        self._check(self._cu.cuCtxPushCurrent(self._context), "cuCtxPushCurrent")

    def pop(self) -> None:
        self._check(self._cu.cuCtxPopCurrent(), "cuCtxPopCurrent")

    def alloc(self, nbytes: int) -> int:
        (pointer,) = self._check(self._cu.cuMemAlloc(nbytes), "cuMemAlloc")
        return int(pointer)

    def free(self, pointer: int) -> None:
        self._check(self._cu.cuMemFree(pointer), "cuMemFree")

    def pinned(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        dtype = np.dtype(dtype)
        nbytes = max(1, int(np.prod(shape)) * dtype.itemsize)
        (pointer,) = self._check(self._cu.cuMemHostAlloc(nbytes, 0), "cuMemHostAlloc")
        buffer = (ctypes.c_byte * nbytes).from_address(int(pointer))
        array = np.frombuffer(buffer, dtype=np.uint8, count=nbytes)[: int(np.prod(shape)) * dtype.itemsize]
        array = array.view(dtype).reshape(shape)
        self._pinned[array.ctypes.data] = int(pointer)
        return array

    def free_pinned(self, array: np.ndarray) -> None:
        self._check(self._cu.cuMemFreeHost(self._pinned.pop(array.ctypes.data)), "cuMemFreeHost")

    def stream(self) -> Any:
        (stream,) = self._check(self._cu.cuStreamCreate(0), "cuStreamCreate")
        return stream

    def stream_handle(self, stream: Any) -> int:
        return int(stream)

    def synchronize(self, stream: Any) -> None:
        self._check(self._cu.cuStreamSynchronize(stream), "cuStreamSynchronize")

    def destroy_stream(self, stream: Any) -> None:
        self._check(self._cu.cuStreamDestroy(stream), "cuStreamDestroy")

    def copy_to_device(self, pointer: int, host: np.ndarray, stream: Any) -> None:
        self._check(self._cu.cuMemcpyHtoDAsync(pointer, host.ctypes.data, host.nbytes, stream), "cuMemcpyHtoDAsync")

    def copy_to_host(self, host: np.ndarray, pointer: int, stream: Any) -> None:
        self._check(self._cu.cuMemcpyDtoHAsync(host.ctypes.data, pointer, host.nbytes, stream), "cuMemcpyDtoHAsync")

    def release(self) -> None:
        self._check(self._cu.cuDevicePrimaryCtxRelease(self._device), "cuDevicePrimaryCtxRelease")


def open_binding(device_index: int = 0, requested: str | None = None) -> PyCudaBinding | CudaPythonBinding:
    """The chosen binding, holding device ``device_index``'s primary context until ``release()``."""
    name = choose_binding(requested, installed_bindings())
    return PyCudaBinding(device_index) if name == "pycuda" else CudaPythonBinding(device_index)


@contextlib.contextmanager
def current(binding: PyCudaBinding | CudaPythonBinding) -> Iterator[None]:
    """The binding's context made current on this thread for the block (any thread may call us)."""
    binding.push()
    try:
        yield
    finally:
        binding.pop()

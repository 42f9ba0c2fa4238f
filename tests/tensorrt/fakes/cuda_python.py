"""A fake cuda-python: ``cuda``, ``cuda.bindings`` and ``cuda.bindings.driver`` over the fake GPU.

As in cuda-bindings, every driver call returns ``(CUresult, *values)`` instead of raising:
``CUDA_ERROR_NOT_INITIALIZED`` before ``cuInit``, the refused call's code when the fake GPU refuses it.
Handles (CUdevice, CUcontext, CUdeviceptr, CUstream) are opaque values that convert with int(). Names are
recorded as ``driver.<function>`` and each function keeps cuda-bindings' parameter names.
"""

from __future__ import annotations

import functools
import types

from .gpu import CudaError, FakeGpu
from .recording import Namespace, Recorder, RecordedModule, plain_module

CU_RESULTS = {
    "CUDA_SUCCESS": 0, "CUDA_ERROR_INVALID_VALUE": 1, "CUDA_ERROR_NOT_INITIALIZED": 3, "CUDA_ERROR_INVALID_DEVICE": 101,
    "CUDA_ERROR_INVALID_CONTEXT": 201, "CUDA_ERROR_INVALID_HANDLE": 400,
}


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


class CUdevice(Handle):
    pass


class CUcontext(Handle):
    pass


class CUdeviceptr(Handle):
    pass


class CUstream(Handle):
    pass


def returning(count):
    """A driver call returning (CUresult, *count values); CUDA_ERROR_NOT_INITIALIZED before cuInit."""

    def decorate(method):
        @functools.wraps(method)  # keeps the real keyword names visible to the signature check
        def call(self, *args):
            if not self.initialised:
                return (self.results._get("CUDA_ERROR_NOT_INITIALIZED"),) + (None,) * count
            try:
                values = method(self, *args)
            except CudaError as exc:
                return (self.results._get(exc.code),) + (None,) * count
            return (self.success, *values)

        return call

    return decorate


class CudaDriver:
    """One install's cuda.bindings.driver: its GPU, its recorder and whether ``cuInit`` ran.

    Each ``cu*`` method is a module function (bound, so its recorded signature drops ``self``); the parameter
    names are cuda-bindings' own, as test_binding_conformance checks.
    """

    def __init__(self, gpu: FakeGpu, recorder: Recorder):
        self.gpu, self.recorder, self.initialised = gpu, recorder, False
        self.results = Namespace(recorder, "driver.CUresult", CU_RESULTS)
        self.success = self.results._get("CUDA_SUCCESS")

    def cuInit(self, Flags):
        self.initialised = True
        return (self.success,)

    @returning(1)
    def cuDeviceGet(self, ordinal):
        return (CUdevice(self.gpu.check_device_index(ordinal)),)

    @returning(1)
    def cuDevicePrimaryCtxRetain(self, dev):
        self.gpu.retain_primary(int(dev))
        return (CUcontext(int(dev)),)

    @returning(0)
    def cuDevicePrimaryCtxRelease(self, dev):
        self.gpu.release_primary(int(dev))
        return ()

    @returning(0)
    def cuCtxPushCurrent(self, ctx):
        self.gpu.push(int(ctx))
        return ()

    @returning(1)
    def cuCtxPopCurrent(self):
        return (CUcontext(self.gpu.pop()),)

    @returning(1)
    def cuMemAlloc(self, bytesize):
        return (CUdeviceptr(self.gpu.alloc(bytesize)),)

    @returning(0)
    def cuMemFree(self, dptr):
        self.gpu.free(int(dptr))
        return ()

    @returning(1)
    def cuMemHostAlloc(self, bytesize, Flags):
        return (self.gpu.host_alloc(bytesize),)

    @returning(0)
    def cuMemFreeHost(self, p):
        self.gpu.host_free(int(p))
        return ()

    @returning(1)
    def cuStreamCreate(self, Flags):
        return (CUstream(self.gpu.create_stream()),)

    @returning(0)
    def cuStreamSynchronize(self, hStream):
        self.gpu.synchronize(int(hStream))
        return ()

    @returning(0)
    def cuStreamDestroy(self, hStream):
        self.gpu.destroy_stream(int(hStream))
        return ()

    @returning(0)
    def cuMemcpyHtoDAsync(self, dstDevice, srcHost, ByteCount, hStream):
        self.gpu.copy_htod_async(int(dstDevice), int(srcHost), int(ByteCount), int(hStream))
        return ()

    @returning(0)
    def cuMemcpyDtoHAsync(self, dstHost, srcDevice, ByteCount, hStream):
        self.gpu.copy_dtoh_async(int(dstHost), int(srcDevice), int(ByteCount), int(hStream))
        return ()

    def cuGetErrorString(self, error):
        names = {value: name for name, value in CU_RESULTS.items()}
        return (self.success, names.get(int(error), "CUDA_ERROR_UNKNOWN").lower().replace("_", " ").encode())

    def module(self) -> types.ModuleType:
        """The ``cuda.bindings.driver`` module, its look-ups recorded as ``driver.<name>``."""
        driver = RecordedModule("cuda.bindings.driver", self.recorder, "driver.")
        functions = {name: getattr(self, name) for name in vars(CudaDriver) if name.startswith("cu")}
        handles = {cls.__name__: cls for cls in (CUdevice, CUcontext, CUdeviceptr, CUstream)}
        for name, value in {**functions, **handles, "CUresult": self.results}.items():
            setattr(driver, name, value)
        return driver


def make_cuda_python(gpu: FakeGpu, recorder: Recorder) -> dict[str, types.ModuleType]:
    """sys.modules entries for cuda, cuda.bindings, cuda.bindings.driver over ``gpu``."""
    driver = CudaDriver(gpu, recorder).module()
    bindings, cuda = plain_module("cuda.bindings"), plain_module("cuda")
    bindings.driver, cuda.bindings = driver, bindings
    return {"cuda": cuda, "cuda.bindings": bindings, "cuda.bindings.driver": driver}

"""Installing the fakes: fake tensorrt and the CUDA bindings in sys.modules, over one new fake GPU.

install() also points clca_deploy's GPU probes at the fake GPU, so the toolkit sees the fake devices and
the bindings the test asked for; monkeypatch undoes all of it when the test ends.
"""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass

from .cuda_python import make_cuda_python
from .gpu import FakeGpu
from .pycuda import make_pycuda
from .recording import Recorder
from .tensorrt import TrtControls, make_tensorrt


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

    def gpu_unavailable_reason(self, index: int = 0) -> str | None:
        """clca_deploy's probe, answered from the fake GPU."""
        count = len(self.gpu.devices)
        return None if 0 <= index < count else f"there is no CUDA GPU {index}: this machine has {count} GPU(s)"

    def gpu_info(self, index: int = 0):
        """clca_deploy's probe, answered from the fake GPU."""
        from clca_deploy.system.gpu import GpuInfo

        name, cc = self.gpu.devices[index]
        return GpuInfo(index=index, name=name, compute_capability=cc, total_memory_bytes=8 << 30, integrated=False, driver_version="12.6")


def install_bindings(monkeypatch, gpu: FakeGpu, recorders: dict[str, Recorder], bindings: tuple[str, ...]) -> None:
    """The CUDA bindings named, over ``gpu``; the other one is made missing (ImportError), as when not installed."""
    for name in ("pycuda", "pycuda.driver", "cuda", "cuda.bindings", "cuda.bindings.driver", "cuda.cuda"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    if "pycuda" in bindings:
        package, driver = make_pycuda(gpu, recorders["pycuda"])
        monkeypatch.setitem(sys.modules, "pycuda", package)
        monkeypatch.setitem(sys.modules, "pycuda.driver", driver)
    if "cuda-python" in bindings:
        for name, module in make_cuda_python(gpu, recorders["cuda-python"]).items():
            monkeypatch.setitem(sys.modules, name, module)


def install(monkeypatch, version: str = "10.13.3.9.post1", devices=(("FakeGPU", "8.7"),),
            bindings: tuple[str, ...] = ("pycuda", "cuda-python")) -> FakeStack:
    """Put fake tensorrt (``version``), the CUDA bindings named and ``devices`` in place of the real ones."""
    gpu = FakeGpu(devices)
    recorders = {name: Recorder(name) for name in ("tensorrt", "pycuda", "cuda-python")}
    controls = TrtControls()
    trt = make_tensorrt(version, gpu, recorders["tensorrt"], controls)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    install_bindings(monkeypatch, gpu, recorders, bindings)
    stack = FakeStack(gpu=gpu, trt=trt, controls=controls, recorders=recorders, version=version)
    monkeypatch.setattr("clca_deploy.tensorrt.toolkit.gpu_unavailable_reason", stack.gpu_unavailable_reason)
    monkeypatch.setattr("clca_deploy.tensorrt.toolkit.gpu_info", stack.gpu_info)
    monkeypatch.setattr("clca_deploy.tensorrt.toolkit.installed_bindings", lambda: tuple(bindings))
    monkeypatch.setattr("clca_deploy.tensorrt.cuda.installed_bindings", lambda: tuple(bindings))
    return stack

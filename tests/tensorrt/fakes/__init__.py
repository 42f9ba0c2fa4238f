"""Strict, recording fakes of tensorrt, pycuda.driver and cuda-python's cuda.bindings.driver over one fake GPU.

The fakes refuse what the real libraries refuse, so ordering and profile bugs show on a machine without a
GPU: shapes outside the optimization profile, execution with an input shape or address missing, a timing
cache from elsewhere, precision flags on a strongly typed network, CUDA calls outside a pushed context,
copies into freed or unknown pointers, device->host results read before the stream is synchronized
(every stream operation is queued and applied at synchronize), and anything left allocated at close.

Every fake object records the names our code touches, in the real libraries' naming ("Builder.create_network",
"IExecutionContext.set_input_shape", "driver.mem_alloc", "driver.Stream.synchronize", "driver.cuMemAlloc",
...), so tests can check them against the real bindings' name lists. Only names reached from outside the
fakes are recorded: fake internals use underscore attributes.

The engine's "model" is logits = mean over pixels @ ``weights(num_classes)``, checkable with numpy.

Layout: recording.py (what records names and signatures), gpu.py (the one fake GPU), pycuda.py,
cuda_python.py, tensorrt/ (the fake TensorRT: environment, network, builder, runtime), model.py (the
engine's "model" and the tiny ONNX file) and stack.py (install() and FakeStack). The fake classes are
module-level; one install's state (its FakeGpu, Recorder, TrtControls, version) reaches them through a
per-install environment object (PycudaDriver, CudaDriver, TrtEnv) that their per-install subclasses carry
as ``_env`` (recording.bind).
"""

from __future__ import annotations

from .cuda_python import CU_RESULTS, make_cuda_python
from .gpu import CudaError, FakeGpu
from .model import expected_logits, tiny_onnx, weights
from .pycuda import make_pycuda
from .recording import Member, Namespace, Recorded, RecordedModule, Recorder, keyword_recording, plain_module
from .stack import FakeStack, install
from .tensorrt import (
    CACHE_MAGIC, PLAN_MAGIC, REMOVED_IN_11, STRONG_TYPING_ERROR, WEAK_ONLY_FLAGS, TrtControls, make_tensorrt, read_network,
    version_tuple,
)

__all__ = [
    "CACHE_MAGIC", "CU_RESULTS", "PLAN_MAGIC", "REMOVED_IN_11", "STRONG_TYPING_ERROR", "WEAK_ONLY_FLAGS",
    "CudaError", "FakeGpu", "FakeStack", "Member", "Namespace", "Recorded", "RecordedModule", "Recorder", "TrtControls",
    "expected_logits", "install", "keyword_recording", "make_cuda_python", "make_pycuda", "make_tensorrt", "plain_module",
    "read_network", "tiny_onnx", "version_tuple", "weights",
]

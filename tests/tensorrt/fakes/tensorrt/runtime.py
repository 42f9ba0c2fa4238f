"""Fake TensorRT running side: Runtime, ICudaEngine and IExecutionContext.

The runtime refuses a plan without a current CUDA context, one that is not a fake plan, one from another
TensorRT version or built for another compute capability, and a DLA core the device lacks; it records the DLA
core each plan was deserialized on (controls.calls). The engine reports each I/O tensor's dtype from the plan
(FLOAT unless the plan says otherwise); execution reads and writes them in those dtypes. The execution context
refuses input shapes outside the optimization profile and execution with an input shape or a tensor address
missing, with the engine's context not current, or into freed or unknown memory; it queues the "model"
(expected_logits) on the stream, so results appear only at synchronize.
"""

from __future__ import annotations

import json
import time

import numpy as np

from ..gpu import CudaError
from ..model import expected_logits
from ..recording import Fake
from .environment import DATA_TYPES, NUMPY_TYPES, PLAN_MAGIC


class Runtime(Fake):
    _api_name = "Runtime"

    def __init__(self, logger):
        super().__init__()
        if not isinstance(logger, self._env.Logger):
            raise TypeError("Runtime(logger: ILogger)")
        self._dla_core = -1

    @property
    def num_DLA_cores(self):  # noqa: N802 (TensorRT's name)
        return self._env.controls.dla_cores

    @property
    def DLA_core(self):  # noqa: N802
        return self._dla_core

    @DLA_core.setter
    def DLA_core(self, value):  # noqa: N802
        if not 0 <= int(value) < self._env.controls.dla_cores:
            self._env.error(f"IRuntime::setDLACore: Error Code 3: DLA core {value} requested, {self._env.controls.dla_cores} available")
            return
        self._dla_core = int(value)

    def deserialize_cuda_engine(self, serialized_engine):
        env = self._env
        data = bytes(serialized_engine)
        device = env.gpu.current()
        env.gpu.events.append(("deserialize", device))
        env.controls.calls.append(("deserialize_cuda_engine", self._dla_core))
        if device is None:
            env.error("IRuntime::deserializeCudaEngine: Error Code 1: Cuda Runtime (invalid device context)")
            return None
        if not data.startswith(PLAN_MAGIC):
            env.error("IRuntime::deserializeCudaEngine: Error Code 1: Serialization (magic tag does not match)")
            return None
        plan = json.loads(data[len(PLAN_MAGIC):])
        if plan["version"] != env.version:
            env.error(f"IRuntime::deserializeCudaEngine: Error Code 1: Serialization (The engine plan file is not compatible with this version of TensorRT, expecting library version {env.version} got {plan['version']})")
            return None
        if plan["cc"] != env.gpu.devices[device][1]:
            env.error(f"Error Code 1: the engine was built for compute capability {plan['cc']}, this device is {env.gpu.devices[device][1]}")
            return None
        return env.ICudaEngine(plan, device)


class ICudaEngine(Fake):
    _api_name = "ICudaEngine"

    def __init__(self, plan, device):
        super().__init__()
        self._plan, self._device = plan, device
        graph = plan["graph"]
        self._tensors = [(t["name"], "INPUT", t["shape"]) for t in graph["inputs"]]
        self._tensors += [(t["name"], "OUTPUT", t["shape"]) for t in graph["outputs"]]
        self._dtypes = {t["name"]: t.get("dtype", "FLOAT") for t in graph["inputs"] + graph["outputs"]}

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
        return self._env.TensorIOMode._get(tensor[1] if tensor else "NONE")

    def get_tensor_dtype(self, name):
        return self._env.DataType._get(self._dtypes.get(name, "FLOAT"))

    def get_tensor_shape(self, name):
        tensor = self._find(name)
        return tuple(tensor[2]) if tensor else ()

    def get_tensor_profile_shape(self, name, profile_index):
        return [tuple(s) for s in self._plan["profile"][name]]

    @property
    def num_optimization_profiles(self):
        return 1

    def create_execution_context(self):
        return self._env.IExecutionContext(self)


class IExecutionContext(Fake):
    _api_name = "IExecutionContext"

    def __init__(self, engine):
        super().__init__()
        self._engine, self._shapes, self._addresses = engine, {}, {}

    def set_input_shape(self, name, shape):
        time.sleep(self._env.gpu.delay)  # lets other threads' calls land in between, so a missing lock shows
        tensor = self._engine._find(name)
        shape = tuple(int(d) for d in shape)
        if tensor is None or tensor[1] != "INPUT" or len(shape) != len(tensor[2]):
            self._env.error(f"IExecutionContext::setInputShape: Error Code 3: {name} is not an input of rank {len(shape)}")
            return False
        low, _, high = self._engine._plan["profile"][name]
        if not all(a <= d <= b for a, d, b in zip(low, shape, high)):
            self._env.error(f"IExecutionContext::setInputShape: Error Code 3: shape {shape} outside the profile {low}..{high} of {name}")
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
            self._env.error(f"IExecutionContext::setTensorAddress: Error Code 3: no tensor {name}")
            return False
        self._addresses[name] = int(memory)
        return True

    def get_tensor_address(self, name):
        return self._addresses.get(name, 0)

    def execute_async_v3(self, stream_handle):
        env, engine = self._env, self._engine
        if env.gpu.current() != engine._device:
            env.error("IExecutionContext::enqueueV3: Error Code 1: Cuda Runtime (the engine's context is not current)")
            return False
        missing = [t[0] for t in engine._tensors if t[1] == "INPUT" and t[0] not in self._shapes]
        missing += [t[0] for t in engine._tensors if t[0] not in self._addresses]
        if missing:
            env.error(f"IExecutionContext::enqueueV3: Error Code 3: input shape or address not set for {missing}")
            return False
        (input_name, _, _), (output_name, _, _) = engine._tensors[0], engine._tensors[1]
        shape = self._shapes[input_name]
        out_shape = self.get_tensor_shape(output_name)  # a recorded look-up, like a caller's: the recorded names depend on it
        in_type, out_type = (np.dtype(NUMPY_TYPES[DATA_TYPES.index(engine._dtypes[n])]) for n in (input_name, output_name))
        try:
            images = env.gpu.device_view(self._addresses[input_name], int(np.prod(shape)) * in_type.itemsize)
            logits = env.gpu.device_view(self._addresses[output_name], int(np.prod(out_shape)) * out_type.itemsize)
            env.gpu.stream(stream_handle)
        except CudaError as exc:
            env.error(f"IExecutionContext::enqueueV3: Error Code 1: Cuda Runtime ({exc})")
            return False

        def run():  # at synchronize, on the device memory as it is then
            batch = images.view(in_type).reshape(shape)
            logits[:] = expected_logits(batch, out_shape[-1]).astype(out_type).view(np.uint8).reshape(-1)

        env.gpu.enqueue(stream_handle, run)
        return True

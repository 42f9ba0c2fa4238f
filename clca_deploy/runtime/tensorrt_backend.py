"""TensorRT engine backend: a plan built by `clca-deploy build-trt`, checked against its sidecar before loading.

Host buffers are page-locked and copies go through one CUDA stream, which works the same on discrete
GPUs and on Jetson's shared memory. CUDA work runs in the device's primary context (the one the CUDA
runtime, TensorRT and torch use), made current only for the duration of each call.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np

from clca_deploy.errors import ClcaDeployError, UnsupportedError
from clca_deploy.export.trt_plan import BUILD_HINT, BatchProfile, check_sidecar_matches, load_sidecar
from clca_deploy.runtime.base import InputSpec, ModelDescription, check_batch

INSTALL_HINT = 'pip install "clca-deploy[trt]" (TensorRT and pycuda; on Jetson TensorRT comes with JetPack)'


def _runtime_skip_reason() -> str | None:
    from clca_deploy.capabilities import tensorrt_skip_reason

    reason = tensorrt_skip_reason()
    if reason is None and importlib.util.find_spec("pycuda") is None:
        reason = "pycuda is not installed"
    return reason


class TensorRTBackend:
    name = "tensorrt"

    def __init__(self, path: str | Path, **options: object):
        from clca_deploy.export.metadata import parse_metadata

        path = Path(path)
        if options:
            raise ClcaDeployError(f"the TensorRT backend takes no options (got {', '.join(options)}).")
        sidecar = load_sidecar(path)  # file problems are errors on any machine
        reason = _runtime_skip_reason()
        if reason:
            built = f"TensorRT {sidecar.get('tensorrt_version')} on {sidecar.get('gpu_name')}"
            hint = "" if "clca-deploy[trt]" in reason else f"; install with {INSTALL_HINT}"
            raise UnsupportedError(f"cannot run {path.name} (built for {built}): {reason}{hint}.")
        import pycuda.driver as cuda
        import tensorrt as trt

        cuda.init()
        device = cuda.Device(0)
        gpu_name, capability = device.name(), "{}.{}".format(*device.compute_capability())
        warning = check_sidecar_matches(sidecar, trt.__version__, gpu_name, capability)  # before deserializing
        if warning:
            warnings.warn(warning, stacklevel=2)
        plan = path.read_bytes()
        if sidecar.get("engine_sha256") not in (None, hashlib.sha256(plan).hexdigest()):
            raise ClcaDeployError(f"{path.name} does not match its sidecar (another build, or an interrupted one); {BUILD_HINT}.")

        info = parse_metadata(sidecar.get("onnx_metadata", {}), source=f"sidecar of {path.name}")
        self.profile = BatchProfile(**sidecar["profiles"][0])
        fixed = self.profile.max if self.profile.min == self.profile.max else None
        self.description = ModelDescription(
            model=info.model, keep_rate=info.keep_rate, num_classes=info.num_classes, preprocess=info.preprocess,
            class_names=info.class_names, precision=sidecar["precision"],
            extra={
                "token_schedule": info.token_schedule, "tensorrt_version": trt.__version__,
                "builder_flags": sidecar.get("builder_flags", []), "strongly_typed": sidecar.get("strongly_typed"),
                "profile": self.profile.to_dict(), "warnings": [warning] if warning else [],
            },
        )
        self.providers = (f"TensorRT {trt.__version__} on {gpu_name} ({capability})",)
        self._cuda = cuda
        self._buffers: list = []
        self._ctx = device.retain_primary_context()
        try:
            with self._current():
                self._load(trt, plan, path, info.img_size, fixed)
        except BaseException:
            self.close()
            raise

    @contextlib.contextmanager
    def _current(self) -> Iterator[None]:
        """Make the primary context current on this thread for the block (any thread may call us)."""
        self._ctx.push()
        try:
            yield
        finally:
            self._cuda.Context.pop()

    def _load(self, trt, plan: bytes, path: Path, img_size: int, fixed: int | None) -> None:
        cuda = self._cuda
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)  # kept: the runtime must outlive its engine
        self._engine = self._runtime.deserialize_cuda_engine(plan)
        if self._engine is None:
            raise ClcaDeployError(f"TensorRT cannot load {path.name} (see its messages above); {BUILD_HINT}.")
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        inputs = [n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if n not in inputs]
        if len(inputs) != 1 or not outputs:
            raise ClcaDeployError(f"{path.name} has inputs {inputs} and outputs {outputs}; expected one image input and logits.")
        self._input = inputs[0]
        self._output = "logits" if "logits" in outputs else outputs[0]
        self.input_spec = InputSpec(name=self._input, img_size=img_size, batch=fixed)
        self._context = self._engine.create_execution_context()

        # Buffers sized for the profile's largest batch, bound once; each call sets only its shape.
        max_shape = (self.profile.max, 3, img_size, img_size)
        if not self._context.set_input_shape(self._input, max_shape):
            raise ClcaDeployError(f"{path.name} does not accept input shape {max_shape}; {BUILD_HINT}.")
        out_volume = int(np.prod(tuple(self._context.get_tensor_shape(self._output))))
        in_dtype = np.dtype(trt.nptype(self._engine.get_tensor_dtype(self._input)))
        out_dtype = np.dtype(trt.nptype(self._engine.get_tensor_dtype(self._output)))
        self._host_in = cuda.pagelocked_empty(max_shape, in_dtype)
        self._host_out = cuda.pagelocked_empty((out_volume,), out_dtype)
        self._dev_in = cuda.mem_alloc(self._host_in.nbytes)
        self._buffers.append(self._dev_in)
        self._dev_out = cuda.mem_alloc(self._host_out.nbytes)
        self._buffers.append(self._dev_out)
        self._context.set_tensor_address(self._input, int(self._dev_in))
        self._context.set_tensor_address(self._output, int(self._dev_out))
        self._stream = cuda.Stream()

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        batch = check_batch(batch, self.input_spec)
        count, largest = len(batch), self.profile.max
        if count > largest:  # the engine was built for at most `largest` images per run
            return np.concatenate([self(batch[s : s + largest]) for s in range(0, count, largest)])
        if count < self.profile.min:
            raise ClcaDeployError(
                f"this engine was built for batches of {self.profile.min}..{largest}, got {count}; "
                "rebuild it with a smaller minimum (e.g. --batch-profile 1,8,32)."
            )
        cuda = self._cuda
        with self._current():
            host_in = self._host_in[:count]
            host_in[...] = batch  # casts when the engine takes fp16 input
            if not self._context.set_input_shape(self._input, batch.shape):
                raise ClcaDeployError(f"the engine rejected input shape {batch.shape}.")
            cuda.memcpy_htod_async(self._dev_in, host_in, self._stream)
            if not self._context.execute_async_v3(self._stream.handle):
                raise ClcaDeployError("TensorRT could not run the engine; see its messages above.")
            out_shape = tuple(self._context.get_tensor_shape(self._output))
            host_out = self._host_out[: int(np.prod(out_shape))].reshape(out_shape)
            cuda.memcpy_dtoh_async(host_out, self._dev_out, self._stream)
            self._stream.synchronize()
        return host_out.astype(np.float32)  # a copy: the pinned buffer is reused by the next call

    def close(self) -> None:
        """Free device memory and TensorRT objects (inside the context that owns them), then release it."""
        if getattr(self, "_ctx", None) is None:
            return
        with self._current():
            for buffer in self._buffers:
                buffer.free()
            self._buffers = []
            self._context = self._engine = self._runtime = self._stream = None
            self._host_in = self._host_out = None
        self._ctx.detach()
        self._ctx = None

    def __enter__(self) -> "TensorRTBackend":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

"""What one install of the fake ``tensorrt`` shares among its objects, and what differs between versions.

TensorRT 10.x keeps the weak-typing API (precision BuilderFlags, EXPLICIT_BATCH, INT8 calibrators,
``platform_has_fast_fp16``); 11.x lacks all of it (REMOVED_IN_11), so touching it raises AttributeError.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..gpu import FakeGpu
from ..recording import Namespace, Recorder

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

# Enum members in the order that gives their int values.
BUILDER_FLAGS = ("TF32", "REFIT", "DEBUG", "GPU_FALLBACK", "SPARSE_WEIGHTS", "VERSION_COMPATIBLE", "STRIP_PLAN")
MEMORY_POOLS = ("WORKSPACE", "DLA_MANAGED_SRAM", "DLA_LOCAL_DRAM", "DLA_GLOBAL_DRAM", "TACTIC_DRAM")
TENSOR_IO_MODES = ("NONE", "INPUT", "OUTPUT")
DEVICE_TYPES = ("GPU", "DLA")
DATA_TYPES = ("FLOAT", "HALF", "INT8", "INT32", "BOOL")
NUMPY_TYPES = dict(enumerate((np.float32, np.float16, np.int8, np.int32, np.bool_)))  # by DataType value
SEVERITIES = ("INTERNAL_ERROR", "ERROR", "WARNING", "INFO", "VERBOSE")


def version_tuple(version: str) -> tuple[int, int]:
    major, minor = version.split(".")[:2]
    return int(major), int(minor)


def nptype(trt_type):
    return NUMPY_TYPES[int(trt_type)]


@dataclass
class TrtControls:
    """Failures a test can switch on, and what the fake TensorRT logged."""

    parser_errors: list[str] = field(default_factory=list)
    fail_build: bool = False
    errors: list[str] = field(default_factory=list)  # what TensorRT would have logged as errors
    calls: list[tuple] = field(default_factory=list)  # ("create_network", flags), ("set_flag", "FP16"), ...
    dla_cores: int = 0  # what Builder.num_DLA_cores and Runtime.num_DLA_cores report (2 on AGX Orin, 0 off Jetson)


class TrtEnv:
    """One install's TensorRT state, reached by every fake object as ``self._env``: the version, the GPU, the
    recorder, the controls, this version's enums, and (set by make_tensorrt) the classes bound to this install,
    as attributes named like the classes, so objects create each other through it (``env.ICudaEngine(...)``)."""

    def __init__(self, version: str, gpu: FakeGpu, recorder: Recorder, controls: TrtControls):
        self.version, self.gpu, self.recorder, self.controls = version, gpu, recorder, controls
        self.eleven = version_tuple(version)[0] >= 11
        flags = list(BUILDER_FLAGS) if self.eleven else [*BUILDER_FLAGS, *WEAK_ONLY_FLAGS, "DIRECT_IO"]
        self.creation = {"STRONGLY_TYPED": 1} if self.eleven else {"EXPLICIT_BATCH": 0, "STRONGLY_TYPED": 1}
        self.BuilderFlag = Namespace(recorder, "BuilderFlag", flags)
        self.NetworkDefinitionCreationFlag = Namespace(recorder, "NetworkDefinitionCreationFlag", self.creation)
        self.MemoryPoolType = Namespace(recorder, "MemoryPoolType", list(MEMORY_POOLS))
        self.TensorIOMode = Namespace(recorder, "TensorIOMode", list(TENSOR_IO_MODES))
        self.DataType = Namespace(recorder, "DataType", list(DATA_TYPES))
        self.DeviceType = Namespace(recorder, "DeviceType", list(DEVICE_TYPES))

    def error(self, message: str) -> None:
        """Log ``message`` as TensorRT's logger would report an error."""
        self.controls.errors.append(message)

    def origin(self) -> str:
        """Where a timing cache comes from: this TensorRT version and the current device's compute capability."""
        device = self.gpu.current()
        return f"{self.version}/{self.gpu.devices[device][1] if device is not None else '?'}"

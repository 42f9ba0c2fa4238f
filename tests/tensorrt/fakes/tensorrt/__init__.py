"""A fake ``tensorrt`` module of a given version over the fake GPU.

The classes live in network.py, builder.py and runtime.py at module level; make_tensorrt binds them to one
install's TrtEnv (per-install subclasses, see recording.bind) and lays them out as the tensorrt module does.
"""

from __future__ import annotations

import types

from ..gpu import FakeGpu
from ..recording import Namespace, Recorder, RecordedModule, bind
from .builder import (
    CALIBRATORS, Builder, IBuilderConfig, IHostMemory, IOptimizationProfile, ITimingCache, WeakTypingBuilder, WeakTypingConfig,
)
from .environment import (
    CACHE_MAGIC, PLAN_MAGIC, REMOVED_IN_11, SEVERITIES, STRONG_TYPING_ERROR, WEAK_ONLY_FLAGS, TrtControls, TrtEnv, nptype,
    version_tuple,
)
from .network import INetworkDefinition, IParserError, Logger, OnnxParser, read_network
from .runtime import ICudaEngine, IExecutionContext, Runtime

__all__ = [
    "CACHE_MAGIC", "PLAN_MAGIC", "REMOVED_IN_11", "STRONG_TYPING_ERROR", "WEAK_ONLY_FLAGS", "TrtControls", "TrtEnv",
    "make_tensorrt", "read_network", "version_tuple",
]

VERSION_INDEPENDENT = (
    Logger, IParserError, INetworkDefinition, OnnxParser, IOptimizationProfile, ITimingCache, IHostMemory,
    Runtime, ICudaEngine, IExecutionContext,
)


def bind_classes(env: TrtEnv) -> None:
    """Give ``env`` this install's class of each fake, the 10.x-only API mixed in below version 11."""
    for cls in VERSION_INDEPENDENT:
        setattr(env, cls.__name__, bind(env, cls))
    env.IBuilderConfig = bind(env, IBuilderConfig) if env.eleven else bind(env, IBuilderConfig, WeakTypingConfig)
    env.Builder = bind(env, Builder) if env.eleven else bind(env, Builder, WeakTypingBuilder)


def module_names(env: TrtEnv) -> dict[str, object]:
    """The tensorrt module's attributes: enums and constructors as Namespaces, interfaces as classes."""
    recorder = env.recorder
    severities = {name: i for i, name in enumerate(SEVERITIES)}
    logger = Namespace(recorder, "Logger", severities, constructor=env.Logger)
    logger._members["Severity"] = Namespace(recorder, "Logger.Severity", severities)
    names = {
        "__version__": env.version, "Logger": logger, "ILogger": env.Logger,
        "Builder": Namespace(recorder, "Builder", constructor=env.Builder),
        "Runtime": Namespace(recorder, "Runtime", constructor=env.Runtime),
        "OnnxParser": Namespace(recorder, "OnnxParser", constructor=env.OnnxParser),
        "BuilderFlag": env.BuilderFlag, "NetworkDefinitionCreationFlag": env.NetworkDefinitionCreationFlag,
        "MemoryPoolType": env.MemoryPoolType, "TensorIOMode": env.TensorIOMode, "DataType": env.DataType, "nptype": nptype,
        "DeviceType": env.DeviceType,
        "INetworkDefinition": env.INetworkDefinition, "IBuilderConfig": env.IBuilderConfig, "ICudaEngine": env.ICudaEngine,
        "IExecutionContext": env.IExecutionContext, "ITimingCache": env.ITimingCache,
        "IOptimizationProfile": env.IOptimizationProfile, "IHostMemory": env.IHostMemory,
    }
    if not env.eleven:
        names.update({cls.__name__: cls for cls in CALIBRATORS})
    return names


def make_tensorrt(version: str, gpu: FakeGpu, recorder: Recorder, controls: TrtControls) -> types.ModuleType:
    """A tensorrt module of ``version``: 10.x keeps the weak-typing API, 11.x lacks it (AttributeError)."""
    env = TrtEnv(version, gpu, recorder, controls)
    bind_classes(env)
    trt = RecordedModule("tensorrt", recorder, "")
    for name, value in module_names(env).items():
        setattr(trt, name, value)
    return trt

"""Fake TensorRT building side: Builder, IBuilderConfig, IOptimizationProfile, ITimingCache, IHostMemory.

The builder refuses what TensorRT refuses, logging the error and returning None: no current CUDA context,
nothing parsed, precision flags on a strongly typed network, unknown network creation flags, a dynamic
input without an optimization profile, a profile that names unknown inputs or does not fit an input, DLA
as the default device with a DLA core the device lacks. The config refuses an optimisation level outside 0..5. A
timing cache from another TensorRT version or GPU is refused unless ``ignore_mismatch``. The plan it
serializes is JSON behind PLAN_MAGIC, which the fake Runtime reads back.
"""

from __future__ import annotations

import json

from ..recording import Fake, Member, recorded_attribute
from .environment import CACHE_MAGIC, PLAN_MAGIC, STRONG_TYPING_ERROR, WEAK_ONLY_FLAGS


class IHostMemory(bytearray):
    """Serialized bytes (plans, timing caches); a bytearray so ``bytes(...)`` and writing to a file work."""

    _api_name = "IHostMemory"
    _env = None

    def __getattribute__(self, name):
        if name.startswith("_"):
            return object.__getattribute__(self, name)
        return recorded_attribute(self, name, object.__getattribute__(self, "_env").recorder, "IHostMemory")

    @property
    def nbytes(self):
        return len(self)


class IOptimizationProfile(Fake):
    _api_name = "IOptimizationProfile"

    def __init__(self):
        super().__init__()
        self._shapes, self._valid = {}, True

    def set_shape(self, input, min, opt, max):  # noqa: A002 (the real keyword names)
        shapes = [tuple(int(d) for d in s) for s in (min, opt, max)]
        if len({len(s) for s in shapes}) != 1 or not all(a <= b <= c for a, b, c in zip(*shapes)) or shapes[0][0] < 0:
            # TensorRT logs the error here and refuses the profile later, in add_optimization_profile.
            self._env.error(f"IOptimizationProfile::setDimensions: invalid dimensions {shapes} for {input}")
            self._valid = False
        self._shapes[input] = shapes


class ITimingCache(Fake):
    _api_name = "ITimingCache"

    def __init__(self, origin, entries, foreign):
        super().__init__()
        self._origin, self._entries, self._foreign = origin, entries, foreign

    def serialize(self):
        return self._env.IHostMemory(CACHE_MAGIC + json.dumps({"origin": self._origin, "entries": self._entries}).encode())

    def combine(self, other, ignore_mismatch):
        return False

    def reset(self):
        self._entries = 0
        return True


class IBuilderConfig(Fake):
    _api_name = "IBuilderConfig"

    def __init__(self, builder):
        super().__init__()
        self._flags, self._pools, self._profiles, self._cache, self._calibrator = set(), {}, [], None, None
        self._dla_core, self._device_type, self._level = -1, self._env.DeviceType._get("GPU"), 3

    @property
    def DLA_core(self):  # noqa: N802 (TensorRT's name)
        return self._dla_core

    @DLA_core.setter
    def DLA_core(self, value):  # noqa: N802
        self._dla_core = int(value)

    @property
    def default_device_type(self):
        return self._device_type

    @default_device_type.setter
    def default_device_type(self, value):
        if not isinstance(value, Member) or not value._qualname.startswith("DeviceType."):
            raise TypeError("default_device_type: DeviceType")
        self._device_type = value

    @property
    def builder_optimization_level(self):
        return self._level

    @builder_optimization_level.setter
    def builder_optimization_level(self, value):
        if not 0 <= int(value) <= 5:
            self._env.error(f"IBuilderConfig::setBuilderOptimizationLevel: Error Code 3: level {value} outside 0..5")
            return
        self._level = int(value)

    def set_memory_pool_limit(self, pool, pool_size):
        if not isinstance(pool, Member) or not pool._qualname.startswith("MemoryPoolType."):
            raise TypeError("set_memory_pool_limit(pool: MemoryPoolType, pool_size: int)")
        self._pools[pool._qualname] = int(pool_size)

    def set_flag(self, flag):
        if not isinstance(flag, Member) or not flag._qualname.startswith("BuilderFlag."):
            raise TypeError("set_flag(flag: BuilderFlag)")
        self._flags.add(flag._qualname.split(".", 1)[1])
        self._env.controls.calls.append(("set_flag", flag._qualname.split(".", 1)[1]))

    def get_flag(self, flag):
        return flag._qualname.split(".", 1)[1] in self._flags

    def clear_flag(self, flag):
        self._flags.discard(flag._qualname.split(".", 1)[1])

    def add_optimization_profile(self, profile):
        self._env.controls.calls.append(("add_optimization_profile", dict(profile._shapes)))
        if not profile._valid:
            return -1
        self._profiles.append(profile)
        return len(self._profiles) - 1

    @property
    def num_optimization_profiles(self):
        return len(self._profiles)

    def create_timing_cache(self, serialized_timing_cache):
        data = bytes(serialized_timing_cache)
        origin = self._env.origin()
        if data == b"":
            return self._env.ITimingCache(origin, 0, foreign=False)
        if data.startswith(CACHE_MAGIC):
            try:
                content = json.loads(data[len(CACHE_MAGIC):])
                return self._env.ITimingCache(content["origin"], content["entries"], foreign=content["origin"] != origin)
            except (ValueError, KeyError):
                pass
        return self._env.ITimingCache("unknown", 0, foreign=True)  # as TensorRT does for another version's or GPU's blob

    def set_timing_cache(self, cache, ignore_mismatch):
        if cache._foreign and not ignore_mismatch:
            self._env.error("IBuilderConfig::setTimingCache: Error Code 2: timing cache mismatch (another TensorRT version or device)")
            return False
        self._cache = cache
        return True

    def get_timing_cache(self):
        return self._cache


class WeakTypingConfig:
    """IBuilderConfig's TensorRT 10.x-only part (gone in 11, so not on the 11.x fake)."""

    @property
    def int8_calibrator(self):
        return self._calibrator

    @int8_calibrator.setter
    def int8_calibrator(self, value):
        self._calibrator = value


class Builder(Fake):
    _api_name = "Builder"

    def __init__(self, logger):
        super().__init__()
        if not isinstance(logger, self._env.Logger):
            raise TypeError("Builder(logger: ILogger)")

    def create_network(self, flags=0):
        env = self._env
        env.controls.calls.append(("create_network", int(flags)))
        allowed = sum(1 << v for v in env.creation.values())
        if int(flags) & ~allowed:
            env.error(f"IBuilder::createNetworkV2: Error Code 3: unknown network creation flags {int(flags):#x}")
            return None
        return env.INetworkDefinition(env.eleven or bool(int(flags) & (1 << env.creation["STRONGLY_TYPED"])))

    def create_builder_config(self):
        return self._env.IBuilderConfig(self)

    def create_optimization_profile(self):
        return self._env.IOptimizationProfile()

    @property
    def platform_has_tf32(self):
        return True

    @property
    def num_DLA_cores(self):  # noqa: N802 (TensorRT's name)
        return self._env.controls.dla_cores

    def build_serialized_network(self, network, config):
        env = self._env
        device = env.gpu.current()
        refusal = _refusal_before_building(network, config, device)
        if refusal is None:
            env.controls.calls.append(("build_serialized_network", device))
            if env.controls.fail_build:
                refusal = "IBuilder::buildSerializedNetwork: Error Code 10: Internal Error (could not find any implementation)"
        if refusal is None:
            refusal = _dla_refusal(config, env.controls.dla_cores)
        if refusal is None:
            refusal, profile_shapes = _profile_shapes(network._graph, config._profiles)
        if refusal is not None:
            env.error(refusal)
            return None
        if config._cache is not None:
            config._cache._entries += 1
            config._cache._origin, config._cache._foreign = env.origin(), False
        env.gpu.events.append(("build", device))
        plan = {
            "version": env.version, "device": device, "cc": env.gpu.devices[device][1], "graph": network._graph,
            "profile": profile_shapes, "strongly_typed": network._strongly_typed, "flags": sorted(config._flags),
            "compute": _compute_precision(network, config), "workspace": config._pools.get("MemoryPoolType.WORKSPACE"),
            "device_type": config._device_type._qualname.split(".", 1)[1], "dla_core": config._dla_core,
            "optimization_level": config._level,
        }
        return env.IHostMemory(PLAN_MAGIC + json.dumps(plan).encode())


class WeakTypingBuilder:
    """Builder's TensorRT 10.x-only part (gone in 11, so not on the 11.x fake)."""

    @property
    def platform_has_fast_fp16(self):
        return True

    @property
    def platform_has_fast_int8(self):
        return True


def _refusal_before_building(network, config, device) -> str | None:
    """The error TensorRT logs before it starts building, if any (checked in TensorRT's order)."""
    if device is None:
        return "IBuilder::buildSerializedNetwork: Error Code 1: Cuda Runtime (invalid device context)"
    if network._graph is None:
        return "IBuilder::buildSerializedNetwork: Error Code 4: Network has no inputs (nothing was parsed)"
    if network._strongly_typed:
        for flag in WEAK_ONLY_FLAGS:
            if flag in config._flags:
                return STRONG_TYPING_ERROR.format(flag=flag)
    return None


def _dla_refusal(config, dla_cores: int) -> str | None:
    """TensorRT's error for DLA as the default device on a DLA core this device lacks, if so."""
    if config._device_type._qualname != "DeviceType.DLA" or 0 <= config._dla_core < dla_cores:
        return None
    return f"IBuilder::buildSerializedNetwork: Error Code 3: DLA core {config._dla_core} requested, {dla_cores} available"


def _profile_shapes(graph: dict, profiles: list) -> tuple[str | None, dict | None]:
    """(None, {input: [min, opt, max]}) for the plan, or (the error TensorRT logs, None)."""
    for profile in profiles:
        unknown = set(profile._shapes) - {t["name"] for t in graph["inputs"]}
        if unknown:
            return f"IBuilder::buildSerializedNetwork: Error Code 4: the optimization profile names unknown inputs {sorted(unknown)}", None
    shapes = {}
    for tensor in graph["inputs"]:
        shape, given = tensor["shape"], [p._shapes[tensor["name"]] for p in profiles if tensor["name"] in p._shapes]
        if -1 in shape and not given:
            return "IBuilder::buildSerializedNetwork: Error Code 4: Network has dynamic or shape inputs, but no optimization profile has been defined.", None
        low, opt, high = given[0] if given else (shape, shape, shape)
        for bound in (low, opt, high):
            if len(bound) != len(shape) or any(d != -1 and d != b for d, b in zip(shape, bound)):
                return f"Error Code 4: profile shape {bound} does not fit input {tensor['name']} {shape}", None
        shapes[tensor["name"]] = [list(low), list(opt), list(high)]
    return None, shapes


def _compute_precision(network, config) -> str:
    """The precision the fake engine computes in: the ONNX file's when strongly typed, else what the flags allow."""
    precision = network._graph["precision"]
    if network._strongly_typed:
        return precision
    return "int8" if "INT8" in config._flags and precision == "int8" else "fp16" if "FP16" in config._flags else precision


class IInt8Calibrator:
    """TensorRT 10.x only, like the four below."""


class IInt8EntropyCalibrator:
    pass


class IInt8EntropyCalibrator2:
    pass


class IInt8MinMaxCalibrator:
    pass


class IInt8LegacyCalibrator:
    pass


CALIBRATORS = (IInt8Calibrator, IInt8EntropyCalibrator, IInt8EntropyCalibrator2, IInt8MinMaxCalibrator, IInt8LegacyCalibrator)

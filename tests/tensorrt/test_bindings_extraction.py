"""Facts about the committed name lists of tests/tensorrt/binding_names/ (written by tools/binding_names.py
from NVIDIA's and pycuda's published packages): that they hold the real names of each release (known
facts of each release, NVIDIA's 10.x -> 11.x migration guide, pycuda's and cuda-python's APIs), so the
conformance tests that read them mean something. No network: the lists are files of the repository.
The script's own machinery (download, cache, ELF patching, parsers) is tested in tests/tools/.
"""

from __future__ import annotations

import json
import re

import pytest

from tests.tensorrt import binding_names as bindings
from tests.tensorrt.binding_names import (
    CUDA_BINDINGS_VERSIONS,
    PYCUDA_VERSIONS,
    TENSORRT_VERSIONS,
    cuda_bindings_names,
    missing_names,
    pycuda_names,
    tensorrt_names,
)

TRT10 = [v for v in TENSORRT_VERSIONS if v.startswith("10.")]
TRT11 = [v for v in TENSORRT_VERSIONS if v.startswith("11.")]

# What the project's TensorRT code calls, present in every supported release.
TENSORRT_RUNTIME_NAMES = [
    "__version__",
    "nptype",
    "volume",
    "Logger",
    "Logger.WARNING",
    "Logger.ERROR",
    "Logger.Severity",
    "ILogger.Severity.WARNING",
    "Builder",
    "Builder(logger)",
    "Builder.create_network",
    "Builder.create_network(flags)",
    "Builder.create_builder_config",
    "Builder.create_optimization_profile",
    "Builder.build_serialized_network",
    "NetworkDefinitionCreationFlag.STRONGLY_TYPED",
    "OnnxParser",
    "OnnxParser(network)",
    "OnnxParser(logger)",
    "OnnxParser.parse_from_file",
    "OnnxParser.parse",
    "OnnxParser.get_error",
    "OnnxParser.num_errors",
    "Runtime",
    "Runtime(logger)",
    "Runtime.deserialize_cuda_engine",
    "IBuilderConfig.set_memory_pool_limit",
    "IBuilderConfig.create_timing_cache",
    "IBuilderConfig.set_timing_cache",
    "IBuilderConfig.get_timing_cache",
    "IBuilderConfig.set_flag",
    "IBuilderConfig.add_optimization_profile",
    "IBuilderConfig.builder_optimization_level",
    "MemoryPoolType.WORKSPACE",
    "ITimingCache.serialize",
    "IOptimizationProfile.set_shape",
    "IOptimizationProfile.set_shape(input)",
    "IOptimizationProfile.set_shape(min)",
    "IOptimizationProfile.set_shape(opt)",
    "IOptimizationProfile.set_shape(max)",
    "ICudaEngine.num_io_tensors",
    "ICudaEngine.get_tensor_name",
    "ICudaEngine.get_tensor_mode",
    "ICudaEngine.get_tensor_dtype",
    "ICudaEngine.get_tensor_shape",
    "ICudaEngine.create_execution_context",
    "TensorIOMode.INPUT",
    "TensorIOMode.OUTPUT",
    "IExecutionContext.execute_async_v3",
    "IExecutionContext.execute_async_v3(stream_handle)",
    "IExecutionContext.set_input_shape",
    "IExecutionContext.set_tensor_address",
    "DataType.FLOAT",
    "DataType.HALF",
    "DataType.INT8",  # a tensor type: stays in 11.x, unlike the INT8 builder flag
    "DataType.itemsize",  # added in Python by tensorrt/__init__.py
]

# Removed by TensorRT 11 (NVIDIA's "Removed Python APIs and Replacements" in the 10.x -> 11.x
# migration guide: implicit INT8 calibration and the precision builder flags), present in 10.x.
REMOVED_IN_11 = [
    "BuilderFlag.FP16",
    "BuilderFlag.INT8",
    "BuilderFlag.BF16",
    "BuilderFlag.FP8",
    "BuilderFlag.INT4",
    "BuilderFlag.OBEY_PRECISION_CONSTRAINTS",
    "BuilderFlag.PREFER_PRECISION_CONSTRAINTS",
    "IBuilderConfig.int8_calibrator",
    "IBuilderConfig.set_calibration_profile",
    "IBuilderConfig.get_calibration_profile",
    "IBuilderConfig.set_quantization_flag",
    "IBuilderConfig.quantization_flags",
    "IInt8Calibrator",
    "IInt8EntropyCalibrator",
    "IInt8EntropyCalibrator2",
    "IInt8MinMaxCalibrator",
    "IInt8LegacyCalibrator",
    "CalibrationAlgoType",
    "QuantizationFlag",
    "Builder.platform_has_fast_fp16",
    "Builder.platform_has_fast_int8",
    "Builder.platform_has_tf32",
    "NetworkDefinitionCreationFlag.EXPLICIT_BATCH",
    "ILayer.precision",
    "ILayer.set_output_type",
    "ITensor.dynamic_range",
    "ICudaEngine.device_memory_size",
    "IAlgorithmSelector",
]

WRONG_TENSORRT_NAMES = [
    "IExecutionContext.execute_async_v4",
    "BuilderFlag.FP17",
    "Builder.create_network(flag)",  # the keyword is `flags`
    "Runtime.deserialize_engine",
    "ICudaEngine.get_binding_index",  # removed in 10.0
    "IExecutionContext.execute_async_v2",  # removed in 10.0
]

PYCUDA_USED = [
    "driver",
    "driver.init",
    "driver.Device",
    "driver.Device.name",
    "driver.Device.compute_capability",
    "driver.Device.retain_primary_context",
    "driver.Context.push",
    "driver.Context.pop",
    "driver.Context.detach",
    "driver.mem_alloc",
    "driver.DeviceAllocation.free",
    "driver.DeviceAllocation.__int__",
    "driver.pagelocked_empty",
    "driver.pagelocked_empty(shape)",
    "driver.pagelocked_empty(dtype)",
    "driver.HostAllocation.free",  # pagelocked_empty(...).base
    "driver.memcpy_htod_async",
    "driver.memcpy_dtoh_async",
    "driver.Stream",
    "driver.Stream.synchronize",
    "driver.Stream.handle",
    "autoinit",
]

CUDA_BINDINGS_USED = [
    "driver",
    "driver.cuInit",
    "driver.cuDeviceGet",
    "driver.cuDevicePrimaryCtxRetain",
    "driver.cuDevicePrimaryCtxRelease",
    "driver.cuCtxPushCurrent",
    "driver.cuCtxPopCurrent",
    "driver.cuMemAlloc",
    "driver.cuMemFree",
    "driver.cuMemHostAlloc",
    "driver.cuMemAllocHost",
    "driver.cuMemFreeHost",
    "driver.cuMemcpyHtoDAsync",
    "driver.cuMemcpyDtoHAsync",
    "driver.cuStreamCreate",
    "driver.cuStreamSynchronize",
    "driver.cuStreamDestroy",
    "driver.cuGetErrorString",
    "driver.CUresult",
    "driver.CUresult.CUDA_SUCCESS",
]


# --------------------------------------------------------------------------------------------------
# TensorRT


@pytest.mark.parametrize("version", TENSORRT_VERSIONS)
def test_tensorrt_runtime_names_exist_in_every_release(version):
    assert missing_names(TENSORRT_RUNTIME_NAMES, tensorrt_names(version)) == []


@pytest.mark.parametrize("version", TENSORRT_VERSIONS)
def test_wrong_tensorrt_names_are_reported_missing(version):
    names = tensorrt_names(version)
    used = ["IExecutionContext.execute_async_v3", *WRONG_TENSORRT_NAMES, "BuilderFlag.FP17"]
    assert missing_names(used, names) == sorted(WRONG_TENSORRT_NAMES)


@pytest.mark.parametrize("version", TRT10)
def test_tensorrt_10_has_implicit_quantization_and_precision_flags(version):
    assert missing_names(REMOVED_IN_11, tensorrt_names(version)) == []


@pytest.mark.parametrize("version", TRT11)
def test_tensorrt_11_removed_implicit_quantization_and_precision_flags(version):
    names = tensorrt_names(version)
    assert missing_names(REMOVED_IN_11, names) == sorted(REMOVED_IN_11)
    # what stays: strong typing is the only mode, its flag is still accepted; TF32 and the
    # DataType members are not precision-enabling flags
    assert missing_names(
        ["NetworkDefinitionCreationFlag.STRONGLY_TYPED", "BuilderFlag.TF32", "DataType.HALF", "DataType.INT8"], names
    ) == []


def test_tensorrt_10_3_to_10_13_only_adds_names():
    old, new = tensorrt_names("10.3.0"), tensorrt_names("10.13.3.9.post1")
    assert old - new == set()
    assert {"BuilderFlag.FP4", "IBuilderConfig.tiling_optimization_level"} <= new - old


@pytest.mark.parametrize("version", TENSORRT_VERSIONS)
def test_tensorrt_version_comes_from_init_py(version):
    """``tensorrt.__version__`` is set by the wheel's __init__.py (tests/tools/ reads it from the wheel)."""
    assert bindings.tensorrt_version_string(version) == version
    assert bindings.tensorrt_api(version)["__version__"] == "attribute"


@pytest.mark.parametrize("version", TENSORRT_VERSIONS)
def test_tensorrt_kinds(version):
    api = bindings.tensorrt_api(version)
    assert api["Builder"] == "class"
    assert api["BuilderFlag"] == "enum"
    assert api["MemoryPoolType.WORKSPACE"] == "enum_member"
    assert api["TensorIOMode.INPUT"] == "enum_member"
    assert api["Builder.create_network"] == "method"
    assert api["IExecutionContext.execute_async_v3"] == "method"
    assert api["ICudaEngine.num_io_tensors"] == "readonly_property"
    assert api["IBuilderConfig.builder_optimization_level"] == "property"
    assert api["nptype"] == "function"
    assert api["Logger.Severity"] == "enum"
    if version.startswith("10."):
        assert api["IBuilderConfig.int8_calibrator"] == "property"
        assert api["Builder.platform_has_fast_fp16"] == "readonly_property"
        assert api["BuilderFlag.FP16"] == "enum_member"


# --------------------------------------------------------------------------------------------------
# pycuda


@pytest.mark.parametrize("version", PYCUDA_VERSIONS)
def test_pycuda_used_names_exist(version):
    assert missing_names(PYCUDA_USED, pycuda_names(version)) == []


@pytest.mark.parametrize("version", PYCUDA_VERSIONS)
def test_wrong_pycuda_names_are_reported_missing(version):
    wrong = ["driver.Stream.synchronise", "driver.mem_alloc_v2", "driver.Context.push_current", "driver.Stream(flag)"]
    assert missing_names(["driver.Stream.synchronize", *wrong], pycuda_names(version)) == sorted(wrong)


def test_pycuda_kinds():
    api = bindings.pycuda_api()
    assert api["driver.Context"] == "class"
    assert api["driver.Context.pop"] == "staticmethod"
    assert api["driver.Context.push"] == "method"
    assert api["driver.Stream.handle"] == "property"
    assert api["driver.mem_alloc"] == "function"
    assert api["driver.ctx_flags.SCHED_AUTO"] == "enum_member"
    assert api["driver.LogicError"] == "exception"
    assert api["driver.HostAllocation"] == "class"  # py::scope().attr("HostAllocation") = wrp
    assert api["driver.Function.prepare"] == "method"  # added by driver.py's _add_functionality()
    assert api["driver.Function.launch_grid"] == "method"  # setattr() over a literal list in driver.py
    assert api["driver.Memcpy2D.src_x_in_bytes"] == "property"  # from a #define'd registration macro
    assert api["driver.DeviceMemoryPool.free_held"] == "method"  # from mempool.cpp's helper template
    assert api["compiler.SourceModule.get_function"] == "method"  # inherited from CudaModule


# --------------------------------------------------------------------------------------------------
# cuda-python's cuda-bindings


@pytest.mark.parametrize("version", CUDA_BINDINGS_VERSIONS)
def test_cuda_bindings_used_names_exist(version):
    assert missing_names(CUDA_BINDINGS_USED, cuda_bindings_names(version)) == []


@pytest.mark.parametrize("version", CUDA_BINDINGS_VERSIONS)
def test_wrong_cuda_bindings_names_are_reported_missing(version):
    wrong = ["driver.cuMemAlloc_v3", "driver.CUresult.CUDA_OK", "driver.cuStreamDestroy_v2"]
    assert missing_names(["driver.cuMemAlloc", *wrong], cuda_bindings_names(version)) == sorted(wrong)


def test_cuda_bindings_legacy_import_path():
    """`from cuda import cuda` (the old path) is still shipped, deprecated, by 12.x and gone in 13.x."""
    legacy = ["cuda.cuda", "cuda.cuda.cuMemAlloc", "cuda.cuda.CUresult.CUDA_SUCCESS", "cuda.cudart"]
    for version in CUDA_BINDINGS_VERSIONS:
        expected = [] if version.startswith("12.") else sorted(legacy)
        assert missing_names(legacy, cuda_bindings_names(version)) == expected, version


def test_cuda_bindings_kinds_and_keywords():
    api = bindings.cuda_bindings_api()
    assert api["driver"] == "module"
    assert api["driver.cuMemAlloc"] == "function"
    assert api["driver.CUresult"] == "enum"
    assert api["driver.CUresult.CUDA_SUCCESS"] == "enum_member"
    names = cuda_bindings_names()
    assert "driver.cuMemAlloc(bytesize)" in names
    assert "driver.cuMemcpyHtoDAsync(hStream)" in names


def test_cuda_bindings_lists_only_the_driver_modules_members():
    """The committed cuda-bindings lists hold driver's (and cuda.cuda's) members; of runtime, nvrtc, cuda.cudart
    and cuda.nvrtc only the module (tools/binding_names.py: this project calls the driver API alone)."""
    for version in CUDA_BINDINGS_VERSIONS:
        api = bindings.cuda_bindings_api(version)
        assert {"driver", "runtime", "nvrtc"} <= {name for name, kind in api.items() if kind == "module"}
        assert not [n for n in cuda_bindings_names(version) if n.startswith(("runtime.", "nvrtc.", "cuda.cudart."))]
        if version.startswith("12."):
            assert bindings.load("cuda-bindings", version)["aliases"] == {"cuda.cuda": "driver"}
            driver = {n[len("driver") :] for n in cuda_bindings_names(version) if n.startswith(("driver.", "driver("))}
            legacy = {n[len("cuda.cuda") :] for n in cuda_bindings_names(version) if n.startswith(("cuda.cuda.", "cuda.cuda("))}
            assert driver == legacy and len(driver) > 5000


# --------------------------------------------------------------------------------------------------
# the lists themselves


def test_missing_names_is_sorted_and_unique():
    available = frozenset({"Builder", "Builder.create_network"})
    assert missing_names(["Z", "Builder", "A", "Z", "Builder.create_network", "A"], available) == ["A", "Z"]
    assert missing_names([], available) == []


def test_every_release_has_its_list_with_a_header():
    releases = [("tensorrt", v) for v in TENSORRT_VERSIONS] + [("pycuda", v) for v in PYCUDA_VERSIONS]
    releases += [("cuda-bindings", v) for v in CUDA_BINDINGS_VERSIONS]
    packages = {"tensorrt": "tensorrt-cu12-bindings", "pycuda": "pycuda", "cuda-bindings": "cuda-bindings"}
    for library, version in releases:
        document = json.loads((bindings.HERE / f"{library}-{version}.json").read_text())
        assert document["generated_by"] == "tools/binding_names.py", library
        assert (document["library"], document["version"], document["module_version"]) == (library, version, version)
        assert document["source"]["package"] == packages[library]
        assert version in document["source"]["file"] and re.fullmatch(r"[0-9a-f]{64}", document["source"]["sha256"])
        assert len(document["api"]) > 500 and document["keywords"]
    assert len(list(bindings.HERE.glob("*.json"))) == len(releases)


def test_a_missing_list_names_the_command_that_writes_it():
    with pytest.raises(FileNotFoundError, match=r"python tools/binding_names.py tensorrt==9\.9"):
        bindings.load("tensorrt", "9.9")

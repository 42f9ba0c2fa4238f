"""Tests of tests/tensorrt/bindings.py: that the names it extracts from NVIDIA's and pycuda's published
packages are the real ones (known facts of each release, NVIDIA's 10.x -> 11.x migration guide, pycuda's
documentation, the strings of the binary), and that the download and cache behave as documented.

The tests that read real packages download them once per machine (about 25 MB in all, cached under
``~/.cache/clca-deploy-test-wheels``) and skip when the package index cannot be reached.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import re
import tarfile
import threading
import zipfile
from pathlib import Path

import pytest

from tests.tensorrt import bindings
from tests.tensorrt.bindings import (
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
    assert bindings.tensorrt_version_string(version) == version
    with zipfile.ZipFile(bindings.tensorrt_wheel(version)) as wheel:
        init = wheel.read("tensorrt_bindings/__init__.py").decode()
        metadata = next(wheel.read(n) for n in wheel.namelist() if n.endswith(".dist-info/METADATA")).decode()
    assert f'__version__ = "{version}"' in init  # set by __init__.py, not by the .so
    assert f"\nVersion: {version}\n" in metadata
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


@pytest.mark.parametrize("version", TENSORRT_VERSIONS)
def test_tensorrt_names_agree_with_the_binary_strings(version):
    """Every name the import finds is stored in tensorrt.so (or set by __init__.py), and the names
    11.x removed are gone from its binary too: the two views agree."""
    with zipfile.ZipFile(bindings.tensorrt_wheel(version)) as wheel:
        so = wheel.read("tensorrt_bindings/tensorrt.so")
        init = wheel.read("tensorrt_bindings/__init__.py").decode()
    components = {name.split(".")[-1] for name in bindings.tensorrt_api(version)}
    not_stored = sorted(c for c in components if not c.startswith("__") and not bindings.binary_has_string(so, c))
    assert not_stored and all(re.search(rf"\b{c}\b", init) for c in not_stored), not_stored
    removed_strings = ["FP16", "platform_has_fast_fp16", "int8_calibrator", "IInt8EntropyCalibrator2", "EXPLICIT_BATCH"]
    stored = [s for s in removed_strings if bindings.binary_has_string(so, s)]
    assert stored == (removed_strings if version.startswith("10.") else [])
    # the wrong names are not in the binary either
    assert not bindings.binary_has_string(so, "execute_async_v4")
    assert not bindings.binary_has_string(so, "FP17")


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


def test_pycuda_names_cover_its_documentation():
    """pycuda's doc/driver.rst documents ~365 names of pycuda.driver and pycuda.compiler; all but a
    known few (documented but not defined, or served by __getattr__) are extracted from the source."""
    sdist = bindings._download("pycuda", bindings.PYCUDA_VERSION, bindings._select_sdist, "sdist.tar.gz")
    with tarfile.open(sdist, "r:gz") as archive:
        member = next(m for m in archive.getmembers() if m.name.endswith("/doc/driver.rst"))
        text = archive.extractfile(member).read().decode()
    documented, module, owner = [], None, None
    for line in text.splitlines():
        directive = re.match(r"^\s*\.\. (?:module|currentmodule)::\s*(\S+)", line)
        if directive:
            module, owner = directive.group(1), None
            continue
        entry = re.match(r"^(\s*)\.\. (function|class|method|attribute|staticmethod|exception|data)::\s*([\w.]+)", line)
        if not entry or module not in ("pycuda.driver", "pycuda.compiler"):
            continue
        prefix, name = module.split(".")[1], entry.group(3)
        if not entry.group(1):
            owner = name if entry.group(2) in ("class", "exception") else None
            documented.append(f"{prefix}.{name}")
        else:
            documented.append(f"{prefix}.{owner}.{name}" if owner else f"{prefix}.{name}")
    assert len(documented) > 300
    not_extracted = set(missing_names(documented, pycuda_names()))
    known = {
        "driver.RegisteredHostMemory.base",  # documented, never registered
        "driver.Function.set_shared_config",  # documented, never registered
        "driver.memcpy_htoa",  # registered as py_memcpy_htoa (DEF_SIMPLE_FUNCTION_WITH_ARGS(py_memcpy_htoa ...))
        "driver.memcpy_atoh",
        "driver.Function.num_regs",  # Function.__getattr__
        "driver.Function.shared_size_bytes",
        "driver.Function.local_size_bytes",
    }
    assert not_extracted <= known, sorted(not_extracted - known)


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


# --------------------------------------------------------------------------------------------------
# the machinery, without the network


def test_missing_names_is_sorted_and_unique():
    available = frozenset({"Builder", "Builder.create_network"})
    assert missing_names(["Z", "Builder", "A", "Z", "Builder.create_network", "A"], available) == ["A", "Z"]
    assert missing_names([], available) == []


def test_boost_python_parser_on_a_snippet():
    source = r'''
    #define DEF_SIMPLE_METHOD(NAME) def(#NAME, &cl::NAME)
    #define EXTRA_PROPS \
          .def_readwrite("width", &cl::w)
    BOOST_PYTHON_MODULE(_driver)
    {
      py::def("init", init, py::arg("flags")=0);
      DEF_SIMPLE_FUNCTION(mem_get_info);
      {
        typedef context cl;
        py::class_<cl, shared_ptr<cl> >("Context", py::no_init)
          .def(py::self == py::self)
    #if CUDAPP_CUDA_VERSION >= 2000
          .def("push", context_push)   // a comment with .def("not_a_method")
          .DEF_SIMPLE_METHOD(pop)
          .staticmethod("pop")
    #endif
          .add_property("handle", &cl::handle_int)
          EXTRA_PROPS
          ;
      }
      {
        typedef stream cl;
        py::class_<cl, boost::noncopyable> wrp(
            "Stream", py::init<unsigned int>(py::arg("flags")=0));
        wrp.DEF_SIMPLE_METHOD(synchronize);
        py::scope().attr("Queue") = wrp;
      }
      py::enum_<CUctx_flags>("ctx_flags")
        .value("SCHED_AUTO", CU_CTX_SCHED_AUTO);
    }
    '''
    api, keywords = {}, set()
    bindings._parse_boost_python([source], "driver", api, keywords)
    assert api == {
        "driver.init": "function",
        "driver.mem_get_info": "function",
        "driver.Context": "class",
        "driver.Context.__eq__": "method",
        "driver.Context.push": "method",
        "driver.Context.pop": "staticmethod",
        "driver.Context.handle": "property",
        "driver.Context.width": "property",
        "driver.Stream": "class",
        "driver.Stream.synchronize": "method",
        "driver.Queue": "class",
        "driver.Queue.synchronize": "method",
        "driver.ctx_flags": "enum",
        "driver.ctx_flags.SCHED_AUTO": "enum_member",
    }
    assert keywords == {"driver.init(flags)", "driver.Stream(flags)", "driver.Queue(flags)"}


def test_python_module_parser_on_a_snippet():
    source = '''
from pycuda._driver import *  # noqa
from pycuda.tools import context_dependent_memoize
from numpy import zeros

class Base:
    def get(self, name, *, strict=False):
        pass

class Handler(Base):
    kind = "x"

    def __init__(self, array):
        self.array = array

    @property
    def size(self):
        return 1

    @staticmethod
    def make(shape):
        pass

def _add_functionality():
    Stream.wait = lambda self: None
    for name in ["launch", "param_set"]:
        setattr(Function, name, getattr(Function, "_" + name))

def to_device(bf_obj):
    pass

CUDA_DEBUGGING = False
'''
    api, keywords = {"driver.Stream": "class", "driver.Function": "class"}, set()
    bindings._parse_python_module(source, "driver", api, keywords)
    assert api == {
        "driver": "module",
        "driver.Stream": "class",
        "driver.Stream.wait": "method",
        "driver.Function": "class",
        "driver.Function.launch": "method",
        "driver.Function.param_set": "method",
        "driver.context_dependent_memoize": "attribute",
        "driver.Base": "class",
        "driver.Base.get": "method",
        "driver.Handler": "class",
        "driver.Handler.get": "method",
        "driver.Handler.kind": "attribute",
        "driver.Handler.array": "attribute",
        "driver.Handler.size": "property",
        "driver.Handler.make": "method",
        "driver.to_device": "function",
        "driver.CUDA_DEBUGGING": "attribute",
    }
    assert keywords == {
        "driver.Base.get(name)",
        "driver.Base.get(strict)",
        "driver.Handler.get(name)",
        "driver.Handler.get(strict)",
        "driver.Handler(array)",
        "driver.Handler.make(shape)",
        "driver.to_device(bf_obj)",
    }


def _fake_wheel(version: str) -> tuple[str, bytes]:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("fake_pkg/__init__.py", f"__version__ = {version!r}\n")
    tag = bindings._interpreter_tag()
    machine = bindings.platform.machine().lower()
    return f"fake_pkg-{version}-{tag}-none-manylinux_2_17_{machine}.whl", buffer.getvalue()


@pytest.fixture
def fake_index(tmp_path, monkeypatch):
    """A local PEP 691 index with fake-pkg 1.0 (a good wheel) and 2.0 (a wheel whose hash is wrong)."""
    good_name, good = _fake_wheel("1.0")
    bad_name, bad = _fake_wheel("2.0")
    files = {f"/files/{good_name}": good, f"/files/{bad_name}": bad}
    index = {
        "files": [
            {"filename": good_name, "url": f"/files/{good_name}", "hashes": {"sha256": hashlib.sha256(good).hexdigest()}},
            {"filename": bad_name, "url": f"/files/{bad_name}", "hashes": {"sha256": "0" * 64}},
            {"filename": "fake_pkg-3.0-cp27-none-win32.whl", "url": "/files/none", "hashes": {}},
        ]
    }
    requests = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            requests.append(self.path)
            if self.path == "/simple/fake-pkg/":
                body, kind = json.dumps(index).encode(), "application/vnd.pypi.simple.v1+json"
            elif self.path in files:
                body, kind = files[self.path], "application/octet-stream"
            else:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    monkeypatch.setenv("CLCA_DEPLOY_TEST_WHEELS", str(tmp_path / "cache"))
    monkeypatch.setenv("CLCA_DEPLOY_TEST_INDEX_URL", f"http://127.0.0.1:{server.server_address[1]}/simple")
    yield requests
    server.shutdown()
    server.server_close()


def test_download_is_cached_and_checked(fake_index, tmp_path, monkeypatch):
    path = bindings._download("fake-pkg", "1.0", bindings._select_wheel, "w.whl")
    assert zipfile.ZipFile(path).read("fake_pkg/__init__.py") == b"__version__ = '1.0'\n"
    assert path.is_relative_to(tmp_path / "cache")
    count = len(fake_index)
    monkeypatch.setenv("CLCA_DEPLOY_TEST_INDEX_URL", "http://127.0.0.1:9/simple")  # nothing listens there
    assert bindings._download("fake-pkg", "1.0", bindings._select_wheel, "w.whl") == path  # from the cache
    assert len(fake_index) == count


def test_a_bad_hash_is_an_error(fake_index):
    with pytest.raises(RuntimeError, match="sha256"):
        bindings._download("fake-pkg", "2.0", bindings._select_wheel, "w.whl")


def test_a_missing_release_is_an_error(fake_index):
    with pytest.raises(FileNotFoundError, match="fake-pkg==9.9"):
        bindings._download("fake-pkg", "9.9", bindings._select_wheel, "w.whl")
    with pytest.raises(FileNotFoundError):
        bindings._download("fake-pkg", "1.0", bindings._select_sdist, "sdist.tar.gz")


def test_a_release_without_a_wheel_for_this_python_skips(fake_index):
    with pytest.raises(pytest.skip.Exception, match="no wheel for cp"):
        bindings._download("fake-pkg", "3.0", bindings._select_wheel, "w.whl")


def test_an_unreachable_registry_skips(tmp_path, monkeypatch):
    monkeypatch.setenv("CLCA_DEPLOY_TEST_WHEELS", str(tmp_path / "cache"))
    monkeypatch.setenv("CLCA_DEPLOY_TEST_INDEX_URL", "http://127.0.0.1:9/simple")
    with pytest.raises(pytest.skip.Exception, match="registry unreachable"):
        bindings._download("fake-pkg", "1.0", bindings._select_wheel, "w.whl")


def test_html_index_is_understood(monkeypatch):
    page = (
        '<html><body><a href="https://files.example/p/fake_pkg-1.0-cp311-none-manylinux_2_17_x86_64.whl'
        '#sha256=abc&amp;x">fake_pkg-1.0-cp311-none-manylinux_2_17_x86_64.whl</a><br/></body></html>'
    )
    monkeypatch.setattr(bindings, "_http_get", lambda url, accept=None: (page.encode(), "text/html"))
    assert bindings._index_files("fake-pkg") == [
        {
            "filename": "fake_pkg-1.0-cp311-none-manylinux_2_17_x86_64.whl",
            "url": "https://files.example/p/fake_pkg-1.0-cp311-none-manylinux_2_17_x86_64.whl",
            "sha256": "abc&x",
        }
    ]


def test_elf_patch_drops_only_non_system_libraries(tmp_path):
    """On the real TensorRT module (cached wheel): the NVIDIA libraries are dropped, the system ones kept."""
    wheel = bindings.tensorrt_wheel(TENSORRT_VERSIONS[0])
    module = tmp_path / "tensorrt.so"
    with zipfile.ZipFile(wheel) as archive:
        module.write_bytes(archive.read("tensorrt_bindings/tensorrt.so"))
    dropped = bindings._detach_elf_dependencies(module)
    assert sorted(dropped) == ["libnvinfer.so.10", "libnvinfer_plugin.so.10", "libnvonnxparser.so.10"]
    assert bindings._detach_elf_dependencies(module) == []  # idempotent
    with pytest.raises(RuntimeError, match="ELF64"):
        bad = tmp_path / "bad.so"
        bad.write_bytes(b"not an elf")
        bindings._detach_elf_dependencies(bad)


def test_cache_dir_is_overridable(monkeypatch, tmp_path):
    monkeypatch.setenv("CLCA_DEPLOY_TEST_WHEELS", str(tmp_path))
    assert bindings.cache_dir() == tmp_path
    monkeypatch.delenv("CLCA_DEPLOY_TEST_WHEELS")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert bindings.cache_dir() == Path(tmp_path / "xdg" / "clca-deploy-test-wheels")

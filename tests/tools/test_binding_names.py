"""tools/binding_names.py, the script that writes tests/tensorrt/binding_names/*.json: its download and
cache (against a local index), ELF patching and parsers (on small inline samples), the committed form,
and the command line -- none of it uses the network.

The last tests compare with the real packages and need them in the script's cache
(``~/.cache/clca-deploy-test-wheels``, filled by ``python tools/binding_names.py``): the committed lists
must be what the script writes from the cached records, and agree with the binaries and pycuda's
documentation. Without that cache (CI) they skip; they never download.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import platform
import re
import struct
import subprocess
import sys
import tarfile
import threading
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from tests.tensorrt import binding_names as committed
from tools import binding_import, binding_names, binding_walker, package_index, pycuda_source
from tools.package_index import Index, NoMatchingFile, RegistryUnreachable

UNREACHABLE = "http://127.0.0.1:9/simple"  # nothing listens there


# --------------------------------------------------------------------------------------------------
# download and cache, against a local index


def _fake_wheel(version: str) -> tuple[str, bytes]:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("fake_pkg/__init__.py", f"__version__ = {version!r}\n")
    tag = package_index.interpreter_tag()
    machine = platform.machine().lower()
    return f"fake_pkg-{version}-{tag}-none-manylinux_2_17_{machine}.whl", buffer.getvalue()


@pytest.fixture
def fake_index(tmp_path):
    """A local PEP 691 index with fake-pkg 1.0 (a good wheel) and 2.0 (a wheel whose hash is wrong);
    yields the Index and the list of paths requested."""
    good_name, good = _fake_wheel("1.0")
    bad_name, bad = _fake_wheel("2.0")
    files = {f"/files/{good_name}": good, f"/files/{bad_name}": bad}
    listing = {
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
                body, kind = json.dumps(listing).encode(), "application/vnd.pypi.simple.v1+json"
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
    yield Index(f"http://127.0.0.1:{server.server_address[1]}/simple", tmp_path / "cache"), requests
    server.shutdown()
    server.server_close()


def test_download_is_cached_and_checked(fake_index, tmp_path):
    index, requests = fake_index
    path = package_index.download(index, "fake-pkg", "1.0", package_index.select_wheel, "w.whl")
    assert zipfile.ZipFile(path).read("fake_pkg/__init__.py") == b"__version__ = '1.0'\n"
    assert path.is_relative_to(tmp_path / "cache")
    assert package_index.source_of(path) == {
        "file": _fake_wheel("1.0")[0],
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
    }
    count = len(requests)
    offline = Index(UNREACHABLE, index.cache)
    assert package_index.download(offline, "fake-pkg", "1.0", package_index.select_wheel, "w.whl") == path  # from the cache
    assert package_index.cached_file(offline, "fake-pkg", "1.0", "w.whl") == path
    assert package_index.cached_file(offline, "fake-pkg", "2.0", "w.whl") is None
    assert len(requests) == count


def test_a_bad_hash_is_an_error(fake_index):
    index, _ = fake_index
    with pytest.raises(RuntimeError, match="sha256"):
        package_index.download(index, "fake-pkg", "2.0", package_index.select_wheel, "w.whl")
    assert package_index.cached_file(index, "fake-pkg", "2.0", "w.whl") is None


def test_a_missing_release_is_an_error(fake_index):
    index, _ = fake_index
    with pytest.raises(FileNotFoundError, match="fake-pkg==9.9"):
        package_index.download(index, "fake-pkg", "9.9", package_index.select_wheel, "w.whl")
    with pytest.raises(FileNotFoundError):
        package_index.download(index, "fake-pkg", "1.0", package_index.select_sdist, "sdist.tar.gz")


def test_a_release_without_a_wheel_for_this_python_is_refused(fake_index):
    index, _ = fake_index
    with pytest.raises(NoMatchingFile, match="no wheel for cp"):
        package_index.download(index, "fake-pkg", "3.0", package_index.select_wheel, "w.whl")


def test_an_unreachable_registry_is_reported(tmp_path):
    with pytest.raises(RegistryUnreachable):
        package_index.download(Index(UNREACHABLE, tmp_path), "fake-pkg", "1.0", package_index.select_wheel, "w.whl")


def test_html_index_is_understood(monkeypatch):
    page = (
        '<html><body><a href="https://files.example/p/fake_pkg-1.0-cp311-none-manylinux_2_17_x86_64.whl'
        '#sha256=abc&amp;x">fake_pkg-1.0-cp311-none-manylinux_2_17_x86_64.whl</a><br/></body></html>'
    )
    monkeypatch.setattr(package_index, "http_get", lambda url, accept=None: (page.encode(), "text/html"))
    assert package_index.index_files(Index("https://index.example/simple", Path(".")), "fake-pkg") == [
        {
            "filename": "fake_pkg-1.0-cp311-none-manylinux_2_17_x86_64.whl",
            "url": "https://files.example/p/fake_pkg-1.0-cp311-none-manylinux_2_17_x86_64.whl",
            "sha256": "abc&x",
        }
    ]


def test_cache_and_index_come_from_options_then_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("CLCA_DEPLOY_TEST_WHEELS", str(tmp_path))
    monkeypatch.setenv("CLCA_DEPLOY_TEST_INDEX_URL", "http://mirror.example/simple/")
    assert Index.from_environment() == Index("http://mirror.example/simple", tmp_path)
    assert Index.from_environment("http://other.example/simple", tmp_path / "c") == Index(
        "http://other.example/simple", tmp_path / "c"
    )
    monkeypatch.delenv("CLCA_DEPLOY_TEST_WHEELS")
    monkeypatch.delenv("CLCA_DEPLOY_TEST_INDEX_URL")
    monkeypatch.delenv("PIP_INDEX_URL", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert Index.from_environment() == Index("https://pypi.org/simple", tmp_path / "xdg" / "clca-deploy-test-wheels")


# --------------------------------------------------------------------------------------------------
# ELF patching, on a small hand-made shared object


def _elf(needed: list[str], verneed_from: str | None = None) -> bytes:
    """An ELF64 object with .dynstr, .dynamic (DT_NEEDED ``needed``), .dynsym (an undefined global, a
    defined global, an undefined weak symbol) and, if asked, a version requirement on ``verneed_from``."""
    names = [*needed, "createInferBuilder", "defined", "weakling"]
    dynstr, offsets = b"\0", {}
    for name in names:
        offsets[name] = len(dynstr)
        dynstr += name.encode() + b"\0"
    dynamic = b"".join(struct.pack("<qQ", 1, offsets[n]) for n in needed) + struct.pack("<qQ", 0, 0)
    dynsym = bytes(24) + b"".join(
        struct.pack("<IBBHQQ", offsets[name], info, 0, shndx, 0, 0)
        for name, info, shndx in (("createInferBuilder", 0x12, 0), ("defined", 0x12, 5), ("weakling", 0x22, 0))
    )
    sections = [(3, dynstr, 0, 0), (6, dynamic, 1, 16), (11, dynsym, 1, 24)]
    if verneed_from:
        sections.append((0x6FFFFFFE, struct.pack("<HHIII", 1, 0, offsets[verneed_from], 0, 0), 1, 0))
    body, headers = b"", [bytes(64)]
    for sh_type, data, link, entsize in sections:
        headers.append(struct.pack("<IIQQQQIIQQ", 0, sh_type, 0, 0, 64 + len(body), len(data), link, 0, 1, entsize))
        body += data
    header = b"\x7fELF" + bytes([2, 1, 1]) + bytes(9)
    header += struct.pack("<HHIQQQIHHHHHH", 3, 62, 1, 0, 0, 64 + len(body), 0, 64, 0, 0, 64, len(headers), 0)
    return header + body + b"".join(headers)


def _dynsym_bindings(data: bytes) -> list[int]:
    """The binding (1 GLOBAL, 2 WEAK) of each .dynsym entry after the null one."""
    sections = binding_import._elf_sections(bytearray(data), Path("x"))
    offset, size = next((s[4], s[5]) for s in sections if s[1] == 11)
    return [data[offset + i * 24 + 4] >> 4 for i in range(1, size // 24)]


def test_elf_patch_drops_only_non_system_libraries(tmp_path):
    module = tmp_path / "tensorrt.so"
    module.write_bytes(_elf(["libnvinfer.so.10", "libstdc++.so.6", "libc.so.6", "libnvonnxparser.so.10"]))
    assert binding_import.detach_elf_dependencies(module) == ["libnvinfer.so.10", "libnvonnxparser.so.10"]
    patched = module.read_bytes()
    sections = binding_import._elf_sections(bytearray(patched), module)
    dynamic = next(s for s in sections if s[1] == 6)
    needed = [struct.unpack_from("<qQ", patched, dynamic[4] + 16 * i) for i in range(4)]
    strings = [binding_import._section_string(bytearray(patched), sections, 1, value) for _, value in needed]
    assert strings == ["libc.so.6", "libstdc++.so.6", "libc.so.6", "libc.so.6"]
    assert _dynsym_bindings(patched) == [2, 1, 2]  # the undefined global became weak; the defined one stayed
    assert binding_import.detach_elf_dependencies(module) == []  # idempotent
    assert module.read_bytes() == patched


def test_elf_patch_refuses_what_it_cannot_load(tmp_path):
    versioned = tmp_path / "versioned.so"
    versioned.write_bytes(_elf(["libnvinfer.so.10", "libc.so.6"], verneed_from="libnvinfer.so.10"))
    original = versioned.read_bytes()
    with pytest.raises(RuntimeError, match="needs symbol versions from libnvinfer.so.10"):
        binding_import.detach_elf_dependencies(versioned)
    assert versioned.read_bytes() == original
    lonely = tmp_path / "lonely.so"
    lonely.write_bytes(_elf(["libnvinfer.so.10"]))
    with pytest.raises(RuntimeError, match="no system library"):
        binding_import.detach_elf_dependencies(lonely)
    bad = tmp_path / "bad.so"
    bad.write_bytes(b"not an elf")
    with pytest.raises(RuntimeError, match="ELF64"):
        binding_import.detach_elf_dependencies(bad)


def test_binary_has_string_finds_merged_tails():
    data = b"\0UINT8\0create_network\0xFP16y\0"
    assert binding_import.binary_has_string(data, "INT8")  # only stored as the tail of "UINT8"
    assert binding_import.binary_has_string(data, "create_network")
    assert not binding_import.binary_has_string(data, "FP16")  # not NUL-terminated there
    assert not binding_import.binary_has_string(data, "create")


# --------------------------------------------------------------------------------------------------
# the walker (a child interpreter) and the parsers, on small inline samples


TOY_PACKAGE = '''
import enum, os
__version__ = "1.2"

class Color:  # shaped like a pybind11 enum: __members__ is a dict of instances
    def __init__(self, value):
        self.value = value

Color.RED = Color(1)
Color.__members__ = {"RED": Color.RED}

class Builder:
    LIMIT = 3
    def __init__(self, logger, *, verbose=False):
        pass
    def create_network(self, flags=0):
        pass
    @property
    def name(self):
        return "b"
    @staticmethod
    def make(size):
        pass
    def _private(self):
        pass

def nptype(dtype):
    pass
'''


def test_walker_lists_an_imported_package(tmp_path):
    (tmp_path / "toypkg").mkdir()
    (tmp_path / "toypkg" / "__init__.py").write_text(TOY_PACKAGE)
    walked = binding_import.run_walker([("toypkg", ""), ("absent_pkg", "absent")], [str(tmp_path)])
    assert walked["versions"] == {"toypkg": "1.2"} and list(walked["failed"]) == ["absent_pkg"]
    expected = {
        "__version__": "attribute",
        "Builder": "class",
        "Builder.LIMIT": "attribute",
        "Builder.create_network": "method",
        "Builder.name": "readonly_property",
        "Builder.make": "staticmethod",
        "Color": "enum",
        "Color.RED": "enum_member",
        "nptype": "function",
    }
    assert {name: walked["api"].get(name) for name in expected} == expected
    assert not [name for name in walked["api"] if "_private" in name or name.startswith(("os", "enum"))]
    assert set(walked["keywords"]) == {
        "Builder(logger)", "Builder(verbose)", "Builder.__init__(logger)", "Builder.__init__(verbose)",
        "Builder.create_network(flags)", "Builder.make(size)", "Color(value)", "Color.__init__(value)", "nptype(dtype)",
    }


def test_walker_reads_pybind11_docstrings():
    doc = (
        "set_shape(*args, **kwargs)\nOverloaded function.\n\n"
        "1. set_shape(self: tensorrt.IOptimizationProfile, input: str, min: tensorrt.Dims, "
        "opt: tensorrt.Dims, max: tensorrt.Dims) -> None\n\n"
        "2. set_shape(self: tensorrt.IOptimizationProfile, arg0: int, shape: Dict[str, List[int]] = {}) -> None\n"
    )
    assert binding_walker.docstring_params(doc, "set_shape") == {"input", "min", "opt", "max", "shape"}
    assert binding_walker.docstring_params("f(self: X, a: int, /, b: Tuple[int, int] = (1, 2)) -> int", "f") == {"b"}
    assert binding_walker.docstring_params("g(self: X) -> None", "f") == set()


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
    pycuda_source.parse_boost_python([source], "driver", api, keywords)
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


def test_boost_python_bases_and_helper_templates():
    source = r'''
    template <class Wrapper> void expose_pool(Wrapper &wrapper) { wrapper.def("free_held", &free_held).def("stop_holding", &stop); }
    BOOST_PYTHON_MODULE(_driver)
    {
      py::class_<pointer_holder_base>("PointerHolderBase").def("get_pointer", &get_pointer, py::args("self", "offset"));
      {
        typedef device_pool cl;
        py::class_<cl, py::bases<pointer_holder_base> > wrapper("DeviceMemoryPool");
        expose_pool(wrapper);
      }
    }
    '''
    api, keywords = {}, set()
    pycuda_source.parse_boost_python([source], "driver", api, keywords)
    assert api["driver.DeviceMemoryPool.free_held"] == "method"
    assert api["driver.DeviceMemoryPool.stop_holding"] == "method"
    assert api["driver.DeviceMemoryPool.get_pointer"] == "method"  # inherited through py::bases
    assert keywords == {"driver.PointerHolderBase.get_pointer(offset)", "driver.DeviceMemoryPool.get_pointer(offset)"}


PYTHON_SNIPPET = '''
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


def test_python_module_parser_on_a_snippet():
    api, keywords = {"driver.Stream": "class", "driver.Function": "class"}, set()
    pycuda_source.parse_python_module(PYTHON_SNIPPET, "driver", api, keywords)
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


def test_pycuda_version_text():
    assert pycuda_source.pycuda_version('VERSION = (2025, 1, 3)\nVERSION_STATUS = ""\n') == "2025.1.3"
    assert pycuda_source.pycuda_version('VERSION = (2026, 1)\nVERSION_STATUS = "rc1"\n') == "2026.1rc1"
    assert pycuda_source.pycuda_version("x = 1\n") is None


# --------------------------------------------------------------------------------------------------
# the committed form and the command line


def _cuda_record(legacy_extra: bool = False) -> dict:
    api = {
        "__version__": "attribute",
        "driver": "module",
        "driver.cuInit": "function",
        "driver.CUresult": "enum",
        "driver.CUresult.CUDA_SUCCESS": "enum_member",
        "runtime": "module",
        "runtime.cudaMalloc": "function",
        "cuda.cuda": "module",
        "cuda.cuda.cuInit": "function",
        "cuda.cuda.CUresult": "enum",
        "cuda.cuda.CUresult.CUDA_SUCCESS": "enum_member",
        "cuda.cudart": "module",
        "cuda.cudart.cudaMalloc": "function",
    }
    if legacy_extra:
        api["cuda.cuda.cuOld"] = "function"
    keywords = ["cuda.cuda.cuInit(Flags)", "cuda.cudart.cudaMalloc(size)", "driver.cuInit(Flags)", "runtime.cudaMalloc(size)"]
    source = {"package": "cuda-bindings", "file": "cuda_bindings-12.9.9-x.whl", "sha256": "0" * 64}
    return {"library": "cuda-bindings", "version": "12.9.9", "module_version": "12.9.9", "source": source,
            "api": api, "keywords": keywords}


def test_cuda_bindings_keeps_the_driver_and_aliases_its_legacy_path(tmp_path, monkeypatch):
    doc = binding_names.document(_cuda_record())
    assert doc["aliases"] == {"cuda.cuda": "driver"}
    assert list(doc["api"]) == ["__version__", "cuda.cuda", "cuda.cudart", "driver", "driver.CUresult",
                                "driver.CUresult.CUDA_SUCCESS", "driver.cuInit", "runtime"]
    assert doc["keywords"] == ["driver.cuInit(Flags)"]
    # the tests' loader gives back every driver and cuda.cuda name
    (tmp_path / "cuda-bindings-12.9.9.json").write_text(binding_names.render(doc))
    monkeypatch.setattr(committed, "HERE", tmp_path)
    committed.load.cache_clear()
    try:
        loaded = committed.load("cuda-bindings", "12.9.9")
    finally:
        committed.load.cache_clear()
    full = _cuda_record()
    assert loaded["api"] == {n: k for n, k in full["api"].items() if not n.startswith(("runtime.", "cuda.cudart."))}
    assert sorted(loaded["keywords"]) == ["cuda.cuda.cuInit(Flags)", "driver.cuInit(Flags)"]


def test_a_legacy_module_that_differs_is_written_out():
    doc = binding_names.document(_cuda_record(legacy_extra=True))
    assert doc["aliases"] == {}
    assert {"cuda.cuda.cuOld", "cuda.cuda.cuInit"} <= set(doc["api"]) and "cuda.cuda.cuInit(Flags)" in doc["keywords"]


def test_the_committed_form_is_sorted_with_one_name_per_line():
    record = {"library": "tensorrt", "version": "9.9", "module_version": "9.9", "dropped_libraries": ["libnvinfer.so.9"],
              "source": {"package": "tensorrt-cu12-bindings", "file": "t.whl", "sha256": "1" * 64},
              "api": {"Runtime": "class", "Builder": "class"}, "keywords": ["Runtime(logger)", "Builder(logger)"]}
    text = binding_names.render(binding_names.document(record))
    lines = text.splitlines()
    assert lines[1] == ' "generated_by": "tools/binding_names.py",'
    assert lines[lines.index(' "api": {') + 1 : lines.index(' "api": {') + 3] == ['  "Builder": "class",', '  "Runtime": "class"']
    assert '  "Builder(logger)",' in lines and text.endswith("]\n}\n")


def test_the_script_lists_the_releases_the_tests_read():
    assert binding_names.RELEASES == {
        "tensorrt": committed.TENSORRT_VERSIONS,
        "pycuda": committed.PYCUDA_VERSIONS,
        "cuda-bindings": committed.CUDA_BINDINGS_VERSIONS,
    }
    assert binding_names.OUTPUT_DIR == committed.HERE
    written = {binding_names.output_path(committed.HERE, *release).name for release in binding_names._releases([])}
    assert written == {path.name for path in committed.HERE.glob("*.json")}


def test_every_committed_list_is_in_the_scripts_form():
    """Stable text: what render() writes for the list's own content (sorted, one name per line)."""
    for path in sorted(committed.HERE.glob("*.json")):
        text = path.read_text()
        doc = json.loads(text)
        assert binding_names.render(doc) == text, path.name
        assert list(doc["api"]) == sorted(doc["api"]) and doc["keywords"] == sorted(set(doc["keywords"])), path.name
        assert doc["regenerate"] == f"python tools/binding_names.py {doc['library']}=={doc['version']}"


def test_main_writes_and_checks_from_a_cached_record(tmp_path, capsys):
    index = Index(UNREACHABLE, tmp_path / "cache")
    record = {**_cuda_record(), "extractor": binding_names.EXTRACTOR_VERSION}
    binding_names.record_path(index, "cuda-bindings", "12.9.9").parent.mkdir(parents=True)
    binding_names.record_path(index, "cuda-bindings", "12.9.9").write_text(json.dumps(record))
    options = ["--cache", str(index.cache), "--index-url", UNREACHABLE, "--out", str(tmp_path / "out")]
    assert binding_names.main([*options, "--check", "cuda-bindings==12.9.9"]) == 1  # not written yet
    assert binding_names.main([*options, "cuda-bindings==12.9.9"]) == 0
    written = tmp_path / "out" / "cuda-bindings-12.9.9.json"
    assert json.loads(written.read_text()) == binding_names.document(record)
    assert binding_names.main([*options, "--check", "cuda-bindings==12.9.9"]) == 0
    written.write_text(written.read_text().replace('"driver.cuInit": "function"', '"driver.cuInit_v2": "function"'))
    assert binding_names.main([*options, "--check", "cuda-bindings==12.9.9"]) == 1
    assert "cuda-bindings-12.9.9.json differs" in capsys.readouterr().err


def test_main_without_index_or_cache_fails_in_one_line(tmp_path, capsys):
    options = ["--cache", str(tmp_path / "empty"), "--index-url", UNREACHABLE, "--out", str(tmp_path / "out")]
    assert binding_names.main([*options, "pycuda==2026.1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("binding_names: pycuda==2026.1: ") and err.count("\n") == 1
    assert not (tmp_path / "out").exists()
    with pytest.raises(SystemExit, match="unknown library 'tensorrt-cu12'"):
        binding_names.main([*options, "tensorrt-cu12==10.3.0"])


def test_the_script_runs_as_a_file():
    done = subprocess.run([sys.executable, str(REPO_ROOT / "tools" / "binding_names.py"), "--help"],
                          capture_output=True, text=True, timeout=60, cwd=REPO_ROOT / "docs")
    assert done.returncode == 0, done.stderr
    assert "LIBRARY[==VERSION]" in done.stdout and "--index-url" in done.stdout


# --------------------------------------------------------------------------------------------------
# the real packages, from the script's cache only (skipped without it; never downloaded here)


@pytest.fixture(scope="module")
def index() -> Index:
    return Index.from_environment()


def cached(index: Index, project: str, version: str, name: str) -> Path:
    path = package_index.cached_file(index, project, version, name)
    if path is None:
        pytest.skip(f"{project}=={version} is not in {index.cache} (python tools/binding_names.py downloads it)")
    return path


def test_committed_lists_are_what_the_script_writes_from_the_cache(index):
    compared, differ = [], []
    for library, version in binding_names._releases([]):
        record = binding_names.cached_record(index, library, version)
        if record is None:
            continue
        compared.append(f"{library}=={version}")
        text = binding_names.render(binding_names.document(record))
        if binding_names.output_path(committed.HERE, library, version).read_text() != text:
            differ.append(f"{library}=={version}")
    if not compared:
        pytest.skip(f"no extracted record in {index.cache} (python tools/binding_names.py makes them)")
    assert differ == [], f"committed lists differ from the cached records: run python tools/binding_names.py {' '.join(differ)}"


@pytest.mark.parametrize("version", committed.CUDA_BINDINGS_VERSIONS)
def test_loader_gives_the_recorded_driver_names(index, version):
    """The committed selection plus the loader's alias expansion loses no name of driver or cuda.cuda."""
    record = binding_names.cached_record(index, "cuda-bindings", version)
    if record is None:
        pytest.skip(f"cuda-bindings=={version} has no extracted record in {index.cache}")
    modules = [name for name, kind in record["api"].items() if kind == "module"]

    def in_scope(name: str) -> bool:
        owner = max((m for m in modules if name == m or name.startswith((m + ".", m + "("))), key=len, default=None)
        return owner is None or owner == name or owner in ("driver", "cuda.cuda")

    assert committed.cuda_bindings_api(version) == {n: k for n, k in record["api"].items() if in_scope(n)}
    expected = {n for n in record["api"] if in_scope(n)} | {n for n in record["keywords"] if in_scope(n)}
    assert committed.cuda_bindings_names(version) == expected


@pytest.mark.parametrize("version", committed.TENSORRT_VERSIONS)
def test_tensorrt_version_comes_from_init_py(index, version):
    wheel = cached(index, binding_import.TENSORRT_PROJECT, version, package_index.wheel_cache_name())
    with zipfile.ZipFile(wheel) as archive:
        init = archive.read("tensorrt_bindings/__init__.py").decode()
        metadata = next(archive.read(n) for n in archive.namelist() if n.endswith(".dist-info/METADATA")).decode()
    assert f'__version__ = "{version}"' in init  # set by __init__.py, not by the .so
    assert f"\nVersion: {version}\n" in metadata


@pytest.mark.parametrize("version", committed.TENSORRT_VERSIONS)
def test_tensorrt_names_agree_with_the_binary_strings(index, version):
    """Every name of the committed list is stored in tensorrt.so (or set by __init__.py), and the names
    11.x removed are gone from its binary too: the two views agree."""
    wheel = cached(index, binding_import.TENSORRT_PROJECT, version, package_index.wheel_cache_name())
    with zipfile.ZipFile(wheel) as archive:
        so = archive.read("tensorrt_bindings/tensorrt.so")
        init = archive.read("tensorrt_bindings/__init__.py").decode()
    components = {name.split(".")[-1] for name in committed.tensorrt_api(version)}
    not_stored = sorted(c for c in components if not c.startswith("__") and not binding_import.binary_has_string(so, c))
    assert not_stored and all(re.search(rf"\b{c}\b", init) for c in not_stored), not_stored
    removed_strings = ["FP16", "platform_has_fast_fp16", "int8_calibrator", "IInt8EntropyCalibrator2", "EXPLICIT_BATCH"]
    stored = [s for s in removed_strings if binding_import.binary_has_string(so, s)]
    assert stored == (removed_strings if version.startswith("10.") else [])
    # the wrong names are not in the binary either
    assert not binding_import.binary_has_string(so, "execute_async_v4")
    assert not binding_import.binary_has_string(so, "FP17")


def test_elf_patch_on_the_real_module(index, tmp_path):
    """On the real TensorRT module: the NVIDIA libraries are dropped, the system ones kept."""
    version = committed.TENSORRT_VERSIONS[0]
    wheel = cached(index, binding_import.TENSORRT_PROJECT, version, package_index.wheel_cache_name())
    module = tmp_path / "tensorrt.so"
    with zipfile.ZipFile(wheel) as archive:
        module.write_bytes(archive.read("tensorrt_bindings/tensorrt.so"))
    dropped = binding_import.detach_elf_dependencies(module)
    assert sorted(dropped) == ["libnvinfer.so.10", "libnvinfer_plugin.so.10", "libnvonnxparser.so.10"]
    assert committed.load("tensorrt", version)["dropped_libraries"] == sorted(dropped)
    assert binding_import.detach_elf_dependencies(module) == []  # idempotent


def _documented_names(text: str) -> list[str]:
    """The names doc/driver.rst documents for pycuda.driver and pycuda.compiler, prefixed like the lists."""
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
    return documented


def test_pycuda_names_cover_its_documentation(index):
    """pycuda's doc/driver.rst documents ~365 names of pycuda.driver and pycuda.compiler; all but a
    known few (documented but not defined, or served by __getattr__) are in the committed list."""
    sdist = cached(index, pycuda_source.PROJECT, committed.PYCUDA_VERSION, "sdist.tar.gz")
    with tarfile.open(sdist, "r:gz") as archive:
        member = next(m for m in archive.getmembers() if m.name.endswith("/doc/driver.rst"))
        documented = _documented_names(archive.extractfile(member).read().decode())
    assert len(documented) > 300
    not_extracted = set(committed.missing_names(documented, committed.pycuda_names()))
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

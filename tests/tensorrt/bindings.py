"""The real API names of NVIDIA's TensorRT bindings and of the two CUDA bindings, for conformance tests.

The TensorRT code of this project cannot run here (no GPU, no TensorRT), so its tests check instead that
every ``tensorrt`` / ``pycuda`` / ``cuda-python`` name it uses exists in the releases it supports. The
names come from the packages NVIDIA and the pycuda authors publish on PyPI; each download is cached
on disk and read once per machine:

``tensorrt_names(version)``
    From the ``tensorrt-cu12-bindings`` wheel (about 1.1-1.3 MB). Its ``tensorrt_bindings/tensorrt.so``
    is a pybind11 module linked against ``libnvinfer.so.N``, ``libnvonnxparser.so.N`` and
    ``libnvinfer_plugin.so.N``, which are not here. The module's initialisation only *registers* the
    classes; it never calls into those libraries (none of the 9 TensorRT symbols it imports is called
    while importing). So a copy of the ``.so`` is patched (ELF ``.dynamic``/``.dynsym``, see
    :func:`_detach_elf_dependencies`): its ``DT_NEEDED`` entries for non-system libraries are pointed
    at ``libc.so.6`` and its undefined symbols are made weak, which makes the dynamic loader bind
    the missing TensorRT functions to NULL instead of failing. The package is then imported in a
    child interpreter (``python -I -S``, so an installed TensorRT cannot interfere) and walked with
    ``dir()``/``inspect``: this gives exactly what ``import tensorrt`` gives on a GPU machine --
    classes, methods, properties, enum members, the names ``__init__.py`` adds in Python
    (``__version__``, ``nptype``, ``volume``, ``Logger.WARNING`` ...), and the keyword names of every
    pybind11 signature. (``tensorrt/__init__.py`` of the ``tensorrt-cu12`` package is just
    ``from tensorrt_bindings import *`` plus ``__version__``; so names are given without a prefix.)

    Why not the binary's strings: pybind11 stores each name (``"create_network"``, ``"FP16"``) once,
    shared by every class that uses it, and builds the ``create_network(self: tensorrt.Builder, flags:
    int = 0) -> ...`` signatures *at run time* from ``py::arg`` names and type templates such as
    ``"({%}, {int}) -> %"``; the binary holds no ``self: tensorrt.tensorrt.Builder`` text at all.
    Strings therefore tell whether a name exists somewhere in the module (``FP16``,
    ``platform_has_fast_fp16``, ``int8_calibrator`` are absent from 11.4's binary), not on which class.
    The only class-member pairs in the binary are the symbol-table names of the docstring constants
    (``tensorrt::BuilderDoc::create_network``): about half of the members (IBuilderConfig in 10.3: 23
    of 41) and no enum member. Linkers also merge a string into the tail of a longer one (``"INT8"``
    is stored only inside ``"UINT8"``), so a plain ``strings`` listing misses names that exist.
    :func:`binary_has_string` is kept for cross-checks: every name the import finds is stored in the
    binary (as a NUL-terminated string or the tail of one), and the removed names are not.

    Needs: Linux x86_64, glibc >= 2.28, and a CPython for which NVIDIA published the wheel (10.3.0:
    3.8-3.12, 10.13.3.9.post1: 3.8-3.13, 11.4.0.106: 3.8-3.14). Elsewhere (or offline) the functions
    skip, unless the extracted names are already cached as JSON (they do not depend on the Python).
    No compiler is needed.

``pycuda_names(version)``
    PyPI has only pycuda's source distribution (about 1.7 MB), which needs CUDA to build. Its names
    are read from the Boost.Python registrations in ``src/wrapper/wrap_cudadrv.cpp`` and
    ``mempool.cpp`` (``py::class_<...>("Context")``, ``.def("push", ...)``,
    ``.DEF_SIMPLE_METHOD(pop)``, ``.add_property("handle", ...)``, ``py::def("mem_alloc", ...)``,
    ``DEF_SIMPLE_FUNCTION(...)``, ``py::enum_<...>("ctx_flags").value(...)``, ``cls.attr(...)``,
    ``py::scope().attr("HostAllocation") = wrp``, ``py::arg``/``py::args`` keyword names) and from the
    Python modules (``pycuda/driver.py``: its functions and the methods ``_add_functionality()``
    attaches, e.g. ``Function.prepare``). Names are prefixed by module: ``driver.mem_alloc``,
    ``driver.Stream.synchronize``, ``autoinit.context``. Limits: ``#if CUDAPP_CUDA_VERSION >= ...``
    branches are all taken (a name needing a newer CUDA than the build's is still listed; every name
    this project uses needs CUDA >= 7); members added by ``setattr`` with computed names (other than
    a loop over a literal list), attributes served by ``__getattr__`` (``Function.num_regs``) and the
    optional ``gl``/``curand`` parts are not listed. Checked against pycuda's own documentation: of the
    ~365 names ``doc/driver.rst`` gives for ``pycuda.driver``/``pycuda.compiler``, all are found but 7
    (3 documented yet never defined, 1 pair registered as ``py_memcpy_htoa``/``py_memcpy_atoh``, 3 served
    by ``__getattr__``).

``cuda_bindings_names(version)``
    From the ``cuda-bindings`` wheel (12.9.x: about 7.6 MB). Its Cython modules import without a GPU
    or ``libcuda`` (the driver is loaded at the first call); ``cuda.pathfinder`` (a dependency only
    used then) is replaced by a stub. Names: ``driver.cuMemAlloc``, ``driver.CUresult.CUDA_SUCCESS``,
    ``runtime.cudaMalloc``, ``nvrtc.nvrtcCreateProgram`` for ``cuda.bindings.<module>``; the old
    import paths that 12.x still ships (``from cuda import cuda``, deprecated, gone in 13.x) appear with
    their full path: ``cuda.cuda`` and ``cuda.cuda.cuMemAlloc``. Needs a CPython with a wheel for it.

Name forms (all functions): ``"Builder"`` (class or module-level name), ``"Builder.create_network"``
(method, property, nested class, enum member, class constant -- one form for all of them),
``"Builder.create_network(flags)"`` (one entry per keyword argument the call accepts; positional-only
arguments, pybind11's unnamed ``arg0`` and ``self`` are left out), ``"Builder(logger)"`` (constructor
keywords). :func:`tensorrt_api` and friends give the kind of each name (``class``, ``enum``,
``enum_member``, ``method``, ``staticmethod``, ``property``, ``readonly_property``, ``function``,
``attribute``, ``module``). Inherited members are listed on the subclass too (``IConvolutionLayer.name``).

Cache: ``$CLCA_DEPLOY_TEST_WHEELS`` or ``~/.cache/clca-deploy-test-wheels`` (``$XDG_CACHE_HOME``
honoured); the package index is ``$CLCA_DEPLOY_TEST_INDEX_URL`` or ``$PIP_INDEX_URL`` or
https://pypi.org/simple (PEP 691 JSON or PEP 503 HTML). Downloads are checked against the index's
sha256. When the index cannot be reached and nothing is cached, the functions call ``pytest.skip``;
a missing release, a bad hash or a failed extraction is an error.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import hashlib
import html
import json
import os
import platform
import re
import socket
import struct
import subprocess
import sys
import tarfile
import tempfile
import textwrap
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path
from typing import Callable, Iterable

import pytest

TENSORRT_VERSIONS = ("10.3.0", "10.13.3.9.post1", "11.4.0.106")
PYCUDA_VERSION = "2026.1"  # default of pycuda_names()
PYCUDA_VERSIONS = ("2024.1.2", "2025.1.3", "2026.1")
CUDA_BINDINGS_VERSION = "12.9.10"  # default of cuda_bindings_names(): the newest 12.x (pyproject: cuda-python<13)
CUDA_BINDINGS_VERSIONS = ("12.9.10", "13.5.0")

TIMEOUT_S = 60  # per HTTP request; a wheel is at most ~8 MB
IMPORT_TIMEOUT_S = 180
_EXTRACTOR_VERSION = 2  # bump to invalidate the cached JSON name sets

_USER_AGENT = "clca-deploy-tests (conformance name extraction)"


# --------------------------------------------------------------------------------------------------
# public interface


@functools.lru_cache(maxsize=None)
def tensorrt_names(version: str) -> frozenset[str]:
    """Every name of ``import tensorrt`` at TensorRT ``version`` (see the module docstring)."""
    return _names(_cached_record("tensorrt", version, _extract_tensorrt))


@functools.lru_cache(maxsize=None)
def pycuda_names(version: str | None = None) -> frozenset[str]:
    """Every name pycuda ``version`` registers, prefixed by module: ``driver.mem_alloc``."""
    return _names(_cached_record("pycuda", version or PYCUDA_VERSION, _extract_pycuda))


@functools.lru_cache(maxsize=None)
def cuda_bindings_names(version: str | None = None) -> frozenset[str]:
    """Every name of ``cuda.bindings.{driver,runtime,nvrtc}`` (``driver.cuInit``) and the legacy
    ``cuda.cuda``/``cuda.cudart``/``cuda.nvrtc`` modules where the release still has them."""
    return _names(_cached_record("cuda-bindings", version or CUDA_BINDINGS_VERSION, _extract_cuda_bindings))


def missing_names(used: Iterable[str], available: frozenset[str]) -> list[str]:
    """The names of ``used`` that ``available`` lacks, sorted, without repeats.

    Names are compared exactly as written (``"BuilderFlag.FP16"``, ``"Builder.create_network(flags)"``);
    a set from this module holds every owner of each member it holds.
    """
    return sorted({name for name in used if name not in available})


def tensorrt_api(version: str) -> dict[str, str]:
    """``{name: kind}`` for TensorRT ``version``; keyword entries are not included."""
    return dict(_cached_record("tensorrt", version, _extract_tensorrt)["api"])


def pycuda_api(version: str | None = None) -> dict[str, str]:
    return dict(_cached_record("pycuda", version or PYCUDA_VERSION, _extract_pycuda)["api"])


def cuda_bindings_api(version: str | None = None) -> dict[str, str]:
    return dict(_cached_record("cuda-bindings", version or CUDA_BINDINGS_VERSION, _extract_cuda_bindings)["api"])


def tensorrt_version_string(version: str) -> str:
    """``tensorrt.__version__`` as the wheel's ``__init__.py`` sets it."""
    return _cached_record("tensorrt", version, _extract_tensorrt)["module_version"]


def cache_dir() -> Path:
    explicit = os.environ.get("CLCA_DEPLOY_TEST_WHEELS")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "clca-deploy-test-wheels"


def binary_has_string(data: bytes, name: str) -> bool:
    """Whether ``name`` is stored NUL-terminated in the binary ``data`` -- alone or as the tail of a
    longer string, since linkers merge ``"INT8"`` into ``"UINT8"``. A name pybind11 registers must pass;
    passing says nothing about which class has it."""
    return name in _string_tails(data)


@functools.lru_cache(maxsize=4)
def _string_tails(data: bytes) -> frozenset[str]:
    """Every identifier that ends where a NUL-terminated string of ``data`` ends (all suffixes)."""
    tails = set()
    for run in set(re.findall(rb"(?<![A-Za-z0-9_])([A-Za-z0-9_]+)\x00", data)):
        text = run[-80:].decode("ascii")  # names are shorter than 80 characters
        tails.update(text[i:] for i in range(len(text)))
    return frozenset(tails)


def tensorrt_wheel(version: str) -> Path:
    """The cached ``tensorrt-cu12-bindings`` wheel of ``version`` for this interpreter (downloaded if needed)."""
    _require_linux(f"TensorRT {version}")
    if platform.machine().lower() != "x86_64":
        pytest.skip(f"TensorRT {version}: PyPI has tensorrt-cu12-bindings only for x86_64 Linux")
    return _download("tensorrt-cu12-bindings", version, _select_wheel, _wheel_cache_name())


# --------------------------------------------------------------------------------------------------
# caching of the extracted name sets


def _names(record: dict) -> frozenset[str]:
    return frozenset(record["api"]) | frozenset(record["keywords"])


@functools.lru_cache(maxsize=None)
def _cached_record(kind: str, version: str, extract: Callable[[str], dict]) -> dict:
    path = cache_dir() / "names" / f"{kind}-{version}-v{_EXTRACTOR_VERSION}.json"
    if path.is_file():
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            pass  # a torn write: extract again
    record = extract(version)
    record.update(kind=kind, version=version, extractor=_EXTRACTOR_VERSION)
    _write_atomically(path, json.dumps(record, indent=0, sort_keys=True).encode())
    return record


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


# --------------------------------------------------------------------------------------------------
# download


class RegistryUnreachable(Exception):
    """The package index or file host did not answer (network down, DNS, timeout, 5xx)."""


class NoMatchingFile(Exception):
    """The release exists but has no file this machine can use (other Python, other platform)."""


def _index_url() -> str:
    return (
        os.environ.get("CLCA_DEPLOY_TEST_INDEX_URL") or os.environ.get("PIP_INDEX_URL") or "https://pypi.org/simple"
    ).rstrip("/")


def _http_get(url: str, accept: str | None = None) -> tuple[bytes, str]:
    headers = {"User-Agent": _USER_AGENT}
    if accept:
        headers["Accept"] = accept
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            return response.read(), response.headers.get("Content-Type", "")
    except urllib.error.HTTPError as error:
        if error.code >= 500 or error.code in (407, 408, 429):
            raise RegistryUnreachable(f"{url}: HTTP {error.code}") from error
        raise
    except (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError) as error:
        raise RegistryUnreachable(f"{url}: {error}") from error


def _index_files(project: str) -> list[dict]:
    """``[{filename, url, sha256}]`` of ``project`` on the index (PEP 691 JSON, else PEP 503 HTML)."""
    url = f"{_index_url()}/{project}/"
    body, content_type = _http_get(
        url, accept="application/vnd.pypi.simple.v1+json, text/html;q=0.1"
    )
    if "json" in content_type:
        files = []
        for entry in json.loads(body)["files"]:
            files.append(
                {
                    "filename": entry["filename"],
                    "url": urllib.parse.urljoin(url, entry["url"]),
                    "sha256": entry.get("hashes", {}).get("sha256"),
                }
            )
        return files
    files = []
    for href, text in re.findall(r'<a\s[^>]*href="([^"]+)"[^>]*>([^<]+)</a>', body.decode("utf-8", "replace")):
        href = html.unescape(href)
        target, _, fragment = href.partition("#")
        sha = fragment[len("sha256=") :] if fragment.startswith("sha256=") else None
        files.append({"filename": text.strip(), "url": urllib.parse.urljoin(url, target), "sha256": sha})
    return files


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def _interpreter_tag() -> str:
    return f"cp{sys.version_info.major}{sys.version_info.minor}"


def _select_wheel(project: str, version: str, files: list[dict]) -> dict:
    """The Linux wheel of ``version`` that this interpreter can import."""
    prefix = f"{_normalize(project)}-{version}-"
    release = [f for f in files if f["filename"].endswith(".whl") and _normalize_wheel(f["filename"]).startswith(prefix)]
    if not release:
        raise FileNotFoundError(f"{project}=={version} has no wheel on {_index_url()}")
    machine = platform.machine().lower()
    wanted = _interpreter_tag()
    for entry in release:
        parts = entry["filename"][: -len(".whl")].split("-")
        python_tags, abi_tags, platform_tags = parts[-3].split("."), parts[-2].split("."), parts[-1].split(".")
        if wanted not in python_tags or not ({wanted, "none", "abi3"} & set(abi_tags)):
            continue
        linux = [tag for tag in platform_tags if tag.startswith(("manylinux", "linux")) and tag.endswith(machine)]
        if linux:
            needed = min(_glibc_needed(tag) for tag in linux)
            if needed > _glibc():
                raise NoMatchingFile(f"{entry['filename']} needs glibc {needed[0]}.{needed[1]}; this system has {_glibc()}")
            return entry
    tags = sorted({f["filename"].split("-")[-3] + "/" + f["filename"].split("-")[-1][:-4] for f in release})
    raise NoMatchingFile(
        f"{project}=={version} has no wheel for {wanted} on linux_{machine} (it has: {', '.join(tags)})"
    )


def _glibc_needed(tag: str) -> tuple[int, int]:
    match = re.match(r"manylinux_(\d+)_(\d+)_", tag)
    if match:
        return int(match.group(1)), int(match.group(2))
    return {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}.get(tag.rsplit("_", 2)[0], (2, 17))


def _glibc() -> tuple[int, int]:
    version = platform.libc_ver()[1] or "0.0"
    major, minor = (version.split(".") + ["0"])[:2]
    return int(major), int(re.match(r"\d+", minor).group(0))


def _normalize_wheel(filename: str) -> str:
    name, rest = filename.split("-", 1)
    return f"{_normalize(name)}-{rest}"


def _select_sdist(project: str, version: str, files: list[dict]) -> dict:
    for entry in files:
        filename = entry["filename"]
        if filename.endswith(".tar.gz") and _normalize(filename[: -len(".tar.gz")]) == _normalize(f"{project}-{version}"):
            return entry
    raise FileNotFoundError(f"{project}=={version} has no source distribution on {_index_url()}")


def _download(project: str, version: str, select: Callable[[str, str, list[dict]], dict], cache_name: str) -> Path:
    """The cached file, downloading it first if needed; ``pytest.skip`` when that cannot be done here."""
    target = cache_dir() / project / version / cache_name
    if target.is_file():
        return target
    try:
        entry = select(project, version, _index_files(project))
        data, _ = _http_get(entry["url"])
    except RegistryUnreachable as error:
        pytest.skip(f"cannot download {project}=={version} (registry unreachable, nothing cached): {error}")
    except NoMatchingFile as error:
        pytest.skip(str(error))
    if entry["sha256"] and hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise RuntimeError(f"{entry['filename']}: sha256 does not match the index")
    _write_atomically(target, data)
    (target.parent / "SOURCE").write_text(f"{entry['filename']}\n{entry['url']}\nsha256={entry['sha256']}\n")
    return target


def _wheel_cache_name() -> str:
    return f"{_interpreter_tag()}-linux_{platform.machine().lower()}.whl"


def _require_linux(what: str) -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip(f"{what}: the extraction loads Linux binaries; this is {sys.platform}")


# --------------------------------------------------------------------------------------------------
# TensorRT: patch the pybind11 module so that it loads without NVIDIA's libraries, import, walk


_SYSTEM_LIBRARIES = re.compile(
    r"^(libc|libm|libdl|librt|libpthread|libstdc\+\+|libgcc_s|libutil|ld-linux[-\w]*|libpython[\d.]+)\.so"
)


def _detach_elf_dependencies(path: Path) -> list[str]:
    """Let an x86_64/aarch64 ELF shared object load without its non-system libraries.

    Each ``DT_NEEDED`` entry naming a non-system library is pointed at the string of a system one
    (``libc.so.6``, already needed), and every undefined GLOBAL symbol of ``.dynsym`` is made WEAK:
    the loader binds a weak symbol that no loaded object defines to 0 instead of refusing the
    object. Calling such a function would crash; registration code never does. Returns the
    libraries dropped. Refuses (raises) objects whose symbol versions refer to a dropped library.
    """
    data = bytearray(path.read_bytes())
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise RuntimeError(f"{path}: not a little-endian ELF64 file")
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]

    def section_string(index: int, offset: int) -> str:
        start = sections[index][4] + offset
        return bytes(data[start : data.index(b"\0", start)]).decode()

    dropped: list[str] = []
    for _, sh_type, _, _, offset, size, link, _, _, entsize in sections:
        if sh_type != 6:  # SHT_DYNAMIC
            continue
        entries = [(offset + i * 16, *struct.unpack_from("<qQ", data, offset + i * 16)) for i in range(size // 16)]
        needed = [(at, value, section_string(link, value)) for at, tag, value in entries if tag == 1]
        kept = [value for _, value, name in needed if _SYSTEM_LIBRARIES.match(name)]
        libc = [value for _, value, name in needed if name.startswith("libc.so")]
        if not (libc or kept):
            raise RuntimeError(f"{path}: no system library among DT_NEEDED to point the others at")
        for at, _, name in needed:
            if not _SYSTEM_LIBRARIES.match(name):
                struct.pack_into("<qQ", data, at, 1, (libc or kept)[0])
                dropped.append(name)
    for _, sh_type, _, _, offset, size, link, _, _, entsize in sections:
        if sh_type == 0x6FFFFFFE:  # SHT_GNU_verneed: a version needed from a dropped library cannot load
            at = offset
            while True:
                _, _, vn_file, _, vn_next = struct.unpack_from("<HHIII", data, at)
                if section_string(link, vn_file) in dropped:
                    raise RuntimeError(f"{path}: needs symbol versions from {section_string(link, vn_file)}")
                if not vn_next:
                    break
                at += vn_next
        if sh_type == 11:  # SHT_DYNSYM
            for i in range(1, size // entsize):
                at = offset + i * entsize
                info, shndx = data[at + 4], struct.unpack_from("<H", data, at + 6)[0]
                if shndx == 0 and info >> 4 == 1:  # SHN_UNDEF, STB_GLOBAL
                    data[at + 4] = (2 << 4) | (info & 0xF)  # STB_WEAK
    path.write_bytes(bytes(data))
    return dropped


# Runs in a child interpreter: imports the given modules and prints {"api": {name: kind}, ...} as JSON.
_WALKER = r'''
import inspect, json, re, sys, types, warnings, importlib

ROOTS = json.loads(sys.argv[1])          # [[import name, prefix], ...]
sys.path[:0] = json.loads(sys.argv[2])   # where the packages lie
warnings.simplefilter("ignore")

api, keywords, versions, failed = {}, set(), {}, {}
SKIP_DUNDERS = {"__doc__", "__module__", "__dict__", "__weakref__", "__qualname__", "__annotations__",
                "__slots__", "__members__", "__entries", "__pybind11_module_local_v4__", "__firstlineno__",
                "__static_attributes__", "__dictoffset__", "__weakrefoffset__", "__basicsize__",
                "__itemsize__", "__flags__", "__mro__", "__base__", "__bases__", "__name__",
                "__text_signature__", "__abstractmethods__", "__orig_bases__", "__parameters__", "__slotnames__"}
BASES = tuple(object.__dict__) + ("__getstate__",)

def params_of(func, name):
    """Keyword names the call accepts; from inspect, else from the pybind11 docstring."""
    try:
        sig = inspect.signature(func)
    except (TypeError, ValueError):
        sig = None
    if sig is not None:
        return {p.name for p in sig.parameters.values()
                if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self"}
    doc = getattr(func, "__doc__", None) or ""
    found = set()
    for line in doc.splitlines():
        m = re.match(r"^\s*(?:\d+\.\s+)?" + re.escape(name) + r"\((.*)\)\s*(?:->.*)?$", line)
        if not m:
            continue
        names, depth, current, quote = [], 0, "", None
        for ch in m.group(1) + ",":
            if quote:
                current += ch
                if ch == quote: quote = None
            elif ch in "'\"":
                quote = ch; current += ch
            elif ch in "([{<":
                depth += 1; current += ch
            elif ch in ")]}>":
                depth -= 1; current += ch
            elif ch == "," and depth == 0:
                names.append(current.strip()); current = ""
            else:
                current += ch
        accepted = []
        for part in names:
            if part == "/":
                accepted = []          # everything before "/" is positional-only
                continue
            if part == "*" or part.startswith("*"):
                continue
            key = re.split(r"[:=]", part, 1)[0].strip()
            if re.fullmatch(r"[A-Za-z_]\w*", key) and key != "self" and not re.fullmatch(r"arg\d+", key):
                accepted.append(key)
        found.update(accepted)
    return found

def static_lookup(cls, attr):
    for klass in cls.__mro__:
        if attr in vars(klass):
            return klass, vars(klass)[attr]
    return None, None

def own(cls, modname):
    return str(getattr(cls, "__module__", "")).split(".")[0] == modname.split(".")[0]

def is_instance(value, cls):
    try:
        return isinstance(value, cls)
    except TypeError:
        return False

def walk_class(cls, prefix, seen, depth, modname):
    if not own(cls, modname):             # typing.Any, enum.IntEnum ... imported by the module
        api[prefix] = "class"
        return
    members = getattr(cls, "__members__", None)
    members = set(members) if isinstance(members, dict) else set()
    api[prefix] = "enum" if members else "class"
    init = vars(cls).get("__init__") or getattr(cls, "__init__", None)
    if init is not None and init is not object.__init__:
        for key in params_of(init, "__init__"):
            keywords.add(f"{prefix}({key})")
    if depth > 3 or cls in seen:
        return
    seen = seen | {cls}
    for attr in dir(cls):
        if attr.startswith("_") and not (attr.startswith("__") and attr.endswith("__")):
            continue
        if attr in SKIP_DUNDERS:
            continue
        owner, raw = static_lookup(cls, attr)
        if owner is object or owner is type or (attr.startswith("__") and (owner is None or owner.__module__ == "builtins"
                                                                             or owner.__name__ == "pybind11_object")):
            continue
        name = f"{prefix}.{attr}"
        try:
            value = getattr(cls, attr)
        except Exception:
            value = raw
        if attr.startswith("__") and (attr.startswith("__pybind11") or not callable(value)):
            continue                        # pybind11's internals, class-level data such as __hash__ = None
        if attr in members or (is_instance(value, cls) and not isinstance(raw, (property, staticmethod, classmethod))):
            api[name] = "enum_member"
        elif isinstance(raw, property):
            api[name] = "readonly_property" if raw.fset is None else "property"
        elif type(raw).__name__ in ("getset_descriptor", "member_descriptor"):
            api[name] = "property"
        elif isinstance(raw, (staticmethod, classmethod)):
            api[name] = "staticmethod"
            for key in params_of(value, attr): keywords.add(f"{name}({key})")
        elif isinstance(value, type):
            walk_class(value, name, seen, depth + 1, modname)
        elif callable(value):
            api[name] = "method"
            for key in params_of(value, attr): keywords.add(f"{name}({key})")
        else:
            api[name] = "attribute"

for modname, prefix in ROOTS:
    try:
        module = importlib.import_module(modname)
    except Exception as error:
        failed[modname] = repr(error)
        continue
    if prefix:
        api[prefix] = "module"
    versions[modname] = getattr(module, "__version__", None)
    dot = prefix + "." if prefix else ""
    for attr in dir(module):
        if attr.startswith("_") and attr != "__version__":
            continue
        value = getattr(module, attr)
        name = dot + attr
        if isinstance(value, types.ModuleType):
            continue                        # ctypes, os, sys ... imported by __init__.py
        if isinstance(value, type):
            walk_class(value, name, frozenset(), 0, modname)
        elif callable(value):
            api[name] = "function"
            for key in params_of(value, attr): keywords.add(f"{name}({key})")
        else:
            api[name] = "attribute"
print(json.dumps({"api": api, "keywords": sorted(keywords), "versions": versions, "failed": failed}))
'''


def _run_walker(roots: list[tuple[str, str]], paths: list[str], env: dict[str, str] | None = None) -> dict:
    child_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8", "PYTHONHASHSEED": "0"}
    child_env.update(env or {})
    command = [sys.executable, "-I", "-S", "-c", _WALKER, json.dumps(roots), json.dumps(paths)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=IMPORT_TIMEOUT_S, env=child_env)
    if result.returncode != 0:
        raise RuntimeError(
            f"importing {[r[0] for r in roots]} failed (exit {result.returncode}):\n{result.stderr[-4000:]}"
        )
    return json.loads(result.stdout)


def _extract_tensorrt(version: str) -> dict:
    wheel = tensorrt_wheel(version)
    with tempfile.TemporaryDirectory(prefix="clca-trt-names-") as tmp:
        with zipfile.ZipFile(wheel) as archive:
            members = [m for m in archive.namelist() if m.startswith("tensorrt_bindings/")]
            archive.extractall(tmp, members)
        package = Path(tmp) / "tensorrt_bindings"
        modules = sorted(package.glob("tensorrt*.so"))
        if not modules:
            raise RuntimeError(f"{wheel}: no tensorrt_bindings/tensorrt*.so")
        dropped = []
        for module in modules:
            dropped += _detach_elf_dependencies(module)
        walked = _run_walker([("tensorrt_bindings", "")], [tmp])
    if walked["failed"]:
        raise RuntimeError(f"{wheel}: could not import the patched module: {walked['failed']}")
    module_version = walked["versions"]["tensorrt_bindings"]
    if module_version != version:
        raise RuntimeError(f"{wheel}: __version__ is {module_version!r}, expected {version!r}")
    return {
        "api": walked["api"],
        "keywords": walked["keywords"],
        "module_version": module_version,
        "source": wheel.name,
        "dropped_libraries": sorted(set(dropped)),
    }


# --------------------------------------------------------------------------------------------------
# cuda-bindings: the Cython modules import without libcuda


_PATHFINDER_STUB = textwrap.dedent(
    '''
    """Stand-in for cuda-pathfinder: used by cuda.bindings only to find libraries at the first call."""
    def __getattr__(name):
        if name.startswith("__"):
            raise AttributeError(name)
        return type(name, (Exception,), {})
    '''
)


def _extract_cuda_bindings(version: str) -> dict:
    _require_linux(f"cuda-bindings {version}")
    wheel = _download("cuda-bindings", version, _select_wheel, _wheel_cache_name())
    with tempfile.TemporaryDirectory(prefix="clca-cuda-names-") as tmp:
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(Path(tmp) / "wheel", [m for m in archive.namelist() if m.startswith("cuda/")])
        stub = Path(tmp) / "stub" / "cuda" / "pathfinder"
        stub.mkdir(parents=True)
        (stub / "__init__.py").write_text(_PATHFINDER_STUB)
        legacy = [
            (f"cuda.{name}", f"cuda.{name}")
            for name in ("cuda", "cudart", "nvrtc")
            if list((Path(tmp) / "wheel" / "cuda").glob(f"{name}.*"))
        ]
        roots = [("cuda.bindings", ""), *[(f"cuda.bindings.{m}", m) for m in ("driver", "runtime", "nvrtc")], *legacy]
        walked = _run_walker(roots, [str(Path(tmp) / "wheel"), str(Path(tmp) / "stub")])
    if walked["failed"]:
        raise RuntimeError(f"{wheel}: could not import {walked['failed']}")
    api = walked["api"]
    module_version = walked["versions"]["cuda.bindings"]
    if module_version != version:
        raise RuntimeError(f"{wheel}: cuda.bindings.__version__ is {module_version!r}, expected {version!r}")
    return {"api": api, "keywords": walked["keywords"], "module_version": module_version, "source": wheel.name}


# --------------------------------------------------------------------------------------------------
# pycuda: Boost.Python registrations in the C++ sources, plus the Python modules


def _extract_pycuda(version: str) -> dict:
    sdist = _download("pycuda", version, _select_sdist, "sdist.tar.gz")
    sources: dict[str, str] = {}
    with tarfile.open(sdist, "r:gz") as archive:
        for member in archive.getmembers():
            parts = member.name.split("/", 1)
            if len(parts) != 2 or not member.isfile():
                continue
            relative = parts[1]
            if relative in ("src/wrapper/wrap_cudadrv.cpp", "src/wrapper/mempool.cpp", "pycuda/__init__.py") or (
                re.fullmatch(r"pycuda/[A-Za-z]\w*\.py", relative)
            ):
                sources[relative] = archive.extractfile(member).read().decode("utf-8", "replace")
    if "src/wrapper/wrap_cudadrv.cpp" not in sources or "pycuda/driver.py" not in sources:
        raise RuntimeError(f"{sdist}: no src/wrapper/wrap_cudadrv.cpp or pycuda/driver.py")
    api: dict[str, str] = {}
    keywords: set[str] = set()
    cpp = [sources[p] for p in ("src/wrapper/wrap_cudadrv.cpp", "src/wrapper/mempool.cpp") if p in sources]
    _parse_boost_python(cpp, "driver", api, keywords)
    for relative, text in sorted(sources.items()):
        if relative.endswith(".py") and not relative.endswith("__init__.py"):
            module = relative[len("pycuda/") : -len(".py")]
            _parse_python_module(text, module, api, keywords)
    module_version = _pycuda_version(sources.get("pycuda/__init__.py", ""))
    if module_version != version:
        raise RuntimeError(f"{sdist}: pycuda.VERSION_TEXT is {module_version!r}, expected {version!r}")
    return {"api": api, "keywords": sorted(keywords), "module_version": module_version, "source": f"pycuda-{version}.tar.gz"}


def _pycuda_version(init_text: str) -> str | None:
    """``pycuda.VERSION_TEXT``, from ``VERSION = (2026, 1)`` and ``VERSION_STATUS = ""``."""
    values = {}
    for node in ast.parse(init_text).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            with contextlib.suppress(ValueError):
                values[node.targets[0].id] = ast.literal_eval(node.value)
    if "VERSION" not in values:
        return None
    return ".".join(str(x) for x in values["VERSION"]) + str(values.get("VERSION_STATUS", ""))


_STRING = r'"((?:\\.|[^"\\])*)"'


def _strip_cpp(text: str) -> str:
    """Comments removed, object-like macros expanded, other preprocessor lines dropped (all #if branches kept)."""
    text = re.sub(
        r'//[^\n]*|/\*.*?\*/|("(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\')',
        lambda m: m.group(1) or (" " if m.group(0).startswith("/*") else ""),
        text,
        flags=re.S,
    )
    text = text.replace("\\\n", " ")  # join continuation lines
    macros: dict[str, list[str]] = {}
    kept = []
    for line in text.split("\n"):
        stripped = line.strip()
        if stripped.startswith("#"):
            match = re.match(r"#\s*define\s+(\w+)\b(?!\()\s*(.*)", stripped)
            if match and match.group(1).isupper():
                macros.setdefault(match.group(1), [])
                if match.group(2).strip() and match.group(2) not in macros[match.group(1)]:
                    macros[match.group(1)].append(match.group(2))
            continue
        kept.append(line)
    text = "\n".join(kept)
    for _ in range(3):  # macros using macros
        for name, bodies in macros.items():
            if re.search(r"\b%s\b" % name, text) and not re.search(r"\b%s\s*\(" % name, text):
                text = re.sub(r"\b%s\b" % name, lambda _m: " ".join(bodies), text)
    # pycuda's function-like registration macros (src/wrapper/wrap_helpers.hpp)
    text = re.sub(r"\bDEF_SIMPLE_METHOD(?:_WITH_ARGS)?\s*\(\s*(\w+)", r'def("\1"', text)
    text = re.sub(r"\bDEF_SIMPLE_FUNCTION(?:_WITH_ARGS)?\s*\(\s*(\w+)", r'py::def("\1"', text)
    text = re.sub(r"\bDEF_SIMPLE_RO_MEMBER\s*\(\s*(\w+)", r'def_readonly("\1"', text)
    text = re.sub(r"\bDEF_SIMPLE_RW_MEMBER\s*\(\s*(\w+)", r'def_readwrite("\1"', text)
    text = re.sub(r"\bENUM_VALUE\s*\(\s*(\w+)", r'value("\1"', text)
    text = re.sub(r"\bDECLARE_EXC\s*\(\s*(\w+)\s*,[^;]*?\)\s*;", r'py::scope().attr("\1") = EXCEPTION;', text)
    return text


def _matching(text: str, start: int, open_: str = "(", close: str = ")") -> int:
    """Index just past the bracket that closes the one at ``start``."""
    depth, i, quote = 0, start, None
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = None
        elif ch == '"':
            quote = ch
        elif ch == open_:
            depth += 1
        elif ch == close:
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    raise ValueError(f"unbalanced {open_!r} at {start}")


def _statements(text: str) -> list[str]:
    """Split at ``;``, ``{`` and ``}`` outside parentheses and strings."""
    out, depth, quote, current = [], 0, None, []
    i = 0
    while i < len(text):
        ch = text[i]
        current.append(ch)
        if quote:
            if ch == "\\" and i + 1 < len(text):
                current.append(text[i + 1])
                i += 1
            elif ch == quote:
                quote = None
        elif ch == '"':
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch in ";{}" and depth == 0:
            out.append("".join(current[:-1]).strip())
            current = []
        i += 1
    out.append("".join(current).strip())
    return [s for s in out if s]


def _call_keywords(arguments: str) -> list[str]:
    names = re.findall(r"\barg\s*\(\s*" + _STRING, arguments)
    for group in re.findall(r"\bargs\s*\(([^()]*)\)", arguments):
        names += re.findall(_STRING, group)
    return [n for n in names if n != "self"]


def _chain_calls(statement: str) -> list[tuple[str, str]]:
    """``[(method, argument text)]`` of the ``.name(...)`` calls of a registration chain."""
    calls = []
    for match in re.finditer(r"\.\s*(\w+)\s*\(", statement):
        end = _matching(statement, match.end() - 1)
        calls.append((match.group(1), statement[match.end() : end - 1]))
    return calls


def _register_chain(owner: str, calls: list[tuple[str, str]], api: dict, keywords: set) -> None:
    for method, arguments in calls:
        first = re.match(r"\s*" + _STRING, arguments)
        name = first.group(1) if first else None
        operator = re.fullmatch(r"\s*(?:py::|boost::python::)?self\s*(==|!=|<=|>=|<|>)\s*(?:py::|boost::python::)?self\s*", arguments)
        if method == "def" and operator:
            name = {"==": "__eq__", "!=": "__ne__", "<": "__lt__", "<=": "__le__", ">": "__gt__", ">=": "__ge__"}[operator.group(1)]
        if method == "def" and name:
            member = f"{owner}.{name}"
            api.setdefault(member, "method")
            if name == "__init__":
                keywords.update(f"{owner}({k})" for k in _call_keywords(arguments))
            else:
                keywords.update(f"{member}({k})" for k in _call_keywords(arguments))
        elif method == "def" and re.match(r"\s*(?:py::|boost::python::)?init\s*<", arguments):
            keywords.update(f"{owner}({k})" for k in _call_keywords(arguments))
        elif method == "staticmethod" and name:
            api[f"{owner}.{name}"] = "staticmethod"
        elif method in ("add_property", "add_static_property", "def_readwrite") and name:
            api[f"{owner}.{name}"] = "property"
        elif method == "def_readonly" and name:
            api[f"{owner}.{name}"] = "readonly_property"
        elif method == "value" and name:
            api[f"{owner}.{name}"] = "enum_member"
        elif method == "attr" and name:
            api[f"{owner}.{name}"] = "attribute"


def _parse_boost_python(texts: list[str], module: str, api: dict, keywords: set) -> None:
    """Names registered by Boost.Python code (pycuda's style of it), into ``api`` as ``module.Name``."""
    cpp_classes: dict[str, str] = {}  # C++ type -> Python class, for py::bases<...>
    inherits: list[tuple[str, str]] = []
    aliases: list[tuple[str, str]] = []
    for text in texts:
        text = _strip_cpp(text)
        # helper templates that add members to the wrapper they get: void expose_x(W &wrapper) { wrapper.def(...); }
        helpers: dict[str, list[tuple[str, str]]] = {}
        for match in re.finditer(r"\b(\w+)\s*\(\s*\w+\s*&\s*(\w+)\s*\)\s*\{", text):
            body = text[match.end() - 1 : _matching(text, match.end() - 1, "{", "}")]
            calls = []
            for statement in _statements(body[1:-1]):
                if re.match(r"%s\b" % match.group(2), statement):
                    calls += _chain_calls(statement)
            if calls:
                helpers[match.group(1)] = calls
        variables: dict[str, str] = {}
        typedef = None
        for statement in _statements(text):
            alias = re.match(r"typedef\s+(.+?)\s+cl$", statement, re.S)
            if alias:
                typedef = re.sub(r"\s+", "", alias.group(1))
                continue
            klass = re.search(r"\bclass_\s*<", statement)
            if klass:
                after = _matching(statement, klass.end() - 1, "<", ">")
                rest = statement[after:]
                named = re.match(r"\s*(\w+)?\s*\(\s*" + _STRING, rest)
                if not named:
                    continue
                owner = f"{module}.{named.group(2)}"
                api[owner] = "class"
                template = statement[klass.end() : after - 1]
                wrapped = re.sub(r"\s+", "", template.split(",")[0])
                cpp_classes[typedef if wrapped == "cl" and typedef else wrapped] = owner
                for base in re.findall(r"\bbases\s*<\s*([\w:]+)\s*>", template):
                    inherits.append((owner, base))
                if named.group(1):
                    variables[named.group(1)] = owner
                open_at = after + rest.index("(")
                close_at = _matching(statement, open_at)
                keywords.update(f"{owner}({k})" for k in _call_keywords(statement[open_at:close_at]))
                _register_chain(owner, _chain_calls(statement[close_at:]), api, keywords)
                continue
            enum = re.search(r"\benum_\s*<", statement)
            if enum:
                after = _matching(statement, enum.end() - 1, "<", ">")
                named = re.match(r"\s*\(\s*" + _STRING, statement[after:])
                if named:
                    owner = f"{module}.{named.group(1)}"
                    api[owner] = "enum"
                    _register_chain(owner, _chain_calls(statement[after + statement[after:].index(")") + 1 :]), api, keywords)
                continue
            function = re.match(r"(?:py::|boost::python::)?def\s*\(\s*" + _STRING, statement)
            if function:
                name = f"{module}.{function.group(1)}"
                api[name] = "function"
                keywords.update(f"{name}({k})" for k in _call_keywords(statement))
                continue
            scope = re.match(r"(?:py::|boost::python::)?scope\s*\(\s*\)\s*\.\s*attr\s*\(\s*" + _STRING + r"\s*\)\s*=\s*(\w+)", statement)
            if scope:
                name, value = f"{module}.{scope.group(1)}", scope.group(2)
                if value in variables:  # an alias of a class: HostAllocation = PagelockedHostAllocation
                    api[name] = "class"
                    aliases.append((name, variables[value]))
                else:
                    api[name] = "exception" if value == "EXCEPTION" else "attribute"
                continue
            chained = re.match(r"(\w+)\s*\.", statement)
            if chained and chained.group(1) in variables:
                _register_chain(variables[chained.group(1)], _chain_calls(statement[len(chained.group(1)) :]), api, keywords)
                continue
            helper = re.match(r"(\w+)\s*\(\s*(\w+)\s*\)$", statement)
            if helper and helper.group(1) in helpers and helper.group(2) in variables:
                _register_chain(variables[helper.group(2)], helpers[helper.group(1)], api, keywords)
    for owner, base in inherits:  # pycuda's hierarchy is shallow and declared bases-first
        if base in cpp_classes:
            _copy_members(cpp_classes[base], owner, api, keywords, constructor=False)
    for name, source in aliases:
        _copy_members(source, name, api, keywords, constructor=True)


def _copy_members(source: str, target: str, api: dict, keywords: set, constructor: bool) -> None:
    """``source``'s members (and their keywords) onto ``target``; its constructor keywords too for an alias."""
    for key, kind in list(api.items()):
        if key.startswith(source + "."):
            api.setdefault(target + key[len(source) :], kind)
    prefixes = (source + ".", source + "(") if constructor else (source + ".",)
    for key in list(keywords):
        if key.startswith(prefixes):
            keywords.add(target + key[len(source) :])


def _parse_python_module(text: str, module: str, api: dict, keywords: set) -> None:
    """Top-level functions, classes (with their methods/attributes) and assignments of a module, and
    ``Class.attr = ...`` assignments anywhere (pycuda's ``_add_functionality()``)."""
    tree = ast.parse(text)
    classes = {name.split(".", 1)[1] for name, kind in api.items() if kind == "class" and name.startswith(module + ".")}

    def function_keywords(node: ast.FunctionDef | ast.AsyncFunctionDef, owner: str, method: bool) -> None:
        arguments = node.args
        names = [a.arg for a in arguments.args] + [a.arg for a in arguments.kwonlyargs]
        if method and names and arguments.args and names[0] in ("self", "cls") and not _is_static(node):
            names = names[1:]
        keywords.update(f"{owner}({n})" for n in names if n != "self")

    def public(name: str) -> bool:
        return not name.startswith("_") or (name.startswith("__") and name.endswith("__"))

    api[module] = "module"
    for node in tree.body:
        for statement in _flatten_toplevel(node):
            if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef)) and public(statement.name):
                name = f"{module}.{statement.name}"
                api[name] = "function"
                function_keywords(statement, name, method=False)
            elif isinstance(statement, ast.ClassDef) and public(statement.name):
                owner = f"{module}.{statement.name}"
                api[owner] = "class"
                classes.add(statement.name)
                for base in statement.bases:  # members inherited from a class of the same module
                    if isinstance(base, ast.Name) and f"{module}.{base.id}" in api:
                        _copy_members(f"{module}.{base.id}", owner, api, keywords, constructor=False)
                for item in statement.body:
                    if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                        if item.name == "__init__":
                            function_keywords(item, owner, method=True)
                            for node in ast.walk(item):  # instance attributes: self.stdout = ...
                                if isinstance(node, (ast.Assign, ast.AnnAssign)):
                                    for target in _targets(node):
                                        if (
                                            isinstance(target, ast.Attribute)
                                            and isinstance(target.value, ast.Name)
                                            and target.value.id == "self"
                                            and public(target.attr)
                                        ):
                                            api.setdefault(f"{owner}.{target.attr}", "attribute")
                        elif public(item.name):
                            kind = "property" if any(_decorator_name(d) == "property" for d in item.decorator_list) else "method"
                            api[f"{owner}.{item.name}"] = kind
                            function_keywords(item, f"{owner}.{item.name}", method=True)
                    elif isinstance(item, (ast.Assign, ast.AnnAssign)):
                        for target in _targets(item):
                            if isinstance(target, ast.Name) and public(target.id):
                                api[f"{owner}.{target.id}"] = "attribute"
            elif isinstance(statement, (ast.Assign, ast.AnnAssign)):
                for target in _targets(statement):
                    if isinstance(target, ast.Name) and public(target.id) and target.id not in ("__copyright__", "__license__"):
                        api.setdefault(f"{module}.{target.id}", "attribute")
            elif isinstance(statement, ast.ImportFrom) and (statement.module or "").startswith("pycuda"):
                for alias in statement.names:  # re-exports of pycuda names (not `import *`, not third-party)
                    if alias.name != "*" and public(alias.asname or alias.name):
                        api.setdefault(f"{module}.{alias.asname or alias.name}", "attribute")
    for node in ast.walk(tree):
        # for name in ["a", "b"]: setattr(Class, name, ...)
        if (
            isinstance(node, ast.For)
            and isinstance(node.target, ast.Name)
            and isinstance(node.iter, (ast.List, ast.Tuple))
            and all(isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.iter.elts)
        ):
            for call in ast.walk(node):
                if (
                    isinstance(call, ast.Call)
                    and isinstance(call.func, ast.Name)
                    and call.func.id == "setattr"
                    and len(call.args) >= 2
                    and isinstance(call.args[0], ast.Name)
                    and call.args[0].id in classes
                    and isinstance(call.args[1], ast.Name)
                    and call.args[1].id == node.target.id
                ):
                    for element in node.iter.elts:
                        if public(element.value):
                            api.setdefault(f"{module}.{call.args[0].id}.{element.value}", "method")
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if (
                    isinstance(target, ast.Attribute)
                    and isinstance(target.value, ast.Name)
                    and target.value.id in classes
                    and public(target.attr)
                ):
                    api.setdefault(f"{module}.{target.value.id}.{target.attr}", "method")


def _flatten_toplevel(node: ast.stmt) -> list[ast.stmt]:
    """A top-level statement, or the statements inside a top-level ``try``/``if`` (both branches)."""
    if isinstance(node, ast.Try):
        out = []
        for block in (node.body, node.orelse, node.finalbody, *[h.body for h in node.handlers]):
            for inner in block:
                out += _flatten_toplevel(inner)
        return out
    if isinstance(node, ast.If):
        return [s for inner in node.body + node.orelse for s in _flatten_toplevel(inner)]
    return [node]


def _targets(node: ast.Assign | ast.AnnAssign) -> list[ast.expr]:
    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
    out = []
    for target in targets:
        out += list(target.elts) if isinstance(target, ast.Tuple) else [target]
    return out


def _decorator_name(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return ""


def _is_static(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    return any(_decorator_name(d) == "staticmethod" for d in node.decorator_list)

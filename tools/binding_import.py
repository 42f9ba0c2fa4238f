"""The names of NVIDIA's compiled bindings, read by importing them without their libraries or a GPU.

TensorRT's pybind11 module is patched (:func:`detach_elf_dependencies`) so that it loads without
``libnvinfer``; cuda-bindings' Cython modules load as they are (the driver is opened at the first call).
Either package is then imported in a child interpreter and walked by tools/binding_walker.py. The
reasons and limits are in tools/binding_names.py's docstring.
"""

from __future__ import annotations

import functools
import json
import os
import re
import struct
import subprocess
import sys
import tempfile
import textwrap
import zipfile
from pathlib import Path

from tools.package_index import Index, download, require_linux, select_wheel, source_of, wheel_cache_name

IMPORT_TIMEOUT_S = 180
WALKER = Path(__file__).with_name("binding_walker.py")
TENSORRT_PROJECT = "tensorrt-cu12-bindings"
CUDA_BINDINGS_PROJECT = "cuda-bindings"

_SYSTEM_LIBRARIES = re.compile(
    r"^(libc|libm|libdl|librt|libpthread|libstdc\+\+|libgcc_s|libutil|ld-linux[-\w]*|libpython[\d.]+)\.so"
)


def tensorrt_wheel(index: Index, version: str) -> Path:
    """The cached ``tensorrt-cu12-bindings`` wheel of ``version`` for this interpreter (downloaded if needed)."""
    require_linux(f"TensorRT {version}", x86_64=True)
    return download(index, TENSORRT_PROJECT, version, select_wheel, wheel_cache_name())


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


# --------------------------------------------------------------------------------------------------
# ELF: let the pybind11 module load without NVIDIA's libraries


def _elf_sections(data: bytearray, path: Path) -> list[tuple]:
    """The section headers ``(name, type, flags, addr, offset, size, link, info, addralign, entsize)``."""
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise RuntimeError(f"{path}: not a little-endian ELF64 file")
    (shoff,) = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    return [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]


def _section_string(data: bytearray, sections: list[tuple], index: int, offset: int) -> str:
    start = sections[index][4] + offset
    return bytes(data[start : data.index(b"\0", start)]).decode()


def _drop_needed(data: bytearray, sections: list[tuple], path: Path) -> list[str]:
    """Point each non-system ``DT_NEEDED`` entry at a system library's name; the names dropped."""
    dropped: list[str] = []
    for _, sh_type, _, _, offset, size, link, _, _, _ in sections:
        if sh_type != 6:  # SHT_DYNAMIC
            continue
        entries = [(offset + i * 16, *struct.unpack_from("<qQ", data, offset + i * 16)) for i in range(size // 16)]
        needed = [(at, value, _section_string(data, sections, link, value)) for at, tag, value in entries if tag == 1]
        kept = [value for _, value, name in needed if _SYSTEM_LIBRARIES.match(name)]
        libc = [value for _, value, name in needed if name.startswith("libc.so")]
        if not (libc or kept):
            raise RuntimeError(f"{path}: no system library among DT_NEEDED to point the others at")
        for at, _, name in needed:
            if not _SYSTEM_LIBRARIES.match(name):
                struct.pack_into("<qQ", data, at, 1, (libc or kept)[0])
                dropped.append(name)
    return dropped


def _weaken_undefined(data: bytearray, sections: list[tuple], dropped: list[str], path: Path) -> None:
    """Make every undefined GLOBAL symbol WEAK; refuse symbol versions needed from a dropped library."""
    for _, sh_type, _, _, offset, size, link, _, _, entsize in sections:
        if sh_type == 0x6FFFFFFE:  # SHT_GNU_verneed: a version needed from a dropped library cannot load
            at = offset
            while True:
                _, _, vn_file, _, vn_next = struct.unpack_from("<HHIII", data, at)
                library = _section_string(data, sections, link, vn_file)
                if library in dropped:
                    raise RuntimeError(f"{path}: needs symbol versions from {library}")
                if not vn_next:
                    break
                at += vn_next
        if sh_type == 11:  # SHT_DYNSYM
            for i in range(1, size // entsize):
                at = offset + i * entsize
                info, shndx = data[at + 4], struct.unpack_from("<H", data, at + 6)[0]
                if shndx == 0 and info >> 4 == 1:  # SHN_UNDEF, STB_GLOBAL
                    data[at + 4] = (2 << 4) | (info & 0xF)  # STB_WEAK


def detach_elf_dependencies(path: Path) -> list[str]:
    """Let an x86_64/aarch64 ELF shared object load without its non-system libraries.

    Each ``DT_NEEDED`` entry naming a non-system library is pointed at the string of a system one
    (``libc.so.6``, already needed), and every undefined GLOBAL symbol of ``.dynsym`` is made WEAK:
    the loader binds a weak symbol that no loaded object defines to 0 instead of refusing the
    object. Calling such a function would crash; registration code never does. Returns the
    libraries dropped. Refuses (raises) objects whose symbol versions refer to a dropped library.
    """
    data = bytearray(path.read_bytes())
    sections = _elf_sections(data, path)
    dropped = _drop_needed(data, sections, path)
    _weaken_undefined(data, sections, dropped, path)
    path.write_bytes(bytes(data))
    return dropped


# --------------------------------------------------------------------------------------------------
# import and walk


def run_walker(roots: list[tuple[str, str]], paths: list[str], env: dict[str, str] | None = None) -> dict:
    """tools/binding_walker.py's JSON for ``roots`` (``[(import name, prefix)]``) found under ``paths``."""
    child_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8", "PYTHONHASHSEED": "0"}
    child_env.update(env or {})
    command = [sys.executable, "-I", "-S", str(WALKER), json.dumps(roots), json.dumps(paths)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=IMPORT_TIMEOUT_S, env=child_env)
    if result.returncode != 0:
        raise RuntimeError(f"importing {[r[0] for r in roots]} failed (exit {result.returncode}):\n{result.stderr[-4000:]}")
    return json.loads(result.stdout)


def extract_tensorrt(index: Index, version: str) -> dict:
    """The record of ``import tensorrt`` at ``version``: the wheel's module patched, imported, walked."""
    wheel = tensorrt_wheel(index, version)
    with tempfile.TemporaryDirectory(prefix="clca-trt-names-") as tmp:
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(tmp, [m for m in archive.namelist() if m.startswith("tensorrt_bindings/")])
        modules = sorted((Path(tmp) / "tensorrt_bindings").glob("tensorrt*.so"))
        if not modules:
            raise RuntimeError(f"{wheel}: no tensorrt_bindings/tensorrt*.so")
        dropped = [name for module in modules for name in detach_elf_dependencies(module)]
        walked = run_walker([("tensorrt_bindings", "")], [tmp])
    if walked["failed"]:
        raise RuntimeError(f"{wheel}: could not import the patched module: {walked['failed']}")
    module_version = walked["versions"]["tensorrt_bindings"]
    if module_version != version:
        raise RuntimeError(f"{wheel}: __version__ is {module_version!r}, expected {version!r}")
    return {
        "api": walked["api"],
        "keywords": walked["keywords"],
        "module_version": module_version,
        "source": {"package": TENSORRT_PROJECT, **source_of(wheel)},
        "dropped_libraries": sorted(set(dropped)),
    }


_PATHFINDER_STUB = textwrap.dedent(
    '''
    """Stand-in for cuda-pathfinder: used by cuda.bindings only to find libraries at the first call."""
    def __getattr__(name):
        if name.startswith("__"):
            raise AttributeError(name)
        return type(name, (Exception,), {})
    '''
)


def extract_cuda_bindings(index: Index, version: str) -> dict:
    """The record of ``cuda.bindings.{driver,runtime,nvrtc}`` and the legacy ``cuda.*`` modules at ``version``."""
    require_linux(f"cuda-bindings {version}")
    wheel = download(index, CUDA_BINDINGS_PROJECT, version, select_wheel, wheel_cache_name())
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
        walked = run_walker(roots, [str(Path(tmp) / "wheel"), str(Path(tmp) / "stub")])
    if walked["failed"]:
        raise RuntimeError(f"{wheel}: could not import {walked['failed']}")
    module_version = walked["versions"]["cuda.bindings"]
    if module_version != version:
        raise RuntimeError(f"{wheel}: cuda.bindings.__version__ is {module_version!r}, expected {version!r}")
    return {
        "api": walked["api"],
        "keywords": walked["keywords"],
        "module_version": module_version,
        "source": {"package": CUDA_BINDINGS_PROJECT, **source_of(wheel)},
    }

"""The real API names of NVIDIA's TensorRT bindings and of the two CUDA bindings, for conformance tests.

The JSON files beside this module are written by ``python tools/binding_names.py`` from the packages
published on PyPI (``tensorrt-cu12-bindings`` wheels, pycuda's sdist, ``cuda-bindings`` wheels); how
the names are extracted, and what each list covers, is in that script's docstring and in each file's
header. Here they are only read: no network, no download, the same everywhere (CI included).

Name forms: ``"Builder"``, ``"Builder.create_network"`` (method, property, nested class, enum member
-- one form for all), ``"Builder.create_network(flags)"`` (one entry per keyword the call accepts),
``"Builder(logger)"`` (constructor keywords). pycuda's names are prefixed by module
(``driver.mem_alloc``), cuda-bindings' too (``driver.cuMemAlloc``; the legacy path as
``cuda.cuda.cuMemAlloc``). For cuda-bindings only ``cuda.bindings.driver`` and ``cuda.cuda`` are
listed with their members (of runtime, nvrtc, cuda.cudart, cuda.nvrtc only the module itself).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Iterable

HERE = Path(__file__).resolve().parent

TENSORRT_VERSIONS = ("10.3.0", "10.13.3.9.post1", "11.4.0.106")
PYCUDA_VERSION = "2026.1"  # default of pycuda_names()
PYCUDA_VERSIONS = ("2024.1.2", "2025.1.3", "2026.1")
CUDA_BINDINGS_VERSION = "12.9.10"  # default of cuda_bindings_names(): the newest 12.x (pyproject: cuda-python<13)
CUDA_BINDINGS_VERSIONS = ("12.9.10", "13.5.0")


@functools.lru_cache(maxsize=None)
def load(library: str, version: str) -> dict:
    """The committed list of ``library`` (tensorrt, pycuda, cuda-bindings) at ``version``, aliases expanded."""
    path = HERE / f"{library}-{version}.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: python tools/binding_names.py {library}=={version} writes it")
    document = json.loads(path.read_text())
    api, keywords = dict(document["api"]), list(document["keywords"])
    for alias, target in document.get("aliases", {}).items():  # cuda.cuda has exactly driver's names
        for name, kind in document["api"].items():
            if name.startswith(target + "."):
                api[alias + name[len(target) :]] = kind
        keywords += [alias + n[len(target) :] for n in document["keywords"] if n.startswith((target + ".", target + "("))]
    return {**document, "api": api, "keywords": keywords}


def _names(library: str, version: str) -> frozenset[str]:
    document = load(library, version)
    return frozenset(document["api"]) | frozenset(document["keywords"])


@functools.lru_cache(maxsize=None)
def tensorrt_names(version: str) -> frozenset[str]:
    """Every name of ``import tensorrt`` at TensorRT ``version``, keyword entries included."""
    return _names("tensorrt", version)


@functools.lru_cache(maxsize=None)
def pycuda_names(version: str | None = None) -> frozenset[str]:
    """Every name pycuda ``version`` registers, prefixed by module: ``driver.mem_alloc``."""
    return _names("pycuda", version or PYCUDA_VERSION)


@functools.lru_cache(maxsize=None)
def cuda_bindings_names(version: str | None = None) -> frozenset[str]:
    """Every name of ``cuda.bindings.driver`` (``driver.cuInit``) and of the legacy ``cuda.cuda`` where the
    release still has it, with the module names of the other modules (``runtime``, ``cuda.cudart`` ...)."""
    return _names("cuda-bindings", version or CUDA_BINDINGS_VERSION)


def missing_names(used: Iterable[str], available: frozenset[str]) -> list[str]:
    """The names of ``used`` that ``available`` lacks, sorted, without repeats.

    Names are compared exactly as written (``"BuilderFlag.FP16"``, ``"Builder.create_network(flags)"``);
    a set from this module holds every owner of each member it holds.
    """
    return sorted({name for name in used if name not in available})


def tensorrt_api(version: str) -> dict[str, str]:
    """``{name: kind}`` for TensorRT ``version``; keyword entries are not included."""
    return dict(load("tensorrt", version)["api"])


def pycuda_api(version: str | None = None) -> dict[str, str]:
    return dict(load("pycuda", version or PYCUDA_VERSION)["api"])


def cuda_bindings_api(version: str | None = None) -> dict[str, str]:
    return dict(load("cuda-bindings", version or CUDA_BINDINGS_VERSION)["api"])


def tensorrt_version_string(version: str) -> str:
    """``tensorrt.__version__`` as the wheel's ``__init__.py`` sets it."""
    return load("tensorrt", version)["module_version"]

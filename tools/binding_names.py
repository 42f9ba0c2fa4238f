"""Writes the real API names of NVIDIA's TensorRT bindings and of the two CUDA bindings, for the conformance tests.

    python tools/binding_names.py                      # regenerate every committed list
    python tools/binding_names.py tensorrt==11.5.0     # one release (a new one: add it to RELEASES too)
    python tools/binding_names.py --check              # compare instead of writing; exit 1 on a difference

The TensorRT code of this project cannot run on its development machines (no GPU, no TensorRT), so its
tests check instead that every ``tensorrt`` / ``pycuda`` / ``cuda-python`` name it uses exists in the
releases it supports (tests/tensorrt/test_binding_conformance.py). Those names come from the packages
NVIDIA and the pycuda authors publish on PyPI: this script downloads them (cached on disk, checked by
sha256), extracts the names and writes one committed JSON file per library and release,
``tests/tensorrt/binding_names/<library>-<version>.json``, which the tests read with no network
(tests/tensorrt/binding_names/__init__.py). Each file starts with a header (the script, the package file
and its sha256, what the list covers), then ``api`` (``{name: kind}``) and ``keywords`` (the keyword
names each call accepts), sorted, one name per line, so that a regenerated list diffs well.

``tensorrt-<version>.json``
    From the ``tensorrt-cu12-bindings`` wheel (about 1.1-1.3 MB). Its ``tensorrt_bindings/tensorrt.so``
    is a pybind11 module linked against ``libnvinfer.so.N``, ``libnvonnxparser.so.N`` and
    ``libnvinfer_plugin.so.N``, which are not here. The module's initialisation only *registers* the
    classes; it never calls into those libraries (none of the 9 TensorRT symbols it imports is called
    while importing). So a copy of the ``.so`` is patched (ELF ``.dynamic``/``.dynsym``, see
    :func:`tools.binding_import.detach_elf_dependencies`): its ``DT_NEEDED`` entries for non-system
    libraries are pointed at ``libc.so.6`` and its undefined symbols are made weak, which makes the
    dynamic loader bind the missing TensorRT functions to NULL instead of failing. The package is then
    imported in a child interpreter (``python -I -S tools/binding_walker.py``, so an installed TensorRT
    cannot interfere) and walked with ``dir()``/``inspect``: this gives exactly what ``import tensorrt``
    gives on a GPU machine -- classes, methods, properties, enum members, the names ``__init__.py`` adds
    in Python (``__version__``, ``nptype``, ``volume``, ``Logger.WARNING`` ...), and the keyword names of
    every pybind11 signature. (``tensorrt/__init__.py`` of the ``tensorrt-cu12`` package is just
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
    :func:`tools.binding_import.binary_has_string` is kept for cross-checks (tests/tools/): every name
    the import finds is stored in the binary (as a NUL-terminated string or the tail of one), and the
    removed names are not.

    Needs: Linux x86_64, glibc >= 2.28, and a CPython for which NVIDIA published the wheel (10.3.0:
    3.8-3.12, 10.13.3.9.post1: 3.8-3.13, 11.4.0.106: 3.8-3.14). No compiler is needed.

``pycuda-<version>.json``
    PyPI has only pycuda's source distribution (about 1.7 MB), which needs CUDA to build. Its names
    are read from the Boost.Python registrations in ``src/wrapper/wrap_cudadrv.cpp`` and
    ``mempool.cpp`` (``py::class_<...>("Context")``, ``.def("push", ...)``,
    ``.DEF_SIMPLE_METHOD(pop)``, ``.add_property("handle", ...)``, ``py::def("mem_alloc", ...)``,
    ``DEF_SIMPLE_FUNCTION(...)``, ``py::enum_<...>("ctx_flags").value(...)``, ``cls.attr(...)``,
    ``py::scope().attr("HostAllocation") = wrp``, ``py::arg``/``py::args`` keyword names) and from the
    Python modules (``pycuda/driver.py``: its functions and the methods ``_add_functionality()``
    attaches, e.g. ``Function.prepare``), by tools/pycuda_source.py. Names are prefixed by module:
    ``driver.mem_alloc``, ``driver.Stream.synchronize``, ``autoinit.context``. Limits: ``#if
    CUDAPP_CUDA_VERSION >= ...`` branches are all taken (a name needing a newer CUDA than the build's is
    still listed; every name this project uses needs CUDA >= 7); members added by ``setattr`` with
    computed names (other than a loop over a literal list), attributes served by ``__getattr__``
    (``Function.num_regs``) and the optional ``gl``/``curand`` parts are not listed. Checked against
    pycuda's own documentation (tests/tools/): of the ~365 names ``doc/driver.rst`` gives for
    ``pycuda.driver``/``pycuda.compiler``, all are found but 7 (3 documented yet never defined, 1 pair
    registered as ``py_memcpy_htoa``/``py_memcpy_atoh``, 3 served by ``__getattr__``).

``cuda-bindings-<version>.json``
    From the ``cuda-bindings`` wheel (12.9.x: about 7.6 MB). Its Cython modules import without a GPU
    or ``libcuda`` (the driver is loaded at the first call); ``cuda.pathfinder`` (a dependency only
    used then) is replaced by a stub. All of ``cuda.bindings.{driver,runtime,nvrtc}`` and of the old
    import paths that 12.x still ships (``from cuda import cuda``, deprecated, gone in 13.x) is
    extracted (and cached), but only what this project calls is committed: ``cuda.bindings.driver``
    (``driver.cuMemAlloc``, ``driver.CUresult.CUDA_SUCCESS``) and its legacy path ``cuda.cuda``, plus
    ``__version__`` and the module entries of the others (``runtime``, ``nvrtc``, ``cuda.cudart``,
    ``cuda.nvrtc``: that they exist, not their members). The full lists of 12.9 would take 1.5 MB.
    ``cuda.cuda`` has exactly ``driver``'s names in 12.x (checked at each run); the file then records
    ``"aliases": {"cuda.cuda": "driver"}`` instead of repeating them, and the tests' loader expands it
    (``cuda.cuda.cuMemAlloc``). Should the two ever differ, ``cuda.cuda``'s names are written out.
    Needs a CPython with a wheel for it.

Name forms (all files): ``"Builder"`` (class or module-level name), ``"Builder.create_network"``
(method, property, nested class, enum member, class constant -- one form for all of them),
``"Builder.create_network(flags)"`` (one entry per keyword argument the call accepts; positional-only
arguments, pybind11's unnamed ``arg0`` and ``self`` are left out), ``"Builder(logger)"`` (constructor
keywords). ``api`` gives the kind of each name (``class``, ``enum``, ``enum_member``, ``method``,
``staticmethod``, ``property``, ``readonly_property``, ``function``, ``attribute``, ``module``,
``exception``). Inherited members are listed on the subclass too (``IConvolutionLayer.name``).

Cache: ``--cache`` or ``$CLCA_DEPLOY_TEST_WHEELS`` or ``~/.cache/clca-deploy-test-wheels``
(``$XDG_CACHE_HOME`` honoured): the downloads, and the extracted records (all names, before the
cuda-bindings selection) as ``names/<library>-<version>-v<EXTRACTOR_VERSION>.json``, so a rerun reads no
package again (``--refresh`` extracts anew). The index is ``--index-url`` or
``$CLCA_DEPLOY_TEST_INDEX_URL`` or ``$PIP_INDEX_URL`` or https://pypi.org/simple (PEP 691 JSON or PEP 503
HTML). A missing release, a bad hash or a failed extraction is an error; so is an index that cannot be
reached when nothing is cached (exit 2, one line). The extracted names do not depend on the Python that
runs the script, but the import needs a wheel for it (the lists in the repository were written with
CPython 3.11 on x86_64 Linux).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable, Sequence

if __package__ in (None, ""):  # run as a script: make the repository's `tools` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools.binding_import import extract_cuda_bindings, extract_tensorrt  # noqa: E402
from tools.package_index import Index, NoMatchingFile, RegistryUnreachable, write_atomically  # noqa: E402
from tools.pycuda_source import extract_pycuda  # noqa: E402

SCRIPT = "tools/binding_names.py"
REPO_ROOT = Path(__file__).resolve().parents[1]
OUTPUT_DIR = REPO_ROOT / "tests" / "tensorrt" / "binding_names"
EXTRACTOR_VERSION = 3  # bump to invalidate the cached records (names/*.json of the cache)

# What the committed lists cover; tests/tensorrt/binding_names/__init__.py names the same releases.
RELEASES: dict[str, tuple[str, ...]] = {
    "tensorrt": ("10.3.0", "10.13.3.9.post1", "11.4.0.106"),
    "pycuda": ("2024.1.2", "2025.1.3", "2026.1"),
    "cuda-bindings": ("12.9.10", "13.5.0"),
}
EXTRACTORS: dict[str, Callable[[Index, str], dict]] = {
    "tensorrt": extract_tensorrt,
    "pycuda": extract_pycuda,
    "cuda-bindings": extract_cuda_bindings,
}
SCOPES = {
    "tensorrt": "every name of `import tensorrt` (the wheel's tensorrt_bindings package, imported with its "
    "module patched to load without libnvinfer): classes, members, enum members and call keywords",
    "pycuda": "the names pycuda registers, prefixed by module (driver.mem_alloc), read from the sdist's "
    "Boost.Python sources and Python modules; attributes served by __getattr__ are not listed",
    "cuda-bindings": "cuda.bindings.driver (driver.cuMemAlloc) and its legacy path cuda.cuda, cuda.bindings."
    "__version__, and only the module entries of runtime, nvrtc, cuda.cudart and cuda.nvrtc (this project "
    "calls the driver API alone); aliases: a module with exactly the names of another, expanded by the loader",
}
CUDA_BINDINGS_KEPT = ("driver", "cuda.cuda")


# --------------------------------------------------------------------------------------------------
# extraction, cached


def record_path(index: Index, library: str, version: str) -> Path:
    return index.cache / "names" / f"{library}-{version}-v{EXTRACTOR_VERSION}.json"


def cached_record(index: Index, library: str, version: str) -> dict | None:
    """The extracted record of a release if the cache holds it, else None (never downloads or extracts)."""
    try:
        return json.loads(record_path(index, library, version).read_text())
    except (OSError, ValueError):
        return None  # absent, or a torn write


def record(index: Index, library: str, version: str, refresh: bool = False) -> dict:
    """Every name of a release as extracted (``api``, ``keywords``, ``module_version``, ``source`` ...)."""
    found = None if refresh else cached_record(index, library, version)
    if found is not None:
        return found
    extracted = EXTRACTORS[library](index, version)
    extracted.update(library=library, version=version, extractor=EXTRACTOR_VERSION)
    write_atomically(record_path(index, library, version), json.dumps(extracted, indent=0, sort_keys=True).encode())
    return extracted


# --------------------------------------------------------------------------------------------------
# the committed form


def _module_of(name: str, modules: Sequence[str]) -> str | None:
    """The module a name belongs to (the longest match: ``cuda.cuda`` is not ``cuda.cudart``), else None."""
    owners = [m for m in modules if name == m or name.startswith((m + ".", m + "("))]
    return max(owners, key=len) if owners else None


def _under(names, module: str) -> set[str]:
    """The names below ``module``, with the module's prefix cut off (``.cuInit``, ``.cuMemAlloc(bytesize)``)."""
    return {n[len(module) :] for n in names if n.startswith((module + ".", module + "("))}


def _cuda_bindings_scope(api: dict[str, str], keywords: list[str]) -> tuple[dict, list, dict]:
    """``api`` and ``keywords`` reduced to CUDA_BINDINGS_KEPT (see the module docstring), and the aliases."""
    modules = [name for name, kind in api.items() if kind == "module"]
    kept = [m for m in CUDA_BINDINGS_KEPT if m in modules]
    aliases = {}
    for legacy in [m for m in kept if m != "driver"]:
        same_api = {k: api[legacy + k] for k in _under(api, legacy)} == {k: api["driver" + k] for k in _under(api, "driver")}
        if same_api and _under(keywords, legacy) == _under(keywords, "driver"):
            aliases[legacy] = "driver"

    def wanted(name: str) -> bool:
        module = _module_of(name, modules)
        return module is None or name == module or (module in kept and module not in aliases)

    return {n: k for n, k in api.items() if wanted(n)}, [n for n in keywords if wanted(n)], aliases


def document(extracted: dict) -> dict:
    """The committed JSON of a record: header first, then ``api`` and ``keywords`` sorted."""
    library, version = extracted["library"], extracted["version"]
    api, keywords, aliases = extracted["api"], extracted["keywords"], None
    if library == "cuda-bindings":
        api, keywords, aliases = _cuda_bindings_scope(api, keywords)
    out = {
        "generated_by": SCRIPT,
        "regenerate": f"python {SCRIPT} {library}=={version}",
        "library": library,
        "version": version,
        "module_version": extracted["module_version"],
        "source": {key: extracted["source"][key] for key in ("package", "file", "sha256")},
        "scope": SCOPES[library],
    }
    if aliases is not None:
        out["aliases"] = dict(sorted(aliases.items()))
    if "dropped_libraries" in extracted:
        out["dropped_libraries"] = extracted["dropped_libraries"]
    out["api"] = dict(sorted(api.items()))
    out["keywords"] = sorted(set(keywords))
    return out


def render(doc: dict) -> str:
    """The file's text: stable, one name per line."""
    return json.dumps(doc, indent=1, ensure_ascii=False) + "\n"


def output_path(out_dir: Path, library: str, version: str) -> Path:
    return Path(out_dir) / f"{library}-{version}.json"


# --------------------------------------------------------------------------------------------------
# command line


def _releases(specs: Sequence[str]) -> list[tuple[str, str]]:
    """``["tensorrt==10.3.0", "pycuda"]`` -> ``[("tensorrt", "10.3.0"), ("pycuda", <each of RELEASES>)...]``."""
    if not specs:
        return [(library, version) for library, versions in RELEASES.items() for version in versions]
    chosen = []
    for spec in specs:
        library, _, version = spec.partition("==")
        if library not in RELEASES:
            raise SystemExit(f"binding_names: unknown library {library!r} (one of: {', '.join(RELEASES)})")
        chosen += [(library, version)] if version else [(library, v) for v in RELEASES[library]]
    return chosen


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="binding_names.py",
        description="Write the committed name lists of tensorrt, pycuda and cuda-bindings releases "
        "(tests/tensorrt/binding_names/*.json) from the packages on the index.",
    )
    parser.add_argument("releases", nargs="*", metavar="LIBRARY[==VERSION]",
                        help=f"what to write (default: every release of RELEASES); LIBRARY is one of {', '.join(RELEASES)}")
    parser.add_argument("--out", type=Path, default=OUTPUT_DIR, help="where the lists go (default: %(default)s)")
    parser.add_argument("--cache", help="download and record cache (default: $CLCA_DEPLOY_TEST_WHEELS or "
                        "~/.cache/clca-deploy-test-wheels)")
    parser.add_argument("--index-url", help="simple package index (default: $CLCA_DEPLOY_TEST_INDEX_URL or "
                        "$PIP_INDEX_URL or https://pypi.org/simple)")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 when a list differs from its file")
    parser.add_argument("--refresh", action="store_true", help="extract again instead of reading cached records")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    index = Index.from_environment(args.index_url, args.cache)
    differ = []
    for library, version in _releases(args.releases):
        try:
            text = render(document(record(index, library, version, refresh=args.refresh)))
        except (RegistryUnreachable, NoMatchingFile, FileNotFoundError) as error:
            print(f"binding_names: {library}=={version}: {error}", file=sys.stderr)
            return 2
        path = output_path(args.out, library, version)
        if args.check:
            if not path.is_file() or path.read_text() != text:
                differ.append(path)
            continue
        if path.is_file() and path.read_text() == text:
            print(f"unchanged {path}")
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path} ({len(text) // 1024} KiB)")
    for path in differ:
        print(f"binding_names: {path} differs from what {SCRIPT} writes", file=sys.stderr)
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())

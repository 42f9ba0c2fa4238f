"""The environment block: the instruction sets that decide which CPU kernels run, and library versions
where pip metadata has none (TensorRT from JetPack, or from a tensorrt-cu12 wheel)."""

from __future__ import annotations

import importlib.metadata
import sys
import types

import pytest

from clca_deploy.bench import environment as environment_mod
from clca_deploy.bench.environment import cpu_isa, environment
from clca_deploy.runtime.tensorrt_backend import RUNTIME as TENSORRT

# Two processors of a recorded /proc/cpuinfo (shortened flag lists): a Sapphire Rapids VM with
# AMX and a Zen 3 without AVX-512. Only the first processor is read.
SAPPHIRE_RAPIDS = """processor\t: 0
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse2 avx avx2 avx512f avx512_vnni avx512_bf16 avx512_fp16 amx_bf16 amx_tile amx_int8
processor\t: 1
flags\t\t: fpu
"""
ZEN3 = """processor\t: 0
model name\t: AMD EPYC 7763 64-Core Processor
flags\t\t: fpu sse2 avx avx2 fma
"""


def test_cpu_isa_lists_the_kernel_deciding_flags_in_order(tmp_path):
    (tmp_path / "spr").write_text(SAPPHIRE_RAPIDS)
    (tmp_path / "zen3").write_text(ZEN3)
    assert cpu_isa(tmp_path / "spr") == ["avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16",
                                         "amx_bf16", "amx_int8"]
    assert cpu_isa(tmp_path / "zen3") == ["avx2"]
    assert cpu_isa(tmp_path / "absent") == []


def test_environment_records_isa_and_openvino_versions():
    info = environment()
    assert isinstance(info["cpu_isa"], list)
    assert "openvino" in info and "nncf" in info


# -- versions pip metadata does not give --------------------------------------------------------------------


@pytest.fixture
def installed(monkeypatch):
    """``installed({distribution: version})``: of TensorRT's wheels, pip metadata knows exactly these.

    Other distributions keep their real metadata, so that no other module is imported for its version.
    """
    real = importlib.metadata.version

    def use(versions):
        def version(name):
            key = name.lower().replace("_", "-")
            if key in versions:
                return versions[key]
            if key.startswith("tensorrt"):
                raise importlib.metadata.PackageNotFoundError(name)
            return real(name)

        monkeypatch.setattr(importlib.metadata, "version", version)

    return use


def test_report_keys_fold_cuda_variant_wheels_into_the_plain_name():
    keys = environment_mod.report_keys(TENSORRT.distributions)
    assert keys["tensorrt"][0] == "tensorrt"
    assert {"tensorrt-cu12", "tensorrt-cu13", "tensorrt-cu12-libs"} <= set(keys["tensorrt"])
    assert not any(key.startswith("tensorrt-") for key in keys)
    assert keys["cuda-python"] == ("cuda-python",) and keys["cuda-bindings"] == ("cuda-bindings",)
    # A variant whose plain name is not listed keeps its own key.
    assert environment_mod.report_keys(["cupy-cu12", "numpy"]) == {"cupy-cu12": ("cupy-cu12",), "numpy": ("numpy",)}


@pytest.mark.parametrize("wheel", ["tensorrt-cu12", "tensorrt_cu13", "tensorrt-cu12-libs"])
def test_tensorrt_version_from_a_cuda_variant_wheel(installed, monkeypatch, wheel):
    installed({wheel.replace("_", "-"): "10.13.3.9"})
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # and the module cannot be imported
    assert environment()["tensorrt"] == "10.13.3.9"


def test_tensorrt_version_from_the_module_jetpack_installed(installed, monkeypatch):
    installed({})  # JetPack's apt packages: no pip metadata for anything TensorRT
    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__="10.3.0.30"))
    info = environment()
    assert info["tensorrt"] == "10.3.0.30" and "tensorrt-cu12" not in info


def test_pip_metadata_comes_before_the_module(installed, monkeypatch):
    installed({"tensorrt": "10.13.3.9"})
    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__="0.0.0"))
    assert environment()["tensorrt"] == "10.13.3.9"


def test_module_not_imported_yet_is_imported_guarded(installed, monkeypatch, tmp_path):
    installed({})
    package = tmp_path / "tensorrt"
    package.mkdir()
    (package / "__init__.py").write_text('__version__ = "10.3.0.30"\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "tensorrt", raising=False)
    assert environment_mod.module_version("tensorrt") == "10.3.0.30"
    monkeypatch.delitem(sys.modules, "tensorrt")
    (package / "__init__.py").write_text('raise OSError("libnvinfer.so.10: cannot open shared object file")\n')
    assert environment_mod.module_version("tensorrt") is None  # a broken install records null, not a crash


def test_nothing_installed_records_null(installed, monkeypatch):
    installed({})
    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace())  # a module without __version__
    assert environment()["tensorrt"] is None
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # as if absent: import raises ImportError
    assert environment()["tensorrt"] is None

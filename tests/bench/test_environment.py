"""The environment block: the instruction sets that decide which CPU kernels run are recorded."""

from __future__ import annotations

from clca_deploy.bench.environment import cpu_isa, environment

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

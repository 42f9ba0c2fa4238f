"""Scripts that measure and write JSON (see docs/benchmarks.md).

A package so that gpu_check's modules import as ``benchmarks.gpu_check.*`` from the checkout alone,
ahead of any other top-level ``benchmarks`` that an installed distribution might bring.
"""

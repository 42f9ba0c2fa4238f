"""Device and mixed-precision choice for training (pure decisions, unit-tested)."""

from __future__ import annotations

import torch

from clca_deploy.errors import ConfigError


def cpu_supports_bf16() -> bool:
    """AVX512-BF16 or AMX: bfloat16 matmuls run natively (and faster than fp32) on this CPU."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def resolve_device(requested: str) -> torch.device:
    if requested == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for, but PyTorch sees no CUDA GPU; use --device cpu.")
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def resolve_precision(requested: str, device_type: str, bf16_on_cpu: bool | None = None) -> str:
    """``auto``: fp16 autocast on CUDA (the official AMP default), bf16 on a CPU that has it, else fp32."""
    bf16_on_cpu = cpu_supports_bf16() if bf16_on_cpu is None else bf16_on_cpu
    if requested == "auto":
        if device_type == "cuda":
            return "fp16"
        return "bf16" if bf16_on_cpu else "fp32"
    if requested == "fp16" and device_type != "cuda":
        raise ConfigError("fp16 mixed precision needs a CUDA GPU; on CPU use --precision bf16 or fp32.")
    if requested == "bf16" and device_type == "cpu" and not bf16_on_cpu:
        raise ConfigError("this CPU has no native bfloat16 (AVX512-BF16/AMX); use --precision fp32.")
    return requested


def autocast_dtype(precision: str) -> torch.dtype | None:
    return {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision)

"""Command-line options shared by the commands that run a model (predict, bench, serve, triton-repo)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from clca_deploy.runtime.base import RuntimeOptions

PROVIDER = typer.Option("cpu", help="onnxruntime execution provider: auto, cpu, cuda, tensorrt.")
DEVICE = typer.Option(0, help="CUDA device an engine runs on.")
RUNTIME = typer.Option(
    None, "--runtime", help="Runtime for an .onnx file: onnxruntime (default) or openvino (x86 CPUs)."
)
THREADS = typer.Option(None, "--threads", help="CPU threads of onnxruntime / OpenVINO (default: the runtime's).")
INFERENCE_PRECISION = typer.Option(
    "f32", "--inference-precision", help="OpenVINO: f32, or bf16 where the CPU has it (faster, rounds float work)."
)
PERFORMANCE_HINT = typer.Option("latency", "--performance-hint", help="OpenVINO: latency or throughput.")
OPENVINO_CACHE = typer.Option(
    None, "--openvino-cache", help="OpenVINO: folder for compiled models, so later starts skip compiling."
)

CHECKPOINT_ARGS = typer.Option(
    None, "--config", help="JSON of train.py args for a .pth without them (bare state dict); applies to every .pth run here."
)


def runtime_options(
    provider: str = "cpu", device: int = 0, threads: Optional[int] = None, inference_precision: str = "f32",
    performance_hint: str = "latency", openvino_cache: Optional[Path] = None, checkpoint_args: Optional[Path] = None,
) -> RuntimeOptions:
    """The options as one validated RuntimeOptions (an error before any model is opened)."""
    options = RuntimeOptions(
        provider=provider, device=device, threads=threads, inference_precision=inference_precision,
        performance_hint=performance_hint, cache_dir=openvino_cache, checkpoint_args=checkpoint_args,
    )
    options.validate()
    return options

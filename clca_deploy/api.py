"""The Python API: every verb of the command line as one function, with the same checks and results.

    from clca_deploy.api import export, calibrate, build_engine, load, predict, bench

Each verb takes the paths a command takes and its options as keyword arguments (the fields of the
stage's frozen config dataclass, named as in the dataclass: ``keep_rate`` for `--keep`), returns the
result dataclass the command prints (``.to_dict()`` is the JSON of `--json`), raises
:class:`~clca_deploy.errors.ClcaDeployError` for bad input before any work, and prints nothing: its
progress lines go to ``logging.getLogger("clca_deploy")`` at INFO level. Heavy libraries are
imported when a verb needs them, so ``import clca_deploy.api`` is cheap. docs/api.md has a tour that
a test runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from clca_deploy.errors import ClcaDeployError

__all__ = [
    "ClcaDeployError", "bench", "build_engine", "calibrate", "describe", "export", "load", "predict", "serve",
    "serve_config", "sweep", "triton_repo",
]


def export(checkpoint: str | Path, output: str | Path, **settings: Any):
    """Export a checkpoint to ONNX with a static token schedule, verified against PyTorch (`clca-deploy export`).

    ``settings``: the fields of :class:`clca_deploy.export.ExportConfig` (``keep_rate``, ``img_size``,
    ``batch``, ``opset``, ``simplify``, ``tolerance``, ``data``, ``class_names``...). Returns an ``ExportResult``.
    """
    from clca_deploy.export import ExportConfig, export_onnx

    return export_onnx(checkpoint, output, ExportConfig(**settings))


def calibrate(model: str | Path, output: str | Path | None = None, *, fp16: bool = False, **settings: Any):
    """INT8 (explicit Q/DQ, calibrated on ``data``) or FP16 ONNX from an FP32 export (`clca-deploy calibrate`).

    ``settings``: the fields of :class:`clca_deploy.calibration.CalibrationConfig` (``data``, ``num_images``,
    ``method``, ``target_agreement``, ``openvino``...). ``output`` defaults to MODEL.int8.onnx / .fp16.onnx.
    Returns a ``QuantizeResult`` or an ``Fp16Result``.
    """
    from clca_deploy.calibration import CalibrationConfig, calibrated_path, quantize_int8, to_fp16

    output = output if output is not None else calibrated_path(model, "fp16" if fp16 else "int8")
    if fp16:
        if settings:
            raise ClcaDeployError(f"FP16 takes no calibration settings; drop {', '.join(sorted(settings))}.")
        return to_fp16(model, output)
    return quantize_int8(model, output, CalibrationConfig(**settings))


def build_engine(model: str | Path, output: str | Path | None = None, *, data: str | Path | None = None,
                 num_images: int = 256, **settings: Any):
    """A TensorRT engine and its sidecar (`clca-deploy build-trt`); needs TensorRT and a GPU.

    ``settings``: the fields of :class:`clca_deploy.tensorrt.build.EngineConfig` (``precision``, ``batch``,
    ``workspace_gib``, ``device``...). Returns an ``EngineResult``.
    """
    from clca_deploy.pipeline.build_trt import build_trt
    from clca_deploy.tensorrt.build import EngineConfig

    return build_trt(model, output, EngineConfig(**settings), data=Path(data) if data else None, num_images=num_images)


def load(model: str | Path, runtime: str | None = None, **options: Any):
    """Open a model file (.onnx, .engine, checkpoint) on a runtime: a ``Backend``, used as a context manager.

    ``options``: the runtime's own options by field name (``threads``, ``provider``, ``inference_precision``,
    ``device``...). ``backend(batch)`` takes a preprocessed float32 NCHW batch and returns the logits.
    """
    from clca_deploy.runtime import open_backend

    return open_backend(model, runtime, **options)


def predict(model: str | Path, images: Iterable[str | Path], *, top_k: int = 5, runtime: str | None = None,
            **options: Any):
    """Classify image files or folders (`clca-deploy predict`); returns a ``PredictionRun``."""
    from clca_deploy.runtime import predict_images

    with load(model, runtime, **options) as backend:
        return predict_images(backend, list(images), top_k=top_k)


def describe(model: str | Path):
    """What a deployed file (.onnx, .engine) holds: its metadata, inputs and precision (`clca-deploy info`)."""
    from clca_deploy.runtime.describe import describe_model_file

    return describe_model_file(Path(model))


def bench(models: Iterable[str | Path], data: str | Path, **settings: Any):
    """Latency and accuracy of each model beside the reference (`clca-deploy bench`); returns a ``BenchReport``.

    ``settings``: the fields of :class:`clca_deploy.bench.run.BenchConfig` (``reference``, ``batch_sizes``,
    ``iters``, ``runtimes``, ``limit``...). ``report.write_json(path)`` writes the `--json` report.
    """
    from clca_deploy.bench.run import BenchConfig, run_bench

    settings.setdefault("progress", False)
    return run_bench(BenchConfig(models=tuple(Path(m) for m in models), data=Path(data), **settings))


def sweep(checkpoint: str | Path, keep_rates: Iterable[float], data: str | Path, output: str | Path = "sweep",
          **bench_settings: Any):
    """Export at several keep rates and bench each against the checkpoint (`clca-deploy sweep`)."""
    from clca_deploy.bench.run import BenchConfig
    from clca_deploy.pipeline.sweep import SweepConfig, run_sweep

    bench_settings.setdefault("progress", False)
    bench_config = BenchConfig(models=(), data=Path(data), **bench_settings)
    return run_sweep(SweepConfig(Path(checkpoint), tuple(keep_rates), Path(output), bench_config))


def triton_repo(model: str | Path, output: str | Path, *, overwrite: bool = False, **settings: Any):
    """A Triton model repository for a model file (`clca-deploy triton-repo`).

    ``settings``: the fields of :class:`clca_deploy.serving.TritonRepoConfig` (``name``, ``max_batch``,
    ``device``, ``runtime``...).
    """
    from clca_deploy.serving import TritonRepoConfig, write_triton_repository

    return write_triton_repository(model, output, TritonRepoConfig(**settings), overwrite=overwrite)


def serve_config(**settings: Any):
    """The settings of :func:`serve` (a ``ServeConfig``: ``port``, ``host``, ``max_batch``, ``runtime``...), checked."""
    from clca_deploy.serving import ServeConfig

    return ServeConfig(**settings)


def serve(model: str | Path, config=None) -> None:
    """Serve a model file on a local Triton server until interrupted (`clca-deploy serve`); needs PyTriton."""
    from clca_deploy.serving import serve as run_server

    run_server(model, config if config is not None else serve_config())

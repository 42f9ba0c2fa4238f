"""``bench``: latency and accuracy of deployed variants side by side with the PyTorch reference."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from clca_deploy.bench.accuracy import accuracy_against
from clca_deploy.bench.environment import environment
from clca_deploy.bench.latency import measure_latency
from clca_deploy.bench.memory import peak_rss_mb, reset_peak_rss
from clca_deploy.bench.report import BackendResult, BenchReport, utc_now
from clca_deploy.bench.table import format_keep
from clca_deploy.errors import ClcaDeployError, UnsupportedError

WHAT_WAS_TIMED = (
    "host-to-host: one call on a preprocessed float32 batch already in host memory, returning host "
    "logits (device copies included; image decoding and preprocessing excluded)"
)


@dataclass(frozen=True)
class BenchConfig:
    models: tuple[Path, ...]
    data: Path
    reference: Path | None = None
    batch_sizes: tuple[int, ...] = (1, 8)
    warmup: int = 3
    iters: int = 20
    limit: int | None = None  # images used for accuracy (all by default)
    csv: str | None = None  # official CSV split inside ``data``
    image_folder: str | None = None
    provider: str = "cpu"  # onnxruntime execution provider
    device: int = 0  # CUDA device of TensorRT engines
    progress: bool = True
    power: bool = True  # sample board power over the timed calls where the machine has a sensor

    def validate(self) -> None:
        if not self.models and self.reference is None:
            raise ClcaDeployError("nothing to benchmark: give --reference and/or --model.")
        if not self.batch_sizes or any(b < 1 for b in self.batch_sizes):
            raise ClcaDeployError(f"batch sizes must be positive integers, got {list(self.batch_sizes)}.")
        if self.warmup < 0 or self.iters < 1:
            raise ClcaDeployError("--warmup must be >= 0 and --iters >= 1.")


@dataclass
class _ImageCache:
    """Decoded, preprocessed images per preprocessing setting, read once each."""

    dataset: object
    limit: int | None
    progress: bool
    arrays: dict[str, tuple[np.ndarray, np.ndarray | None]] = field(default_factory=dict)
    skipped: list = field(default_factory=list)

    def get(self, preprocess: dict) -> tuple[np.ndarray, np.ndarray | None]:
        from clca_deploy.data import PreprocessConfig, iter_batches

        key = json.dumps(preprocess, sort_keys=True)
        if key not in self.arrays:
            reader = iter_batches(self.dataset, PreprocessConfig.from_dict(preprocess), 32, self.limit, self.progress)
            batches = list(reader)
            self.skipped = reader.skipped
            labels = np.concatenate([b.labels for b in batches]) if batches[0].labels is not None else None
            self.arrays[key] = (np.concatenate([b.images for b in batches]), labels)
        return self.arrays[key]


def _label(backend, path: Path) -> str:
    keep = format_keep(backend.description.keep_rate)
    return f"{backend.name} {backend.description.precision} keep {keep} ({path.name})"


def _logits(backend, images: np.ndarray, progress: bool) -> np.ndarray:
    from clca_deploy.runtime import infer

    chunk = backend.input_spec.batch or 32
    starts = range(0, len(images), chunk)
    if progress:
        from tqdm import tqdm

        starts = tqdm(starts, desc=f"{backend.name} logits", unit="batch", leave=False)
    return np.concatenate([infer(backend, images[s : s + chunk]) for s in starts])


def _latency(backend, images: np.ndarray, config: BenchConfig) -> tuple[dict, list[str]]:
    from clca_deploy.bench.power import power_sampler_for

    stats, notes = {}, []
    sampler, power_reason = power_sampler_for(backend) if config.power else (None, "not measured: power disabled")
    for size in config.batch_sizes:
        if backend.input_spec.batch not in (None, size):
            notes.append(f"batch {size} not timed: the model is fixed at batch {backend.input_spec.batch}")
            continue
        batch = np.resize(images, (size, *images.shape[1:])) if len(images) < size else images[:size]
        stats[size] = measure_latency(
            backend, np.ascontiguousarray(batch), config.warmup, config.iters, sampler, power_reason
        )
    return stats, notes


def _reference_notes(backend, path: Path) -> list[str]:
    """The reference is PyTorch on the checkpoint or, where torch is not installed, the FP32 ONNX."""
    if backend.name == "torch":
        return []
    if backend.name != "onnxruntime" or backend.description.precision != "fp32":
        raise ClcaDeployError(
            f"the reference must be the checkpoint (PyTorch) or the FP32 ONNX from `clca-deploy export`, "
            f"not {path.name} ({backend.name}, {backend.description.precision})."
        )
    return ["reference is the FP32 ONNX on onnxruntime, not PyTorch: it was checked against PyTorch when exported"]


def _measure(path: Path, is_reference: bool, config: BenchConfig, cache: _ImageCache, reference, log) -> tuple[BackendResult, np.ndarray | None]:
    from clca_deploy.runtime import backend_for_path, backend_options, open_backend

    kind = backend_for_path(path)
    reset_peak_rss()
    try:
        with open_backend(path, kind, **backend_options(kind, config.provider, config.device)) as backend:
            reference_notes = _reference_notes(backend, path) if is_reference else []
            images, labels = cache.get(backend.description.preprocess)
            log(f"{_label(backend, path)}: logits on {len(images)} images")
            logits = _logits(backend, images, config.progress)
            ref_logits = reference[1] if reference is not None else None
            accuracy = accuracy_against(logits, labels, ref_logits)
            log(f"{_label(backend, path)}: latency at batch {list(config.batch_sizes)}")
            latency, notes = _latency(backend, images, config)
            result = BackendResult(
                label=_label(backend, path),
                backend=backend.name,
                model_path=str(path),
                precision=backend.description.precision,
                keep_rate=tuple(backend.description.keep_rate),
                status="ok",
                reason="; ".join(reference_notes + notes) or None,
                is_reference=is_reference,
                providers=tuple(getattr(backend, "providers", ())),
                latency=latency,
                accuracy=accuracy,
                peak_rss_mb=peak_rss_mb(),
            )
            return result, logits
    except ClcaDeployError as exc:
        status = "skipped" if isinstance(exc, UnsupportedError) else "failed"
        log(f"{path}: {status}: {exc}")
        result = BackendResult(
            label=f"{kind} ({path.name})", backend=kind, model_path=str(path), precision="-", keep_rate=None,
            status=status, reason=str(exc), is_reference=is_reference,
        )
        return result, None


def run_bench(config: BenchConfig, log: Callable[[str], None] = print) -> BenchReport:
    """Measure every model (and the reference) on the same images; every row keeps a status."""
    from clca_deploy.data import open_dataset

    config.validate()
    dataset = open_dataset(config.data, csv=config.csv, image_folder=config.image_folder)
    cache = _ImageCache(dataset, config.limit, config.progress)
    results: list[BackendResult] = []
    reference = None
    if config.reference is not None:
        result, logits = _measure(Path(config.reference), True, config, cache, None, log)
        results.append(result)
        if logits is not None:
            reference = (result, logits)
    for path in config.models:
        result, _ = _measure(Path(path), False, config, cache, reference, log)
        results.append(result)
    num_readable = next(iter(cache.arrays.values()))[0].shape[0] if cache.arrays else 0
    return BenchReport(
        results=tuple(results),
        data={
            "path": str(config.data),
            "kind": dataset.kind,
            "num_images": min(len(dataset), config.limit or len(dataset)),
            "num_readable": num_readable,
            "labelled": dataset.labelled,
        },
        skipped_images=tuple({"path": str(s.path), "reason": s.reason} for s in cache.skipped),
        timing={
            "warmup": config.warmup,
            "iters": config.iters,
            "batch_sizes": list(config.batch_sizes),
            "what_was_timed": WHAT_WAS_TIMED,
        },
        environment=environment(),
        created=utc_now(),
    )

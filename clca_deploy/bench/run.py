"""``bench``: latency and accuracy of deployed variants side by side with the PyTorch reference."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from clca_deploy.bench.accuracy import accuracy_against
from clca_deploy.bench.environment import environment
from clca_deploy.bench.labels import image_size_note, labels_for_model, reference_mismatch
from clca_deploy.bench.latency import measure_latency, timing_batch
from clca_deploy.bench.limits import MAX_BATCH, available_memory_bytes, batch_too_large
from clca_deploy.bench.memory import peak_rss_mb, reset_peak_rss
from clca_deploy.bench.report import BackendResult, BenchReport, utc_now
from clca_deploy.errors import ClcaDeployError, UnsupportedError
from clca_deploy.runtime.base import CHECKPOINT, ONNX_FILE
from clca_deploy.runtime.registry import RuntimeOptions, open_backend, runtime_spec, runtimes_for_path
from clca_deploy.logs import log_info


WHAT_WAS_TIMED = (
    "host-to-host: one call on a preprocessed float32 batch already in host memory, returning host "
    "logits (device copies included; image decoding and preprocessing excluded)"
)


@dataclass(frozen=True)
class BenchConfig:
    """What to measure (models, reference, images) and how (batch sizes, calls, runtimes and their options)."""

    models: tuple[Path, ...]
    data: Path
    reference: Path | None = None
    batch_sizes: tuple[int, ...] = (1, 8)
    warmup: int = 3
    iters: int = 20
    limit: int | None = None  # images used for accuracy (all by default)
    csv: str | None = None  # official CSV split inside ``data``
    image_folder: str | None = None
    # Runtimes each model runs on, where it can (an .onnx on onnxruntime and openvino: two rows);
    # None: each file on its type's default runtime.
    runtimes: tuple[str, ...] | None = None
    runtime_options: RuntimeOptions = RuntimeOptions()
    progress: bool = True
    power: bool = True  # sample board power over the timed calls where the machine has a sensor

    def validate(self) -> None:
        if not self.models and self.reference is None:
            raise ClcaDeployError("nothing to benchmark: give --reference and/or --model.")
        if not self.batch_sizes or any(b < 1 for b in self.batch_sizes):
            raise ClcaDeployError(f"batch sizes must be positive integers, got {list(self.batch_sizes)}.")
        if max(self.batch_sizes) > MAX_BATCH:
            raise ClcaDeployError(f"batch size {max(self.batch_sizes)} is above {MAX_BATCH}; time smaller batches.")
        if self.warmup < 0 or self.iters < 1:
            raise ClcaDeployError("--warmup must be >= 0 and --iters >= 1.")


@dataclass
class ImageCache:
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


def row_label(backend, path: Path) -> str:
    """A row's name: runtime, the device it ran on and the file ("onnxruntime CUDA:0 (model.int8.onnx)").

    Precision (with an OpenVINO compute precision) and keep rate have their own columns and JSON fields."""
    return f"{backend.name} {backend.device_label} ({path.name})"


def _logits(backend, images: np.ndarray, progress: bool) -> np.ndarray:
    from clca_deploy.progress import track
    from clca_deploy.runtime import infer

    chunk = backend.input_spec.batch or 32
    starts = track(range(0, len(images), chunk), -(-len(images) // chunk), f"{backend.name} logits", "batch", progress)
    return np.concatenate([infer(backend, images[s : s + chunk]) for s in starts])


def _latency(backend, images: np.ndarray, config: BenchConfig) -> tuple[dict, list[str]]:
    from clca_deploy.bench.power.picker import power_sampler_for

    stats, notes = {}, []
    sampler, power_reason = power_sampler_for(backend) if config.power else (None, "not measured: power disabled")
    available = available_memory_bytes()
    for size in config.batch_sizes:
        if backend.input_spec.batch not in (None, size):
            notes.append(f"batch {size} not timed: the model is fixed at batch {backend.input_spec.batch}")
            continue
        too_large = batch_too_large(size, backend.input_spec.img_size, available)
        if too_large:
            notes.append(f"batch {size} not timed: {too_large}")
            continue
        stats[size] = measure_latency(
            backend, timing_batch(images, size), config.warmup, config.iters, sampler, power_reason
        )
    return stats, notes


def _reference_notes(backend, path: Path) -> list[str]:
    """The reference is PyTorch on the checkpoint or, where torch is not installed, the FP32 ONNX."""
    file_format = runtime_spec(backend.name).file_format
    if file_format == CHECKPOINT:
        return []
    if file_format != ONNX_FILE or backend.description.precision != "fp32":
        raise ClcaDeployError(
            f"the reference must be the checkpoint (PyTorch) or the FP32 ONNX from `clca-deploy export`, "
            f"not {path.name} ({backend.name}, {backend.description.precision})."
        )
    return [f"reference is the FP32 ONNX on {backend.name}, not PyTorch: it was checked against PyTorch when exported"]


@dataclass(frozen=True)
class _Reference:
    description: object  # the reference backend's ModelDescription
    logits: np.ndarray


def _failed_row(path: Path, kind: str, status: str, reason: str, is_reference: bool) -> BackendResult:
    return BackendResult(
        label=f"{kind} ({path.name})", backend=kind, model_path=str(path), precision="-", keep_rate=None,
        status=status, reason=reason, is_reference=is_reference,
    )


def _scored(backend, path: Path, config: BenchConfig, cache: ImageCache, reference: _Reference | None, log):
    """Logits, accuracy and notes of one open backend; raises ClcaDeployError where scoring is meaningless."""
    description = backend.description
    notes = []
    if reference is not None:
        mismatch = reference_mismatch(description, reference.description)
        if mismatch:
            raise ClcaDeployError(f"not compared with the reference: {mismatch}")
        notes.append(image_size_note(description, reference.description))
    images, data_labels = cache.get(description.preprocess)
    labels = labels_for_model(data_labels, cache.dataset.class_names, description.class_names, description.num_classes)
    if labels.failure:
        raise ClcaDeployError(f"not scored: {labels.failure}")
    log(f"{row_label(backend, path)}: logits on {len(images)} images")
    logits = _logits(backend, images, config.progress)
    accuracy = accuracy_against(logits, labels.labels, reference.logits if reference is not None else None)
    return images, logits, accuracy, [note for note in (labels.note, *notes) if note]


def _measure(path: Path, kind: str, is_reference: bool, config: BenchConfig, cache: ImageCache,
             reference: _Reference | None, log) -> tuple[BackendResult, _Reference | None]:
    reset_peak_rss()
    try:
        with open_backend(path, kind, config.runtime_options) as backend:
            reference_notes = _reference_notes(backend, path) if is_reference else []
            images, logits, accuracy, notes = _scored(backend, path, config, cache, reference, log)
            log(f"{row_label(backend, path)}: latency at batch {list(config.batch_sizes)}")
            latency, latency_notes = _latency(backend, images, config)
            result = BackendResult(
                label=row_label(backend, path), backend=backend.name, model_path=str(path),
                precision=backend.description.precision, keep_rate=tuple(backend.description.keep_rate), status="ok",
                reason="; ".join(reference_notes + notes + latency_notes) or None, is_reference=is_reference,
                providers=tuple(backend.providers), latency=latency, accuracy=accuracy,
                peak_rss_mb=peak_rss_mb(), inference_precision=backend.inference_precision,
            )
            return result, _Reference(backend.description, logits)
    except ClcaDeployError as exc:
        status = "skipped" if isinstance(exc, UnsupportedError) else "failed"
        log(f"{path} on {kind}: {status}: {exc}")
        return _failed_row(path, kind, status, str(exc), is_reference), None


def rows_to_measure(models: tuple[Path, ...], runtimes: tuple[str, ...] | None) -> list[tuple[Path, str | None]]:
    """(model, runtime) pairs in order: each model on each listed runtime that opens it.

    A model none of the listed runtimes opens keeps a row (runtime None) that says so."""
    rows: list[tuple[Path, str | None]] = []
    for path in models:
        able = runtimes_for_path(path)
        chosen = [runtime for runtime in runtimes if runtime in able] if runtimes else [able[0]]
        rows.extend((Path(path), runtime) for runtime in chosen or [None])
    return rows


def run_bench(config: BenchConfig, log: Callable[[str], None] = log_info) -> BenchReport:
    """Measure every model (and the reference) on the same images; every row keeps a status."""
    from clca_deploy.data import open_dataset

    config.validate()
    rows = rows_to_measure(config.models, config.runtimes)
    reference_kind = runtimes_for_path(config.reference)[0] if config.reference is not None else None
    dataset = open_dataset(config.data, csv=config.csv, image_folder=config.image_folder)
    cache = ImageCache(dataset, config.limit, config.progress)
    results: list[BackendResult] = []
    reference = None
    if config.reference is not None:
        result, reference = _measure(Path(config.reference), reference_kind, True, config, cache, None, log)
        results.append(result)
    for path, kind in rows:
        if kind is None:
            able = runtimes_for_path(path)
            reason = f"none of the runtimes {', '.join(config.runtimes)} opens {path.suffix} files ({', '.join(able)} do)"
            results.append(_failed_row(path, able[0], "skipped", reason, False))
            continue
        result, _ = _measure(path, kind, False, config, cache, reference, log)
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
            "class_names": list(dataset.class_names) if dataset.class_names else None,
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

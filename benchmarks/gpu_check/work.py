"""What the steps share in one run, and the measurements they all make the same way.

``Work`` carries the machine, the settings, a scratch folder and each step's products (a checkpoint,
ONNX files, engines, reference logits) for the steps after it. ``measure`` times one runtime on one
batch size through bench's own harness (power over a time-based window where a sensor reads the GPU);
``agreement`` compares logits with a reference.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from benchmarks.gpu_check.machine import Machine

# The latency fields the report keeps; the raw samples stay out (a time-based window can hold thousands).
LATENCY_FIELDS = ("p50_ms", "p90_ms", "mean_ms", "std_ms", "images_per_second", "timed_calls", "warmup", "min_seconds",
                  "power_w", "energy_mj_per_image", "power_source", "power_samples", "power_reason")


class Work:
    """One run's shared state. Mutable on purpose: each step leaves what later steps use in ``products``."""

    def __init__(self, machine: Machine, settings: Any, folder: Path, seconds_left: Callable[[], float] = lambda: 1e9):
        self.machine, self.settings, self.folder = machine, settings, Path(folder)
        self.seconds_left = seconds_left
        self.products: dict[Any, Any] = {}

    @property
    def device(self) -> int:
        return self.machine.device

    @property
    def torch_device(self) -> str:
        """Where the PyTorch GPU steps run: GPU N (a test stands the CPU in for it)."""
        return self.settings.torch_device or f"cuda:{self.device}"

    def product(self, key: Any) -> Any:
        if key not in self.products:
            raise RuntimeError(f"nothing made for {key!r}: the step that makes it did not run")
        return self.products[key]

    def images(self, preprocess: dict, count: int | None = None) -> np.ndarray:
        """``count`` preprocessed test leaves (repeated if the split is smaller), cached per preprocessing."""
        from clca_deploy.data import PreprocessConfig, iter_batches, open_dataset

        count = count or self.settings.images
        key = ("images", repr(sorted(preprocess.items())), count)
        if key not in self.products:
            test = Path(self.product("leaves")) / "test"
            reader = iter_batches(open_dataset(test), PreprocessConfig.from_dict(preprocess), 32, limit=count)
            images = np.concatenate([batch.images for batch in reader])
            self.products[key] = np.ascontiguousarray(np.resize(images, (count, *images.shape[1:])))
        return self.products[key]

    def power_sampler(self):
        """(sampler, reason) for GPU N: the same choice `bench` makes for a backend on that GPU."""
        from clca_deploy.bench.power.picker import pick_power_sampler

        if self.machine.power_reason:
            return None, self.machine.power_reason
        try:
            return pick_power_sampler(self.device)
        except Exception as exc:  # a broken driver costs the power figures, not the timing
            return None, f"power sensor check failed: {type(exc).__name__}: {exc}"


def batch_of(images: np.ndarray, size: int) -> np.ndarray:
    return np.ascontiguousarray(np.resize(images, (size, *images.shape[1:])))


def latency_fields(stats) -> dict[str, Any]:
    data = stats.to_dict()
    return {name: data.get(name) for name in LATENCY_FIELDS}


def measure(work: Work, run: Callable[[np.ndarray], Any], images: np.ndarray, on_gpu: bool) -> dict[str, Any]:
    """Latency at each batch size: on the GPU with power over at least ``power_window_s``; on the CPU briefly."""
    from clca_deploy.bench.latency import measure_latency

    settings = work.settings
    if on_gpu:
        sampler, reason = work.power_sampler()
        warmup, iters = settings.gpu_warmup, settings.gpu_iters
    else:
        sampler, reason = None, "not measured: this runtime runs on the CPU"
        warmup, iters = settings.cpu_warmup, settings.cpu_iters
    window = settings.power_window_s if sampler is not None else 0.0
    table = {}
    for size in settings.batch_sizes:
        stats = measure_latency(run, batch_of(images, size), warmup, iters, sampler, reason, min_seconds=window)
        table[str(size)] = latency_fields(stats)
    return table


def agreement(logits: np.ndarray, reference: np.ndarray, against: str) -> dict[str, Any]:
    """Top-1 agreement and logit error of ``logits`` against ``reference`` (same images)."""
    from benchmarks.gpu_check.outcome import StepError

    logits, reference = np.asarray(logits, np.float32), np.asarray(reference, np.float32)
    if logits.shape != reference.shape:
        raise StepError(f"logits of shape {logits.shape} cannot be compared with {against}'s {reference.shape}")
    difference = np.abs(logits - reference)
    return {
        "against": against, "images": int(len(logits)),
        "top1_agreement": 100.0 * float((logits.argmax(1) == reference.argmax(1)).mean()),  # percent, as bench
        "max_abs": float(difference.max()), "mean_abs": float(difference.mean()),
    }


def row(label: str, **fields: Any) -> dict[str, Any]:
    """One runtime's line of the report: its label, status, latency table and agreement."""
    return {"label": label, "status": "ok", **fields}


def skipped_row(label: str, reason: str) -> dict[str, Any]:
    return {"label": label, "status": "skipped", "reason": reason}


def ort_gpu_settings(device: int) -> dict[str, Any]:
    """open_backend settings that put onnxruntime's CUDA provider on GPU ``device``."""
    return {"provider": "cuda", "device": device}


def open_ort_gpu(path: Path, device: int):
    """onnxruntime on GPU ``device``, refused unless the session really holds the CUDA provider on it."""
    from benchmarks.gpu_check.machine import CUDA_PROVIDER
    from benchmarks.gpu_check.outcome import StepError
    from clca_deploy.runtime import open_backend

    backend = open_backend(path, "onnxruntime", **ort_gpu_settings(device))
    providers = tuple(backend.session.get_providers())
    if CUDA_PROVIDER not in providers or backend.device_index != device:
        backend.close()
        raise StepError(f"onnxruntime's session runs on {', '.join(providers)} (device {backend.device_index}), "
                        f"not {CUDA_PROVIDER} on GPU {device}")
    return backend

"""How `tune` measures a candidate on this machine: accuracy and agreement against the checkpoint on the
user's images, a short latency screen, energy where a sensor exists, and the final interleaved timing."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from clca_deploy.bench.accuracy import accuracy_against
from clca_deploy.bench.labels import labels_for_model
from clca_deploy.bench.latency import measure_latency, time_in_rounds, timing_batch
from clca_deploy.bench.run import ImageCache
from clca_deploy.errors import ClcaDeployError
from clca_deploy.pipeline.tune.model import Candidate, Measurement
from clca_deploy.runtime import infer, open_backend

SCREEN_WARMUP = 1
SCREEN_ITERS = 5


def total_tokens(onnx_path: Path) -> int:
    """Tokens an exported graph processes over all its blocks (attention's count per block, summed)."""
    from clca_deploy.metadata import read_onnx_metadata

    return int(sum(tokens_in for tokens_in, _ in read_onnx_metadata(onnx_path).token_schedule))


@dataclass
class Scorer:
    """Scores open backends on the same images against the checkpoint's logits (PyTorch), each read once."""

    checkpoint: Path
    cache: ImageCache
    references: dict[str, np.ndarray] = field(default_factory=dict)

    @classmethod
    def open(cls, checkpoint: Path, data: Path, limit: int | None) -> "Scorer":
        from clca_deploy.data import open_dataset

        return cls(checkpoint, ImageCache(open_dataset(data), limit, False))

    def images(self, description) -> tuple[np.ndarray, np.ndarray | None]:
        images, data_labels = self.cache.get(description.preprocess)
        labels = labels_for_model(data_labels, self.cache.dataset.class_names, description.class_names,
                                  description.num_classes)
        return images, labels.labels if not labels.failure else None

    def reference(self, description) -> np.ndarray:
        key = json.dumps(description.preprocess, sort_keys=True)
        if key not in self.references:
            images, _ = self.cache.get(description.preprocess)
            with open_backend(self.checkpoint) as backend:
                self.references[key] = infer(backend, images)
        return self.references[key]

    def score(self, backend) -> tuple[float | None, float | None]:
        """(top-1 % on labelled images or None, % top-1 agreement with the checkpoint)."""
        images, labels = self.images(backend.description)
        accuracy = accuracy_against(infer(backend, images), labels, self.reference(backend.description))
        return accuracy.top1, accuracy.top1_agreement


def batch_of(scorer: Scorer, description, size: int) -> np.ndarray:
    images, _ = scorer.cache.get(description.preprocess)
    return timing_batch(images, size)


def runtime_settings(candidate: Candidate) -> dict:
    """The runtime options a candidate names (OpenVINO's float precision)."""
    return {"inference_precision": candidate.inference_precision} if candidate.inference_precision else {}


def screen(candidate: Candidate, path: Path, tokens: int, scorer: Scorer, batch: int, energy: bool) -> Measurement:
    """One candidate alone: accuracy, agreement, a short latency screen (and its energy with a sensor)."""
    try:
        with open_backend(path, candidate.runtime, **runtime_settings(candidate)) as backend:
            top1, agreement = scorer.score(backend)
            sampler, reason = _power(backend) if energy else (None, "not asked")
            stats = measure_latency(backend, batch_of(scorer, backend.description, batch), SCREEN_WARMUP,
                                    SCREEN_ITERS, sampler, reason)
            return Measurement(candidate, tokens, p50_ms=stats.p50_ms, p90_ms=stats.p90_ms,
                               energy_mj_per_image=stats.energy_mj_per_image, top1=top1, agreement=agreement,
                               model_path=str(path), samples_ms=stats.samples_ms)
    except ClcaDeployError as exc:
        return Measurement(candidate, tokens, status="failed", reason=str(exc)[:2000], model_path=str(path))


def _power(backend):
    from clca_deploy.bench.power.picker import power_sampler_for

    return power_sampler_for(backend)


def has_power_sensor() -> str | None:
    """None where this machine has a power sensor for energy budgets, else why not."""
    from clca_deploy.bench.power.picker import pick_power_sampler

    try:
        sampler, reason = pick_power_sampler(None)
    except Exception as exc:  # a broken driver is a missing sensor here
        return f"{type(exc).__name__}: {exc}"
    return None if sampler is not None else reason or "no power sensor"


def time_interleaved(measured: list[Measurement], scorer: Scorer, batch: int, warmup: int, iters: int) -> list[Measurement]:
    """The final timing: every contender on the same batch, taking turns in rounds (drift hits all alike)."""
    from contextlib import ExitStack

    with ExitStack() as stack:
        runs = {}
        for m in measured:
            backend = stack.enter_context(open_backend(Path(m.model_path), m.candidate.runtime,
                                                       **runtime_settings(m.candidate)))
            runs[m.candidate.key] = backend
        first = next(iter(runs.values()))
        samples = time_in_rounds(runs, batch_of(scorer, first.description, batch), warmup, iters)
    return [replace(m, p50_ms=float(np.percentile(samples[m.candidate.key], 50)),
                    p90_ms=float(np.percentile(samples[m.candidate.key], 90)),
                    samples_ms=tuple(samples[m.candidate.key])) for m in measured]

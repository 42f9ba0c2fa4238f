"""Images -> class labels with any backend, using the preprocessing the model carries."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from clca_deploy.errors import ClcaDeployError
from clca_deploy.runtime.base import Backend
from clca_deploy.runtime.chunks import run_in_chunks
from clca_deploy.runtime.scores import softmax, top_classes


@dataclass(frozen=True)
class ClassScore:
    index: int
    name: str
    probability: float


@dataclass(frozen=True)
class Prediction:
    path: str
    top: tuple[ClassScore, ...]

    def to_dict(self) -> dict:
        return {"path": self.path, "top": [vars(score) for score in self.top]}


@dataclass(frozen=True)
class PredictionRun:
    predictions: tuple[Prediction, ...]
    skipped: tuple[tuple[str, str], ...]  # (path, reason)

    def to_dict(self) -> dict:
        return {
            "predictions": [p.to_dict() for p in self.predictions],
            "skipped": [{"path": path, "reason": reason} for path, reason in self.skipped],
        }


def infer(backend: Backend, images: np.ndarray) -> np.ndarray:
    """Logits for any number of images, padding the last chunk for fixed-batch models."""
    fixed = backend.input_spec.batch
    return backend(images) if fixed is None else run_in_chunks(backend, images, fixed)


def predict_images(
    backend: Backend,
    inputs: Iterable[str | Path],
    top_k: int = 5,
    batch_size: int = 16,
    progress: bool = False,
    max_pixels: int | None = None,
) -> PredictionRun:
    """Top-k classes for every readable image; unreadable ones are named in ``skipped``."""
    from clca_deploy.data import DEFAULT_MAX_PIXELS, PreprocessConfig, iter_batches, open_image_list

    if top_k < 1:
        raise ClcaDeployError(f"--top-k must be at least 1, got {top_k}.")
    dataset = open_image_list(list(inputs))  # files left out of the folders are named with the unreadable ones
    config = PreprocessConfig.from_dict(backend.description.preprocess)
    reader = iter_batches(
        dataset, config, batch_size=batch_size, progress=progress, max_pixels=max_pixels or DEFAULT_MAX_PIXELS
    )
    description = backend.description
    k = min(top_k, description.num_classes)
    predictions = []
    for batch in reader:
        indices, scores = top_classes(softmax(infer(backend, batch.images)), k)
        for path, row_indices, row_scores in zip(batch.paths, indices, scores):
            top = tuple(ClassScore(int(i), description.class_name(int(i)), float(p)) for i, p in zip(row_indices, row_scores))
            predictions.append(Prediction(str(path), top))
    return PredictionRun(tuple(predictions), tuple((str(s.path), s.reason) for s in reader.skipped))

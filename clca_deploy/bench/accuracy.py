"""Accuracy of logits against labels and against a reference backend's logits."""

from __future__ import annotations

import numpy as np

from clca_deploy.bench.report import AccuracyResult


def top_k_accuracy(logits: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Percent of images whose label is among the k highest logits."""
    k = min(k, logits.shape[1])
    top = np.argsort(-logits, axis=1, kind="stable")[:, :k]
    return float(100.0 * (top == labels[:, None]).any(axis=1).mean())


def accuracy_against(logits: np.ndarray, labels: np.ndarray | None, reference: np.ndarray | None) -> AccuracyResult:
    top1 = top5 = agreement = max_error = mean_error = None
    if labels is not None:
        top1, top5 = top_k_accuracy(logits, labels, 1), top_k_accuracy(logits, labels, 5)
    if reference is not None and reference.shape == logits.shape:
        agreement = float(100.0 * (logits.argmax(1) == reference.argmax(1)).mean())
        difference = np.abs(logits - reference)
        max_error, mean_error = float(difference.max()), float(difference.mean())
    return AccuracyResult(
        num_images=len(logits),
        top1=top1,
        top5=top5,
        top1_agreement=agreement,
        max_abs_logit_error=max_error,
        mean_abs_logit_error=mean_error,
    )

"""Learning-rate schedule: linear warm-up, then cosine decay to ``min_lr``, per optimisation step."""

from __future__ import annotations

import math


def learning_rate(
    step: int, total_steps: int, warmup_steps: int, base_lr: float, warmup_lr: float, min_lr: float
) -> float:
    """Learning rate at ``step`` (0-based) of ``total_steps``.

    The official recipe (timm's CosineLRScheduler) changes the rate once per epoch; per step
    is smoother and matters when a CPU run has only a few epochs.
    """
    if warmup_steps and step < warmup_steps:
        return warmup_lr + (base_lr - warmup_lr) * step / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return min_lr + 0.5 * (base_lr - min_lr) * (1.0 + math.cos(math.pi * progress))


def evaluation_epochs(epochs: int, evaluations: int) -> frozenset[int]:
    """0-based epochs after which to evaluate: ``evaluations`` spread evenly, always the last."""
    count = min(epochs, evaluations)
    return frozenset(round((i + 1) * epochs / count) - 1 for i in range(count))

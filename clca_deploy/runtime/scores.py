"""Logits -> class probabilities and the top-k classes, in numpy only.

The one ranking rule for every way an answer leaves this tool (``predict``, the Triton
postprocessing model, the load test): ties keep the lower class index first.
"""

from __future__ import annotations

import numpy as np


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of [N, C] logits, shifted by the row maximum so exp never overflows."""
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def top_classes(probabilities: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(class indices int64 [N, k], their probabilities float32 [N, k]), best first."""
    order = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
    return order.astype(np.int64), np.take_along_axis(probabilities, order, axis=1).astype(np.float32)

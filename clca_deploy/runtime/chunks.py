"""Fixed-size chunks of an image array, for models exported at a fixed batch size."""

from __future__ import annotations

from typing import Callable

import numpy as np


def run_in_chunks(call: Callable[[np.ndarray], np.ndarray], images: np.ndarray, chunk: int) -> np.ndarray:
    """``call`` on consecutive chunks of ``chunk`` images, the last one padded by repetition
    (fixed-batch models need full batches) and the padding dropped from the result."""
    outputs = []
    for start in range(0, len(images), chunk):
        part = images[start : start + chunk]
        real = len(part)
        if real < chunk:
            part = np.concatenate([part, np.repeat(part[-1:], chunk - real, axis=0)])
        outputs.append(call(part)[:real])
    return np.concatenate(outputs)

"""Asking a served model: encoded images in, top-k classes out, over Triton's HTTP protocol."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from clca_deploy.serving.compare import compare_answer
from clca_deploy.serving.triton_config import CLASS_ID, CLASS_NAME, IMAGE, SCORE


@dataclass(frozen=True)
class ServedAnswer:
    """One image's answer: class ids, names and scores, best first."""

    class_ids: tuple[int, ...]
    class_names: tuple[str, ...]
    scores: tuple[float, ...]


def image_request(images: Sequence[bytes]):
    """The ensemble's input for a batch of encoded images (JPEG, PNG, ... as read from disk)."""
    import tritonclient.http as triton_http

    tensor = triton_http.InferInput(IMAGE, [len(images), 1], "BYTES")
    tensor.set_data_from_numpy(np.array([[data] for data in images], dtype=object))
    return [tensor]


def classify(client, model: str, images: Sequence[bytes]) -> list[ServedAnswer]:
    """Answers of ``model`` for ``images``, through a ``tritonclient.http.InferenceServerClient``
    (which is not thread-safe: one per thread, or its ``async_infer`` and ``answers``)."""
    return answers(client.infer(model, image_request(images)))


def answers(result) -> list[ServedAnswer]:
    """The answers in a Triton inference result of the ensemble."""
    ids, names, scores = (result.as_numpy(name) for name in (CLASS_ID, CLASS_NAME, SCORE))
    return [
        ServedAnswer(tuple(int(i) for i in row_ids), tuple(n.decode("utf-8") for n in row_names), tuple(float(s) for s in row_scores))
        for row_ids, row_names, row_scores in zip(ids, names, scores)
    ]


def matches(answer: ServedAnswer, top: Sequence, tolerance: float) -> bool:
    """True if a served answer names the direct runtime's top classes (``Prediction.top``) in the same
    order with scores within ``tolerance`` (``compare.score_tolerance`` of the model's precision)."""
    difference = compare_answer("", answer, top)
    return difference.same_top_k and difference.scores_within(tolerance)

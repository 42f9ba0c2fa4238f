"""Served answers against the direct runtime's: the same classes, and scores as close as the model's precision allows.

Class equality (top-1, top-k order) and score closeness are counted apart: a reduced-precision
model can move a probability by a few 1e-4 with the batch an image lands in (the runtime picks
other kernels and summation orders for other batch sizes) while every class stays in place.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Mapping, Sequence

from clca_deploy.errors import ClcaDeployError

# Largest |probability difference| accepted between the server and the direct runtime, by the
# model's precision. Measured on onnxruntime CPU, the same model run on one image alone and in
# batches of 2..16: FP32 moves by up to 8e-7, FP16 by 2e-4, INT8 by up to 2.2e-4 (on other CPUs
# not at all); each tolerance is about ten times that, far below a change of class.
SCORE_TOLERANCES = {"fp32": 1e-5, "fp16": 2e-3, "int8": 2e-3}


def score_tolerance(precision: str) -> float:
    """The score tolerance for a model of ``precision`` (its metadata's 'fp32', 'fp16' or 'int8')."""
    try:
        return SCORE_TOLERANCES[precision]
    except KeyError:
        known = ", ".join(SCORE_TOLERANCES)
        raise ClcaDeployError(f"no score tolerance for precision {precision!r}; the model's metadata should say one of {known}.") from None


@dataclass(frozen=True)
class AnswerDifference:
    """How one image's served answer compares with the direct runtime's."""

    image: str
    served_top1: str | None  # 'name (#id)'; None for an empty answer
    direct_top1: str | None
    same_top_k: bool  # the same class ids and names in the same order
    # Largest |served - direct| over the classes both answers list; None when they share none.
    score_difference: float | None

    @property
    def same_top1(self) -> bool:
        return self.served_top1 is not None and self.served_top1 == self.direct_top1

    def scores_within(self, tolerance: float) -> bool:
        return self.score_difference is not None and self.score_difference <= tolerance

    def describe(self, label: str | None = None) -> str:
        """One line, e.g. 'leaf.jpg: top-1 Acer (#0) served vs Tilia (#14) direct, max score difference 3.1e-01';
        ``label`` names the image instead of ``image`` (a short name for a long path)."""
        parts = []
        if not self.same_top1:
            parts.append(f"top-1 {self.served_top1} served vs {self.direct_top1} direct")
        elif not self.same_top_k:
            parts.append("top-k order differs")
        if self.score_difference is None:
            parts.append("no class in common")
        else:
            parts.append(f"max score difference {self.score_difference:.1e}")
        return f"{label or self.image}: {', '.join(parts)}"


def compare_answer(image: str, served, direct: Sequence) -> AnswerDifference:
    """``served`` (a ``ServedAnswer``) against ``direct`` (``Prediction.top``: ClassScores, best first)."""
    served_classes = list(zip(served.class_ids, served.class_names))
    direct_classes = [(score.index, score.name) for score in direct]
    served_scores = dict(zip(served.class_ids, served.scores))
    gaps = [abs(served_scores[score.index] - score.probability) for score in direct if score.index in served_scores]
    # A NaN score is never close: inf keeps it so through max() and the sort, where NaN would vanish.
    difference = max((math.inf if math.isnan(gap) else gap for gap in gaps), default=None)
    return AnswerDifference(
        image=image,
        served_top1=_first_name(served_classes),
        direct_top1=_first_name(direct_classes),
        same_top_k=served_classes == direct_classes,
        score_difference=difference,
    )


def _first_name(classes: list[tuple[int, str]]) -> str | None:
    # Ids and names both: a name alone could hide a shifted class list ("class 3" on both sides).
    return f"{classes[0][1]} (#{classes[0][0]})" if classes else None


@dataclass(frozen=True)
class AnswerAgreement:
    """Counts over all compared images, and every image that differs in class or beyond ``tolerance``."""

    images: int
    top1_equal: int
    top_k_equal: int
    scores_close: int  # images whose shared classes' scores are all within tolerance
    precision: str
    tolerance: float
    largest_score_difference: float | None
    differing: tuple[AnswerDifference, ...]  # worst score difference first

    @property
    def all_agree(self) -> bool:
        return self.top_k_equal == self.scores_close == self.images

    def to_dict(self) -> dict:
        data = asdict(self)
        data["differing"] = [difference.describe() for difference in self.differing]
        return data


def compare_answers(served: Mapping[str, object], direct: Mapping[str, Sequence], precision: str) -> AnswerAgreement:
    """Served answers against the direct runtime's top classes, both keyed by image name, for a model of ``precision``."""
    tolerance = score_tolerance(precision)
    missing = sorted(set(served) - set(direct))
    if missing:
        raise ClcaDeployError(f"served answers for images the direct runtime did not answer: {', '.join(missing[:3])}.")
    differences = [compare_answer(image, answer, direct[image]) for image, answer in served.items()]
    measured = [d.score_difference for d in differences if d.score_difference is not None]
    differing = [d for d in differences if not (d.same_top_k and d.scores_within(tolerance))]
    differing.sort(key=lambda d: -math.inf if d.score_difference is None else -d.score_difference)
    return AnswerAgreement(
        images=len(differences),
        top1_equal=sum(d.same_top1 for d in differences),
        top_k_equal=sum(d.same_top_k for d in differences),
        scores_close=sum(d.scores_within(tolerance) for d in differences),
        precision=precision,
        tolerance=tolerance,
        largest_score_difference=max(measured, default=None),
        differing=tuple(differing),
    )

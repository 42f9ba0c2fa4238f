"""Served answers vs the direct runtime's, as a pure function: classes and scores counted apart."""

from __future__ import annotations

import math

import pytest

from clca_deploy.errors import ClcaDeployError
from clca_deploy.runtime.predictor import ClassScore
from clca_deploy.serving.client import ServedAnswer, matches
from clca_deploy.serving.compare import SCORE_TOLERANCES, compare_answer, compare_answers, score_tolerance

NAMES = {0: "Acer", 1: "Alnus", 2: "Betula", 3: "Quercus", 4: "Tilia"}


def direct(*pairs: tuple[int, float]) -> tuple[ClassScore, ...]:
    return tuple(ClassScore(index, NAMES[index], probability) for index, probability in pairs)


def served(*pairs: tuple[int, float]) -> ServedAnswer:
    return ServedAnswer(tuple(i for i, _ in pairs), tuple(NAMES[i] for i, _ in pairs), tuple(p for _, p in pairs))


REFERENCE = direct((3, 0.70), (0, 0.20), (4, 0.06), (1, 0.03), (2, 0.01))


def test_tolerance_follows_the_models_precision():
    assert score_tolerance("fp32") < score_tolerance("fp16") <= score_tolerance("int8")
    # INT8 on onnxruntime CPU moved by 2.2e-4 with the batch; FP32 by under 1e-6.
    assert score_tolerance("int8") > 2.2e-4 and score_tolerance("fp32") < 1e-4
    with pytest.raises(ClcaDeployError, match="precision 'bf8'"):
        score_tolerance("bf8")
    assert set(SCORE_TOLERANCES) == {"fp32", "fp16", "int8"}


def test_scores_within_tolerance_agree():
    moved = served((3, 0.70 + 2.2e-4), (0, 0.20 - 1e-4), (4, 0.06), (1, 0.03), (2, 0.01))
    difference = compare_answer("a.jpg", moved, REFERENCE)
    assert difference.same_top1 and difference.same_top_k
    assert difference.score_difference == pytest.approx(2.2e-4)
    assert difference.scores_within(score_tolerance("int8")) and not difference.scores_within(score_tolerance("fp32"))
    assert matches(moved, REFERENCE, score_tolerance("int8"))
    agreement = compare_answers({"a.jpg": moved}, {"a.jpg": REFERENCE}, "int8")
    assert (agreement.top1_equal, agreement.top_k_equal, agreement.scores_close) == (1, 1, 1)
    assert agreement.all_agree and agreement.differing == ()
    # The same answer from an FP32 model is beyond its tolerance, with classes still equal.
    strict = compare_answers({"a.jpg": moved}, {"a.jpg": REFERENCE}, "fp32")
    assert (strict.top1_equal, strict.top_k_equal, strict.scores_close) == (1, 1, 0)
    assert [d.image for d in strict.differing] == ["a.jpg"]


def test_scores_beyond_tolerance_are_named_with_their_size():
    far = served((3, 0.69), (0, 0.21), (4, 0.06), (1, 0.03), (2, 0.01))
    agreement = compare_answers({"far.jpg": far, "same.jpg": served(*[(s.index, s.probability) for s in REFERENCE])},
                                {"far.jpg": REFERENCE, "same.jpg": REFERENCE}, "int8")
    assert (agreement.images, agreement.top1_equal, agreement.top_k_equal, agreement.scores_close) == (2, 2, 2, 1)
    assert not agreement.all_agree
    (worst,) = agreement.differing
    assert worst.image == "far.jpg" and worst.score_difference == pytest.approx(0.01)
    assert worst.describe() == "far.jpg: max score difference 1.0e-02"
    assert agreement.largest_score_difference == pytest.approx(0.01)
    assert not matches(far, REFERENCE, score_tolerance("int8"))


def test_a_different_top1_is_counted_apart_from_scores():
    swapped = served((0, 0.70), (3, 0.20), (4, 0.06), (1, 0.03), (2, 0.01))
    order = served((3, 0.70), (0, 0.20), (1, 0.06), (4, 0.03), (2, 0.01))
    agreement = compare_answers({"swap.jpg": swapped, "order.jpg": order},
                                {"swap.jpg": REFERENCE, "order.jpg": REFERENCE}, "int8")
    assert (agreement.top1_equal, agreement.top_k_equal, agreement.scores_close) == (1, 0, 0)
    worst, second = agreement.differing  # worst score difference first
    assert worst.describe() == "swap.jpg: top-1 Acer (#0) served vs Quercus (#3) direct, max score difference 5.0e-01"
    assert second.describe("o") == "o: top-k order differs, max score difference 3.0e-02"
    assert agreement.to_dict()["differing"][0].startswith("swap.jpg: top-1 Acer")


def test_answers_without_a_common_class_or_with_nan_never_agree():
    other = ServedAnswer((9,), ("Zelkova",), (0.9,))
    nothing_shared = compare_answer("x.jpg", other, REFERENCE)
    assert nothing_shared.score_difference is None and not nothing_shared.scores_within(1.0)
    assert nothing_shared.describe() == "x.jpg: top-1 Zelkova (#9) served vs Quercus (#3) direct, no class in common"
    nan = compare_answer("n.jpg", served((3, math.nan), (0, 0.20), (4, 0.06), (1, 0.03), (2, 0.01)), REFERENCE)
    assert nan.same_top_k and nan.score_difference == math.inf and not nan.scores_within(1.0)
    empty = compare_answer("e.jpg", ServedAnswer((), (), ()), REFERENCE)
    assert not empty.same_top1 and not empty.same_top_k
    with pytest.raises(ClcaDeployError, match="did not answer: y.jpg"):
        compare_answers({"y.jpg": other}, {}, "fp32")

"""Latency steps on synthetic curves: none on flat, noisy or straight ones; each stair of a staircase."""

from __future__ import annotations

import math

import pytest

from clca_deploy.pipeline.tune.steps import Step, find_steps, keep_for_tokens, offer_below_steps

STAIRCASE = [(48, 5.0), (64, 5.0), (80, 8.0), (96, 8.0), (112, 8.0), (128, 8.0), (144, 11.0), (160, 11.0),
             (176, 11.0), (192, 11.0), (208, 14.0)]
STAIRS = [Step(64, 80, 5.0, 8.0), Step(128, 144, 8.0, 11.0), Step(192, 208, 11.0, 14.0)]


def test_a_flat_noisy_curve_has_no_step():
    assert find_steps([(100, 10.0), (110, 10.3), (120, 9.8), (130, 10.2), (140, 10.1), (150, 11.0)]) == []


def test_a_steep_straight_curve_has_no_step():
    # 20% more per point, but the same per-token slope everywhere: a trend, not a step
    assert find_steps([(100, 10.0), (120, 12.0), (140, 14.0), (160, 16.0), (180, 18.0), (200, 20.0)]) == []


def test_a_staircase_has_each_stair_in_any_order():
    assert find_steps(STAIRCASE) == STAIRS
    assert find_steps(list(reversed(STAIRCASE))) == STAIRS


def test_a_noisy_sloped_staircase_keeps_its_stairs():
    noisy = [(48, 5.1), (64, 5.2), (80, 8.1), (96, 7.9), (112, 8.2), (128, 8.3), (144, 11.2), (160, 11.0),
             (176, 11.3), (192, 11.4), (208, 14.1)]
    assert [(s.below_tokens, s.above_tokens) for s in find_steps(noisy)] == [(64, 80), (128, 144), (192, 208)]


def test_a_single_high_point_is_noise_not_a_step():
    assert find_steps([(100, 10.0), (110, 10.0), (120, 14.0), (130, 10.1), (140, 10.0)]) == []


def test_three_points_with_one_jump():
    assert find_steps([(100, 10.0), (110, 10.0), (120, 15.0)]) == [Step(110, 120, 10.0, 15.0)]


def test_two_points_make_a_step_only_far_beyond_their_token_ratio():
    assert find_steps([(196, 10.0), (197, 13.0)]) == [Step(196, 197, 10.0, 13.0)]
    assert find_steps([(100, 10.0), (200, 13.0)]) == []  # twice the tokens, 30% slower: no step
    assert find_steps([(100, 10.0), (101, 11.0)]) == []  # 10%: below min_jump


def test_min_jump_sets_how_large_a_jump_must_be():
    curve = [(100, 10.0), (110, 10.0), (120, 10.0), (130, 11.0), (140, 11.0), (150, 11.0)]
    assert find_steps(curve) == []
    assert find_steps(curve, min_jump=0.05) == [Step(120, 130, 10.0, 11.0)]


def test_a_drop_is_not_a_step_and_short_curves_have_none():
    assert find_steps([(100, 10.0), (110, 10.0), (120, 5.0), (130, 5.0)]) == []
    assert find_steps([(100, 10.0)]) == []
    assert find_steps([]) == []


@pytest.mark.parametrize("points", [[(100, 10.0), (100, 11.0)], [(100, math.nan), (110, 10.0)],
                                    [(100, -1.0), (110, 10.0)], [(0, 1.0), (10, 2.0)]])
def test_bad_points_are_a_caller_bug(points):
    with pytest.raises(ValueError):
        find_steps(points)


def test_offers_the_count_just_under_the_step_a_candidate_pays_for():
    assert offer_below_steps(STAIRS, [80]) == [64]  # right on the expensive side
    assert offer_below_steps(STAIRS, [70, 150]) == [64, 128]  # within a step; just above one
    assert offer_below_steps(STAIRS, [170]) == []  # far up the plateau: 170 > 144 x 1.1
    assert offer_below_steps(STAIRS, [170], reach=0.2) == [128]
    assert offer_below_steps(STAIRS, [60]) == []  # no step under it
    assert offer_below_steps(STAIRS, [64, 80]) == []  # 64 already is a candidate
    assert offer_below_steps(STAIRS, [80, 78, 80]) == [64]  # deduplicated


def test_keep_for_tokens_takes_the_largest_keep_rate_that_fits():
    tokens_by_keep = {0.25: 50, 0.5: 99, 0.7: 138, 1.0: 197}
    assert keep_for_tokens(tokens_by_keep, 100) == 0.5
    assert keep_for_tokens(tokens_by_keep, 138) == 0.7
    assert keep_for_tokens(tokens_by_keep, 1000) == 1.0
    assert keep_for_tokens(tokens_by_keep, 49) is None

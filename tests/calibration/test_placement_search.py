"""The placement search's logic on made-up scores: it meets the target, floats as little as a brute force
over every float set finds, is reproducible, and refuses an impossible target in one line.

The scores come from a toy model of harm: unit ``u`` alone in INT8 flips ``harm[u]`` % of the held-out
images, and harms add up. The expected answers are computed by brute force over all subsets here,
not by the code under test.
"""

from __future__ import annotations

import itertools

import pytest

from clca_deploy.calibration.search import HeldOutScore, search_float_units
from clca_deploy.errors import ClcaDeployError


def additive(harm: dict[str, float]):
    calls = []

    def evaluate(float_units: frozenset) -> HeldOutScore:
        calls.append(float_units)
        lost = sum(h for unit, h in harm.items() if unit not in float_units)
        return HeldOutScore(agreement=100.0 - lost, mean_abs_logit_error=lost / 100, max_abs_logit_error=lost / 10)

    return evaluate, calls


def smallest_float_set(harm: dict[str, float], target: float) -> int:
    """Brute force: the fewest float units any placement needs for ``target``."""
    units = list(harm)
    for size in range(len(units) + 1):
        for chosen in itertools.combinations(units, size):
            if 100.0 - sum(harm[u] for u in units if u not in chosen) >= target:
                return size
    raise AssertionError("unreachable")


def test_the_fastest_placement_is_kept_when_it_meets_the_target():
    evaluate, calls = additive({"a": 0.1, "b": 0.2})
    outcome = search_float_units(["a", "b"], evaluate, target=99.5, held_out=64)
    assert outcome.float_units == () and outcome.chosen.agreement == pytest.approx(99.7)
    assert len(calls) == 1  # nothing else was measured


@pytest.mark.parametrize("target", [99.5, 99.0, 97.0, 90.0])
def test_the_search_meets_the_target_with_as_few_float_units_as_brute_force(target):
    harm = {"patch": 0.05, "qkv3": 4.0, "logits3": 2.5, "fc1": 0.3, "fc2": 0.2, "probs5": 1.5, "head": 0.6, "proj": 0.1}
    evaluate, _ = additive(harm)
    outcome = search_float_units(list(harm), evaluate, target=target, held_out=200)
    assert outcome.chosen.agreement >= target
    assert 100.0 - sum(h for u, h in harm.items() if u not in outcome.float_units) == pytest.approx(outcome.chosen.agreement)
    assert len(outcome.float_units) == smallest_float_set(harm, target)
    if target == 90.0:  # all harms add up to 9.25: the fastest placement already meets it
        assert outcome.float_units == () and outcome.sensitivities == ()
    else:
        assert outcome.float_units[0] == "qkv3"  # most sensitive first
        assert [s.unit for s in outcome.sensitivities][:3] == ["qkv3", "logits3", "probs5"]


def test_bringing_units_back_undoes_a_too_long_prefix():
    """Harm that does not add up: x and y look equally bad alone, the prefix [x, y] meets the target,
    and x turns out harmless once y is float, so the search ends at [y]."""
    agreement = {
        frozenset(): 90.0,
        frozenset({"y", "z"}): 95.0, frozenset({"x", "z"}): 95.0, frozenset({"x", "y"}): 100.0,  # x, y, z alone in INT8
        frozenset({"x"}): 97.0, frozenset({"y"}): 99.5,
    }

    def evaluate(float_units: frozenset) -> HeldOutScore:
        value = agreement.get(float_units, 90.0)
        return HeldOutScore(value, 100.0 - value, 100.0 - value)

    outcome = search_float_units(["x", "y", "z"], evaluate, target=99.0, held_out=100)
    assert outcome.float_units == ("y",) and outcome.chosen.agreement == 99.5


def test_an_impossible_target_is_one_line():
    evaluate, _ = additive({"a": 2.0, "b": 3.0, "c": 2.5})
    with pytest.raises(ClcaDeployError) as caught:
        search_float_units(["a", "b", "c"], evaluate, target=99.5, held_out=64)
    message = str(caught.value)
    assert "\n" not in message
    assert "no INT8 placement reaches 99.5% top-1 agreement" in message and "64 held-out images" in message
    assert "best: 98.0% with only a in INT8" in message and "--target-agreement" in message


def test_the_ranking_is_reproducible_with_ties_in_graph_order():
    harm = {"a": 1.0, "b": 1.0, "c": 2.0, "d": 1.0}
    first = search_float_units(list(harm), additive(harm)[0], target=99.0, held_out=64)
    second = search_float_units(list(harm), additive(harm)[0], target=99.0, held_out=64)
    assert first == second
    assert [s.unit for s in first.sensitivities] == ["c", "a", "b", "d"]
    assert [s.rank for s in first.sensitivities] == [1, 2, 3, 4]

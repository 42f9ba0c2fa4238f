"""tune's rules on fakes: pruning by the budget, the screening order, and the pick (ties, floor, energy)."""

from __future__ import annotations

from clca_deploy.pipeline.tune.model import Budget, Candidate, Measurement
from clca_deploy.pipeline.tune.rules import pick, ruled_out, screening_order

MS25 = Budget(ms=25.0)


def cand(keep: float, runtime: str = "onnxruntime", precision: str = "int8", inference: str | None = None) -> Candidate:
    return Candidate(keep, precision, runtime, inference)


def meas(candidate: Candidate, p90: float | None = None, *, status: str = "ok", top1: float | None = None,
         agreement: float | None = None, p50: float | None = None, energy: float | None = None) -> Measurement:
    return Measurement(candidate, tokens=int(candidate.keep_rate * 197), status=status, p50_ms=p50, p90_ms=p90,
                       energy_mj_per_image=energy, top1=top1, agreement=agreement)


# ruled_out


def test_over_budget_rules_out_higher_keep_rates_of_its_family_only():
    ov = dict(runtime="openvino", inference="bf16")
    measured = [meas(cand(0.3, **ov), 20.0), meas(cand(0.5, **ov), 31.2)]
    pending = [cand(0.4, **ov), cand(0.7, **ov), cand(1.0, **ov), cand(0.7, runtime="openvino", inference="f32"),
               cand(0.7, runtime="onnxruntime"), cand(0.7, "openvino", "fp32", "bf16")]
    verdicts = ruled_out(measured, pending, MS25)
    assert verdicts == {
        cand(0.7, **ov): "openvino/int8/bf16/keep0.5 took 31.2 ms p90 > 25 ms budget; keep 0.7 has more tokens",
        cand(1.0, **ov): "openvino/int8/bf16/keep0.5 took 31.2 ms p90 > 25 ms budget; keep 1 has more tokens",
    }


def test_the_reason_names_the_nearest_measurement_below():
    measured = [meas(cand(0.3), 26.0), meas(cand(0.5), 30.0)]
    verdicts = ruled_out(measured, [cand(0.4), cand(0.7)], MS25)
    assert verdicts[cand(0.4)].startswith("onnxruntime/int8/-/keep0.3 took 26 ms p90")
    assert verdicts[cand(0.7)].startswith("onnxruntime/int8/-/keep0.5 took 30 ms p90")


def test_only_ok_measurements_with_the_metric_rule_out():
    measured = [meas(cand(0.3), 99.0, status="failed"), meas(cand(0.4), 99.0, status="pruned"), meas(cand(0.5), None)]
    assert ruled_out(measured, [cand(0.7), cand(1.0)], MS25) == {}


def test_the_same_keep_rate_and_a_measurement_at_the_limit_rule_out_nothing():
    assert ruled_out([meas(cand(0.5), 31.0)], [cand(0.5)], MS25) == {}
    assert ruled_out([meas(cand(0.5), 25.0)], [cand(0.7)], MS25) == {}


def test_energy_budget_prunes_on_energy_per_image():
    measured = [meas(cand(0.5), 5.0, energy=12.5), meas(cand(0.3, "tensorrt", "fp16"), 50.0, energy=4.0)]
    verdicts = ruled_out(measured, [cand(0.7), cand(0.7, "tensorrt", "fp16")], Budget(mj=10.0))
    assert verdicts == {cand(0.7): "onnxruntime/int8/-/keep0.5 took 12.5 mJ per image > 10 mJ budget; keep 0.7 has more tokens"}


# screening_order


def test_screening_order_goes_cheap_first_and_interleaves_families():
    a7, a3, a5 = cand(0.7), cand(0.3), cand(0.5)
    b5, b25 = cand(0.5, "openvino"), cand(0.25, "openvino")
    c1 = cand(1.0, "tensorrt", "fp16")
    assert screening_order([a7, a3, b5, a5, b25, c1, a3]) == [a3, b25, c1, a5, b5, a7]
    assert screening_order([]) == []


# pick


def test_pick_takes_the_most_accurate_within_budget():
    slow_best = meas(cand(1.0), 40.0, top1=90.0, agreement=100.0)
    good = meas(cand(0.7), 24.0, top1=88.5, agreement=99.5)
    fast = meas(cand(0.5), 15.0, top1=86.0, agreement=98.0)
    failed = meas(cand(0.6), 1.0, status="failed", top1=99.0)
    result = pick([fast, slow_best, good, failed], MS25, None)
    assert result.chosen is good
    assert result.eligible == (good, fast)
    assert result.closest == ()
    assert result.reason == ("onnxruntime/int8/-/keep0.7 is the most accurate candidate that meets the 25 ms budget: "
                             "88.50% top-1 at 24 ms p90, ahead of onnxruntime/int8/-/keep0.5 (86.00% top-1).")


def test_a_tie_goes_to_the_faster_then_lower_p50_then_key():
    a = meas(cand(0.5), 20.0, top1=88.0 + 1e-12, p50=18.0)  # more accurate only by rounding: a tie
    b = meas(cand(0.5, "openvino"), 19.0, top1=88.0, p50=18.5)
    assert pick([a, b], MS25).chosen is b
    assert pick([a, b], MS25).reason == ("openvino/int8/-/keep0.5 ties onnxruntime/int8/-/keep0.5 at 88.00% top-1 within the "
                                         "25 ms budget and is faster (19 ms p90 vs 20 ms p90).")
    c = meas(cand(0.5, "tensorrt"), 20.0, top1=88.0, p50=17.0)
    assert pick([a, c], MS25).chosen is c
    assert pick([a, c], MS25).reason.endswith("is faster at p50 (17 ms vs 18 ms).")
    d = meas(cand(0.5, "aaa"), 20.0, top1=88.0, p50=18.0)
    assert pick([a, d], MS25).chosen is d
    assert pick([d, a], MS25).chosen is d


def test_a_real_accuracy_difference_beats_speed_and_the_limit_itself_is_within_budget():
    a = meas(cand(0.5), 10.0, top1=88.0)
    b = meas(cand(0.7), 25.0, top1=88.01)
    assert pick([a, b], MS25).chosen is b


def test_the_agreement_floor_excludes_and_an_unmeasured_agreement_fails_it():
    accurate_disagrees = meas(cand(0.7), 20.0, top1=90.0, agreement=98.0)
    unknown = meas(cand(0.6), 20.0, top1=89.0, agreement=None)
    agrees = meas(cand(0.5), 20.0, top1=85.0, agreement=99.2)
    measured = [accurate_disagrees, unknown, agrees]
    assert pick(measured, MS25, 99.0).chosen is agrees
    assert pick(measured, MS25, 99.0).reason == (
        "onnxruntime/int8/-/keep0.5 is the only candidate that meets the 25 ms budget and the 99% agreement floor: "
        "85.00% top-1 at 20 ms p90.")
    assert pick(measured, MS25, None).chosen is accurate_disagrees
    assert pick(measured, MS25, 98.0).chosen is accurate_disagrees  # the floor is inclusive


def test_accuracy_falls_back_to_agreement_when_one_eligible_lacks_top1():
    labelled = meas(cand(0.5), 20.0, top1=95.0, agreement=97.0)
    unlabelled = meas(cand(0.7), 22.0, top1=None, agreement=99.0)
    assert pick([labelled, unlabelled], MS25).chosen is unlabelled


def test_energy_budget_picks_on_energy_and_skips_unmetered_candidates():
    budget = Budget(mj=10.0)
    frugal = meas(cand(0.5), 50.0, top1=85.0, energy=8.0)
    hungry = meas(cand(0.7), 5.0, top1=90.0, energy=11.0)
    unmetered = meas(cand(0.6), 5.0, top1=95.0, energy=None)
    result = pick([frugal, hungry, unmetered], budget)
    assert result.chosen is frugal
    assert "8 mJ per image" in result.reason and "10 mJ budget" in result.reason


def test_nothing_within_budget_names_the_three_fastest():
    ms = [meas(cand(k), p90, top1=80.0) for k, p90 in ((0.3, 27.0), (0.4, 26.0), (0.5, 30.0), (0.6, 33.0))]
    failed = meas(cand(0.2), 1.0, status="failed")
    result = pick([*ms, failed], MS25, 99.0)
    assert result.chosen is None and result.eligible == ()
    assert result.closest == (ms[1], ms[0], ms[2])
    assert result.reason == "nothing meets the 25 ms budget: the fastest, onnxruntime/int8/-/keep0.4, takes 26 ms p90."


def test_within_budget_but_below_the_floor_names_the_best_agreeing():
    low = meas(cand(0.3), 10.0, agreement=95.0)
    better = meas(cand(0.5), 20.0, agreement=98.1)
    unknown = meas(cand(0.4), 12.0, agreement=None)
    over = meas(cand(1.0), 40.0, agreement=100.0)
    result = pick([low, better, unknown, over], MS25, 99.0)
    assert result.chosen is None
    assert result.closest == (better, low, unknown)
    assert result.reason == ("3 candidates meet the 25 ms budget but none agrees >= 99% with the checkpoint "
                             "(the best, onnxruntime/int8/-/keep0.5, agrees 98.10%).")


def test_nothing_measured_says_so():
    result = pick([meas(cand(0.5), None, status="failed"), meas(cand(0.7), None, status="pruned")], MS25)
    assert result.chosen is None and result.closest == ()
    assert "no candidate was measured" in result.reason
    energy = pick([meas(cand(0.5), 10.0, top1=90.0)], Budget(mj=5.0))
    assert energy.chosen is None and "no power sensor" in energy.reason
    assert pick([], MS25).chosen is None

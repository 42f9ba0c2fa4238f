"""The step search of `tune` on a synthetic staircase: a step the budget falls into is bisected down to the
keep rate just under it, which is offered; a step entirely within the budget is reported, not probed."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from clca_deploy.pipeline.tune.model import Budget, Candidate, Measurement
from clca_deploy.pipeline.tune.search import refine_steps

FAMILY = ("int8", "openvino", "bf16")


def latency(tokens: int) -> float:
    """5 ms + 1 us per token, and 10 ms more from 501 tokens on: one hardware step."""
    return 5.0 + 0.001 * tokens + (10.0 if tokens > 500 else 0.0)


def measured(keep: float) -> Measurement:
    tokens = round(keep * 1000)
    ms = latency(tokens)
    return Measurement(Candidate(keep, *FAMILY), tokens, p50_ms=ms, p90_ms=ms, samples_ms=(ms, ms + 0.5), agreement=100.0)


@dataclass
class FakeRun:
    budget: Budget
    measured: dict = field(default_factory=dict)
    probed: list = field(default_factory=list)
    lines: list = field(default_factory=list)

    @property
    def config(self):
        return self

    def out_of_time(self) -> bool:
        return False

    def save(self, m: Measurement) -> None:
        self.measured[m.candidate.key] = m

    def measure(self, candidate: Candidate) -> Measurement:
        self.probed.append(candidate.keep_rate)
        return measured(candidate.keep_rate)

    def log(self, line: str) -> None:
        self.lines.append(line)


def _run(budget_ms: float) -> FakeRun:
    run = FakeRun(Budget(ms=budget_ms))
    for keep in (0.2, 0.4, 0.6, 0.8, 1.0):
        run.save(measured(keep))
    return run


def test_a_step_the_budget_falls_into_is_narrowed_to_the_keep_rate_under_it():
    run = _run(budget_ms=10.0)  # 400 tokens: 5.4 ms; 600 tokens: 15.6 ms
    (step,) = refine_steps(run, [])
    assert run.probed == [0.5, 0.55, 0.525]  # bisection: 500 tokens is under the step, 550 and 525 over it
    assert step["crosses_budget"] and step["offered"] == "openvino/int8/bf16/keep0.5"
    assert (step["below_tokens"], step["above_tokens"]) == (500, 525)
    assert "openvino/int8/bf16/keep0.5" in run.measured  # the probe is a candidate like any other


def test_a_step_within_the_budget_is_reported_without_probes():
    run = _run(budget_ms=50.0)
    (step,) = refine_steps(run, [])
    assert run.probed == [] and not step["crosses_budget"] and step["offered"] is None
    assert (step["below_tokens"], step["above_tokens"]) == (400, 600)


def test_contenders_take_turns_in_rounds_each_opened_by_an_untimed_call():
    from clca_deploy.bench.latency import ROUND_CALLS, time_in_rounds

    calls: list[str] = []
    ticks = iter(range(0, 10_000))
    runs = {name: (lambda batch, name=name: calls.append(name)) for name in ("a", "b")}
    samples = time_in_rounds(runs, None, warmup=1, iters=7, clock=lambda: next(ticks) / 1000.0)
    assert {name: len(values) for name, values in samples.items()} == {"a": 7, "b": 7}
    # warm-up a b, then rounds: a x (1 + 5), b x (1 + 5), a x (1 + 2), b x (1 + 2)
    expected = ["a", "b"] + ["a"] * (1 + ROUND_CALLS) + ["b"] * (1 + ROUND_CALLS) + ["a"] * 3 + ["b"] * 3
    assert calls == expected
    assert all(value == pytest.approx(1.0) for values in samples.values() for value in values)  # one tick per timed call


def test_keep_rates_with_the_same_token_count_are_one_point_of_the_curve():
    from clca_deploy.pipeline.tune.search import curves

    same = measured(1.0)
    twin = Measurement(Candidate(0.972, *FAMILY), same.tokens, p50_ms=same.p50_ms, p90_ms=same.p90_ms, samples_ms=(1.0,))
    (points,) = curves([measured(0.2), same, twin]).values()
    assert [(m.tokens, m.candidate.keep_rate) for m in points] == [(200, 0.2), (1000, 0.972)]
    run = _run(budget_ms=10.0)
    run.save(twin)
    assert refine_steps(run, [])  # no error on the twin; the step is still found

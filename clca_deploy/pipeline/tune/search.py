"""Token counts where latency steps: each family's latency curve searched for a step, and the keep rate
just under it measured (WACV 2025, "Pruning One More Token is Enough": on edge hardware latency steps
at hardware-dependent token counts, so the count just under a step buys time at almost no accuracy)."""

from __future__ import annotations

from collections import defaultdict

from clca_deploy.pipeline.tune.model import Candidate, Measurement
from clca_deploy.pipeline.tune.steps import find_steps

MAX_PROBES = 3  # keep rates exported and measured per step while bisecting
MIN_KEEP_GAP = 0.02


def curves(measurements) -> dict[tuple, list[Measurement]]:
    """Each family's measured points (status ok), by token count; of keep rates that give the same token
    count (0.97 and 1.0 can), the lowest stands for them: the graphs are the same size."""
    by_family: dict[tuple, dict[int, Measurement]] = defaultdict(dict)
    for m in sorted(measurements, key=lambda m: m.candidate.keep_rate, reverse=True):
        if m.status == "ok" and m.p50_ms is not None and m.tokens > 0:
            by_family[m.candidate.family][m.tokens] = m
    return {family: [points[t] for t in sorted(points)] for family, points in by_family.items()}


def curve_latency(m: Measurement) -> float:
    """A point's latency on the curve: its fastest screened call (a screen is a few calls on a busy machine;
    the lower envelope shows where the hardware steps, the median also shows the neighbours' noise)."""
    return min(m.samples_ms) if m.samples_ms else m.p50_ms


def refine_steps(run, pool) -> list[dict]:
    """Every step in a family's curve; those the budget falls into (the lower side meets it, the upper does
    not) are bisected (each probe screened like any candidate, so it may be picked) until the step lies
    between neighbouring probes, and the probe just under it is offered."""
    budget = run.config.budget
    found = []
    for family, points in curves(run.measured.values()).items():
        by_tokens = {m.tokens: m for m in points}
        for step in find_steps([(m.tokens, curve_latency(m)) for m in points]):
            below, above = by_tokens.get(step.below_tokens), by_tokens.get(step.above_tokens)
            if below is None or above is None:
                continue
            crosses = _value(below, budget) <= budget.limit < _value(above, budget)
            if crosses:
                below, above = _bisect(run, family, below, above)
            found.append({
                "family": "/".join(str(part) for part in family if part), "below_tokens": below.tokens,
                "above_tokens": above.tokens, "below_ms": curve_latency(below), "above_ms": curve_latency(above),
                "crosses_budget": crosses, "offered": below.candidate.key if crosses else None,
            })
            run.log(f"latency step in {found[-1]['family']}: {below.tokens} -> {above.tokens} tokens "
                    f"({curve_latency(below):.1f} -> {curve_latency(above):.1f} ms)"
                    + (f"; offering {below.candidate.key}" if crosses else ""))
    return found


def _value(m: Measurement, budget) -> float:
    value = m.value(budget.metric)
    return float("inf") if value is None else value


def _bisect(run, family: tuple, below: Measurement, above: Measurement) -> tuple[Measurement, Measurement]:
    """Narrow the step: a probe whose latency stays nearer the lower side moves ``below`` up, else ``above`` down."""
    for _ in range(MAX_PROBES):
        low, high = below.candidate.keep_rate, above.candidate.keep_rate
        if run.out_of_time() or high - low < MIN_KEEP_GAP:
            break
        candidate = Candidate(round((low + high) / 2, 3), *family)
        probe = run.measured.get(candidate.key) or run.measure(candidate)
        run.save(probe)
        if probe.status != "ok" or probe.tokens in (below.tokens, above.tokens):
            break
        if curve_latency(probe) - curve_latency(below) < (curve_latency(above) - curve_latency(below)) / 2:
            below = probe
        else:
            above = probe
    return below, above

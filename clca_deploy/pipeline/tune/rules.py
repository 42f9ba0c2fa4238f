"""tune's decisions, as pure functions: which candidates the budget rules out unmeasured, in which order to
screen them, and which measured one to pick.

Within one family (precision, runtime, OpenVINO float precision) a higher keep rate keeps more tokens, and
more tokens never make a model cheaper: a candidate measured over the budget rules out every higher keep
rate of its family without timing them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable

from clca_deploy.pipeline.tune.model import Budget, Candidate, Measurement, accuracy_field

TIE = 1e-9  # accuracies closer than this are a tie: the faster candidate wins
_UNITS = {"p90_ms": ("ms p90", "ms"), "energy_mj_per_image": ("mJ per image", "mJ")}


def _number(value: float) -> str:
    return f"{value:.4g}" if abs(value) < 1e4 else f"{value:.0f}"


def _amount(value: float, metric: str) -> str:
    return f"{_number(value)} {_UNITS[metric][0]}"


def _budget_text(budget: Budget) -> str:
    return f"{_number(budget.limit)} {_UNITS[budget.metric][1]} budget"


def ruled_out(measured: Iterable[Measurement], pending: Iterable[Candidate], budget: Budget) -> dict[Candidate, str]:
    """The pending candidates the budget rules out, each with a one-line reason naming the measurement that
    rules it out: an ``ok`` measurement over the budget rules out its family's strictly higher keep rates.

    Measurements that are not ``ok`` or lack the budget's metric (no energy where no sensor was read) rule
    out nothing. Where several do, the reason names the nearest (the highest keep rate below the pending one).
    """
    metric, limit = budget.metric, budget.limit
    over: dict[tuple, list[Measurement]] = {}
    for item in measured:
        value = item.value(metric)
        if item.status == "ok" and value is not None and value > limit:
            over.setdefault(item.candidate.family, []).append(item)
    verdicts: dict[Candidate, str] = {}
    for candidate in pending:
        fewer_tokens = [m for m in over.get(candidate.family, ()) if m.candidate.keep_rate < candidate.keep_rate]
        if fewer_tokens:
            nearest = max(fewer_tokens, key=lambda m: m.candidate.keep_rate)
            verdicts[candidate] = (
                f"{nearest.candidate.key} took {_amount(nearest.value(metric), metric)} > {_budget_text(budget)}; "
                f"keep {candidate.keep_rate:g} has more tokens"
            )
    return verdicts


def screening_order(candidates: Iterable[Candidate]) -> list[Candidate]:
    """The candidates, cheap first: each family's lowest keep rate first, families taken in turn (in the order
    they first appear), so a time limit cuts every family at the same depth. Duplicates are dropped."""
    families: dict[tuple, list[Candidate]] = {}
    for candidate in dict.fromkeys(candidates):
        families.setdefault(candidate.family, []).append(candidate)
    ladders = [sorted(group, key=lambda c: c.keep_rate) for group in families.values()]
    depth = max(map(len, ladders), default=0)
    return [ladder[rung] for rung in range(depth) for ladder in ladders if rung < len(ladder)]


@dataclass(frozen=True)
class Pick:
    """What `pick` decided: the chosen measurement (None when nothing qualifies), one sentence saying why,
    the candidates nearest to qualifying when nothing does (for the CLI to name before it exits 1), and
    every qualifying one, the chosen first, then by accuracy and speed."""

    chosen: Measurement | None
    reason: str
    closest: tuple[Measurement, ...] = ()
    eligible: tuple[Measurement, ...] = ()


def _agrees(item: Measurement, floor: float | None) -> bool:
    return floor is None or (item.agreement is not None and item.agreement >= floor)


def _scorer(eligible: list[Measurement]) -> tuple[str, Callable[[Measurement], float]]:
    """top-1 when every eligible candidate has it (labelled --data), else agreement; unmeasured ranks last."""
    field = accuracy_field(eligible)
    label = "top-1" if field == "top1" else "agreement"
    return label, lambda m: -math.inf if getattr(m, field) is None else getattr(m, field)


def _speed(metric: str) -> Callable[[Measurement], tuple]:
    return lambda m: (m.value(metric), math.inf if m.p50_ms is None else m.p50_ms, m.candidate.key)


def pick(measurements: Iterable[Measurement], budget: Budget, min_agreement: float | None = None) -> Pick:
    """The most accurate ``ok`` candidate whose budget metric is <= the limit and whose agreement with the
    checkpoint is >= ``min_agreement`` (an unmeasured agreement fails a floor that is set).

    Accuracy is top-1 when every such candidate has one, else agreement. Accuracies within ``TIE`` go to the
    lower metric value, then the lower p50, then the candidate key, so the pick is deterministic.
    """
    metric, limit = budget.metric, budget.limit
    measured = [m for m in measurements if m.status == "ok" and m.value(metric) is not None]
    within = [m for m in measured if m.value(metric) <= limit]
    eligible = [m for m in within if _agrees(m, min_agreement)]
    if not eligible:
        return _nothing(measured, within, budget, min_agreement)
    label, score = _scorer(eligible)
    speed = _speed(metric)
    best = max(map(score, eligible))
    chosen = min((m for m in eligible if score(m) >= best - TIE), key=speed)
    rest = sorted((m for m in eligible if m is not chosen), key=lambda m: (-score(m), speed(m)))
    reason = _why(chosen, rest[0] if rest else None, label, score, budget, min_agreement)
    return Pick(chosen, reason, (), (chosen, *rest))


def _accuracy(value: float, label: str) -> str:
    return f"{value:.2f}% {label}" if math.isfinite(value) else f"no {label} measured"


def _why(chosen: Measurement, runner: Measurement | None, label: str, score: Callable, budget: Budget,
         floor: float | None) -> str:
    metric, key = budget.metric, chosen.candidate.key
    meets = _budget_text(budget) + ("" if floor is None else f" and the {floor:g}% agreement floor")
    accuracy, cost = _accuracy(score(chosen), label), _amount(chosen.value(metric), metric)
    if runner is None:
        return f"{key} is the only candidate that meets the {meets}: {accuracy} at {cost}."
    if score(runner) < score(chosen) - TIE:
        return (f"{key} is the most accurate candidate that meets the {meets}: {accuracy} at {cost}, "
                f"ahead of {runner.candidate.key} ({_accuracy(score(runner), label)}).")
    if chosen.value(metric) < runner.value(metric):
        won = f"is faster ({cost} vs {_amount(runner.value(metric), metric)})"
    elif chosen.p50_ms is not None and chosen.p50_ms != runner.p50_ms:  # it won on p50, so it has one
        other = "none measured" if runner.p50_ms is None else f"{_number(runner.p50_ms)} ms"
        won = f"is faster at p50 ({_number(chosen.p50_ms)} ms vs {other})"
    else:
        won = "comes first by name at the same speed"
    return f"{key} ties {runner.candidate.key} at {accuracy} within the {meets} and {won}."


def _nothing(measured: list[Measurement], within: list[Measurement], budget: Budget, floor: float | None) -> Pick:
    """No pick: why, and the candidates nearest to qualifying (the fastest, or those within the budget that
    agree best with the checkpoint when the agreement floor is what failed)."""
    metric = budget.metric
    if not measured:
        what = "a p90 latency" if metric == "p90_ms" else "an energy per image (no power sensor was read)"
        return Pick(None, f"nothing can be shown to meet the {_budget_text(budget)}: no candidate was measured with {what}.")
    speed = _speed(metric)
    if not within:
        closest = tuple(sorted(measured, key=speed)[:3])
        fastest = closest[0]
        return Pick(None, f"nothing meets the {_budget_text(budget)}: the fastest, {fastest.candidate.key}, takes "
                          f"{_amount(fastest.value(metric), metric)}.", closest)
    ranked = sorted(within, key=lambda m: (m.agreement is None, -(m.agreement or 0.0), speed(m)))
    best, count = ranked[0], f"{len(within)} candidate{'s meet' if len(within) > 1 else ' meets'}"
    if best.agreement is None:
        detail = "none has a measured agreement with the checkpoint"
    else:
        detail = f"none agrees >= {floor:g}% with the checkpoint (the best, {best.candidate.key}, agrees {best.agreement:.2f}%)"
    return Pick(None, f"{count} the {_budget_text(budget)} but {detail}.", tuple(ranked[:3]))

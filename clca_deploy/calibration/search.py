"""Accuracy-aware INT8 placement: keep float only the units a target agreement needs, most sensitive first.

The search starts from the fastest placement (every candidate in INT8). If that misses the target,
it measures each unit alone in INT8 (everything else float) on held-out images, ranks the units by
the harm they do there, floats the shortest most-sensitive-first prefix that meets the target
(bisection over the prefix length), then tries to bring each floated unit back to INT8, least
sensitive first. Every placement it reports was measured; nothing is extrapolated.

The logic here is pure: ``evaluate`` maps a set of float units to a ``HeldOutScore``, so tests drive
it with made-up scores and ``int8.py`` with onnxruntime on the held-out images.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable, Sequence

from clca_deploy.errors import ClcaDeployError


@dataclass(frozen=True)
class HeldOutScore:
    """A placement measured against the FP32 graph on the held-out calibration images."""

    agreement: float  # % of images whose top-1 class is FP32's
    mean_abs_logit_error: float
    max_abs_logit_error: float
    crop_agreement: float | None = None  # GLSim: % of images whose crop selection is FP32's; None without a crop step

    def meets(self, target: float) -> bool:
        """Top-1 agreement and, where the model crops, the same crop on at least ``target`` % of the images."""
        return self.agreement >= target and (self.crop_agreement is None or self.crop_agreement >= target)

    @property
    def worst(self) -> float:
        return min(self.agreement, self.crop_agreement if self.crop_agreement is not None else 100.0)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class UnitSensitivity:
    """How much harm one unit does alone in INT8 (every other unit float); rank 1 does the most."""

    unit: str
    alone_in_int8: HeldOutScore
    rank: int

    def to_dict(self) -> dict:
        return {"unit": self.unit, "rank": self.rank, "alone_in_int8": self.alone_in_int8.to_dict()}


@dataclass(frozen=True)
class SearchOutcome:
    float_units: tuple[str, ...]  # most sensitive first
    chosen: HeldOutScore
    fastest: HeldOutScore
    sensitivities: tuple[UnitSensitivity, ...]  # empty when the fastest placement met the target
    evaluations: int


Evaluate = Callable[[frozenset], HeldOutScore]


class _Memo:
    """Each float set is measured once, however often the search asks."""

    def __init__(self, evaluate: Evaluate) -> None:
        self.evaluate, self.scores = evaluate, {}

    def __call__(self, float_units) -> HeldOutScore:
        key = frozenset(float_units)
        if key not in self.scores:
            self.scores[key] = self.evaluate(key)
        return self.scores[key]


def search_float_units(units: Sequence[str], evaluate: Evaluate, target: float, held_out: int) -> SearchOutcome:
    """The float units for ``target`` % top-1 agreement, or a one-line error when only an all-float graph meets it."""
    memo = _Memo(evaluate)
    fastest = memo(())
    if fastest.meets(target):
        return SearchOutcome((), fastest, fastest, (), len(memo.scores))
    sensitivities = rank_units(units, memo)
    order = [s.unit for s in sensitivities]
    if len(order) < 2 or not memo(order[:-1]).meets(target):
        best = memo(order[:-1]) if len(order) >= 2 else fastest
        raise _unreachable(target, held_out, best, order[-1] if order else None)
    chosen = _shortest_prefix(order, memo, target)
    chosen = _bring_back(chosen, memo, target)
    return SearchOutcome(tuple(chosen), memo(chosen), fastest, tuple(sensitivities), len(memo.scores))


def rank_units(units: Sequence[str], memo: Evaluate) -> list[UnitSensitivity]:
    """Units by harm alone in INT8: fewest agreeing images (top-1 or crop) first, then the largest mean logit error;
    graph order breaks ties, so the ranking is reproducible."""
    everything = frozenset(units)
    scored = [(unit, memo(everything - {unit})) for unit in units]
    position = {unit: i for i, unit in enumerate(units)}
    scored.sort(key=lambda pair: (pair[1].worst, -pair[1].mean_abs_logit_error, position[pair[0]]))
    return [UnitSensitivity(unit, score, rank) for rank, (unit, score) in enumerate(scored, start=1)]


def _shortest_prefix(order: list[str], memo: Evaluate, target: float) -> list[str]:
    """The shortest prefix of ``order`` (most sensitive first) whose float set meets ``target``; the
    prefix of all but the last unit is known to meet it."""
    low, high = 1, len(order) - 1
    while low < high:
        middle = (low + high) // 2
        if memo(order[:middle]).meets(target):
            high = middle
        else:
            low = middle + 1
    return order[:high]


def _bring_back(chosen: list[str], memo: Evaluate, target: float) -> list[str]:
    """Try each floated unit in INT8 again, least sensitive first; keep it there where the target still holds."""
    for unit in reversed(list(chosen)):
        trial = [u for u in chosen if u != unit]
        if memo(trial).meets(target):
            chosen = trial
    return chosen


def _unreachable(target: float, held_out: int, best: HeldOutScore, last: str | None) -> ClcaDeployError:
    where = f"with only {last} in INT8" if last else "with its one INT8 unit"
    crops = "" if best.crop_agreement is None else " (and the same crop)"
    return ClcaDeployError(
        f"no INT8 placement reaches {target:g}% top-1 agreement{crops} with FP32 on the {held_out} held-out images "
        f"(best: {best.worst:.1f}% {where}); lower --target-agreement, or use FP16 (`clca-deploy calibrate --fp16`)."
    )

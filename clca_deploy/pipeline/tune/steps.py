"""Where latency steps with the token count, and which token counts sit just under a step.

On edge hardware latency is not linear in the number of tokens: kernels work in tiles, so it stays flat
and then jumps at token counts that depend on the hardware ("Pruning One More Token is Enough", WACV
2025). A candidate just above such a step pays for the whole step; pruning a few more tokens, down to the
largest count under the step, saves it. These functions are pure: they read measured (tokens, ms) points.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

TREND_FACTOR = 3.0  # a rise must exceed this many times what the curve's own trend explains over its gap


@dataclass(frozen=True)
class Step:
    """A jump in latency between two neighbouring measured token counts: ``below_tokens`` is the largest
    measured count under the step, ``above_tokens`` the smallest one over it."""

    below_tokens: int
    above_tokens: int
    below_ms: float
    above_ms: float


def _checked_curve(points: Sequence[tuple[int, float]]) -> list[tuple[int, float]]:
    curve = sorted((int(tokens), float(ms)) for tokens, ms in points)
    counts = [tokens for tokens, _ in curve]
    if len(set(counts)) != len(counts):
        raise ValueError(f"token counts must be distinct, got {counts}")
    if any(tokens < 1 or not (math.isfinite(ms) and ms >= 0) for tokens, ms in curve):
        raise ValueError("token counts must be >= 1 and latencies finite and >= 0")
    return curve


def find_steps(points: Sequence[tuple[int, float]], min_jump: float = 0.15) -> list[Step]:
    """The steps of one family's latency curve; ``points`` are (token count, latency ms), in any order.

    A rise from neighbouring counts a to b is a step when it exceeds ``min_jump`` x latency(a) (so noise
    smaller than that is never a step) AND ``TREND_FACTOR`` x the curve's trend over b - a (so a steep but
    straight curve has none). The trend is the median per-token slope of the other neighbouring pairs (at
    least 0; leaving the pair under test out keeps a jump from raising its own bar on a short curve), which
    the flat stairs of a staircase dominate. With only two points there is no trend to measure: the
    steepest plausible one, latency proportional to tokens (ms(a) / a per token), stands in, so two points make a step
    only when the jump is far beyond their token ratio (10 -> 13 ms for 196 -> 197 tokens is one; for
    100 -> 200 tokens it is not). A rise that the next point falls back from (below the middle of the
    jump) is a spike of noise, not a step. Fewer than two points: no steps. Raises ValueError on repeated
    token counts, counts < 1 or latencies that are negative or not finite.
    """
    curve = _checked_curve(points)
    pairs = list(zip(curve, curve[1:]))
    if not pairs:
        return []
    slopes = [(ms_b - ms_a) / (b - a) for (a, ms_a), (b, ms_b) in pairs]
    steps = []
    for index, ((a, ms_a), (b, ms_b)) in enumerate(pairs):
        rise = ms_b - ms_a
        others = slopes[:index] + slopes[index + 1:]  # the jump under test must not set its own trend
        trend = max(statistics.median(others), 0.0) if others else ms_a / a
        explained = trend * (b - a)
        if rise <= min_jump * ms_a or rise <= TREND_FACTOR * explained:
            continue
        after = curve[index + 2][1] if index + 2 < len(curve) else None
        if after is not None and after < ms_a + rise / 2:
            continue  # the curve comes back down: one noisy point, not a new level
        steps.append(Step(a, b, ms_a, ms_b))
    return steps


def offer_below_steps(steps: Iterable[Step], candidate_tokens: Iterable[int], reach: float = 0.1) -> list[int]:
    """Token counts worth offering as candidates: for each candidate on the expensive side of a step, the
    ``below_tokens`` of that step, deduplicated and sorted.

    A candidate of t tokens is on the expensive side of the nearest step under it (the one with the largest
    ``below_tokens`` < t) when t lies within the step (below < t <= above) or above it by at most ``reach``
    x ``above_tokens``; farther up the plateau, the step is not what it pays for. Counts that already are
    candidates are not offered again.
    """
    steps = sorted(steps, key=lambda step: step.below_tokens)
    existing = set(candidate_tokens)
    offers = set()
    for tokens in existing:
        under = [step for step in steps if step.below_tokens < tokens]
        if under and tokens <= under[-1].above_tokens * (1 + reach):
            offers.add(under[-1].below_tokens)
    return sorted(offers - existing)


def keep_for_tokens(tokens_by_keep: Mapping[float, int], target: int) -> float | None:
    """The largest keep rate whose token count is <= ``target``; None if every keep rate has more."""
    fitting = [keep for keep, tokens in tokens_by_keep.items() if tokens <= target]
    return max(fitting, default=None)

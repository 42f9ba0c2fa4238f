"""How sure a measured agreement is: the 95% interval of a proportion counted on a finite set of images.

An agreement of 100% on 90 images and on 900 images are different claims: with 90, one flipped image
moves it by 1.1 points and a 99.5% target means no flip at all. The placement search's report and
the benchmarks quote this interval next to the percentage.
"""

from __future__ import annotations

import math

Z_95 = 1.959964  # two-sided 95% quantile of the standard normal


def wilson_interval(successes: int, trials: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval of ``successes`` in ``trials``, in percent (rounded to 3 places); it stays inside
    [0, 100] and is sensible at 0 and at ``trials`` successes, where the normal approximation is not."""
    if trials <= 0:
        return (0.0, 100.0)
    p = successes / trials
    scale = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / scale
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / scale
    return (round(100 * max(0.0, centre - half), 3), round(100 * min(1.0, centre + half), 3))


def images_to_show(target: float, z: float = Z_95) -> int:
    """The fewest images on which no disagreement puts the interval's lower end at or above ``target`` percent."""
    if target >= 100:
        return math.inf  # type: ignore[return-value]
    # with p = 1 the lower end is n / (n + z^2): solve n / (n + z^2) >= target / 100
    share = target / 100
    return math.ceil(share * z * z / (1 - share))

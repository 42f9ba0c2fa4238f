"""What `tune` is asked: the checkpoint, the images, the budget, the search space and its limits."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from clca_deploy.errors import ConfigError
from clca_deploy.pipeline.tune.model import PRECISIONS, Budget

DEFAULT_GRID_POINTS = 5  # keep rates from the checkpoint's own to 1.0
MAX_KEEP_RATES = 32


@dataclass(frozen=True)
class TuneConfig:
    """A tuning run. ``keep_rates`` None: a grid from the checkpoint's own keep rate to 1.0;
    ``runtimes`` None: every runtime this machine has; ``precisions``: the file precisions to try."""

    checkpoint: Path
    data: Path
    budget: Budget
    workdir: Path = Path("tune")
    batch: int = 1
    keep_rates: tuple[float, ...] | None = None
    precisions: tuple[str, ...] = PRECISIONS
    runtimes: tuple[str, ...] | None = None
    minutes: float = 10.0
    min_agreement: float | None = 99.0
    calibration_data: Path | None = None  # None: --data (the report says so)
    calibration_images: int = 64
    limit: int | None = 200  # images scored per candidate
    warmup: int = 3
    iters: int = 20
    steps: bool = True  # look for latency steps between token counts and offer the count under each
    progress: bool = False  # a progress bar over the candidates (the command line's; never into a pipe)

    def validate(self) -> None:
        budget = self.budget
        if (budget.ms is None) == (budget.mj is None):
            raise ConfigError("give one budget: --budget-ms (p90 latency per call) or --budget-mj (energy per image).")
        if not _positive(budget.limit):
            raise ConfigError(f"the budget must be a positive number, got {budget.limit!r}.")
        if not isinstance(self.batch, int) or isinstance(self.batch, bool) or not 1 <= self.batch <= 256:
            raise ConfigError(f"--batch must be 1..256, got {self.batch!r}.")
        if self.keep_rates is not None:
            if not self.keep_rates or len(self.keep_rates) > MAX_KEEP_RATES:
                raise ConfigError(f"give 1..{MAX_KEEP_RATES} keep rates, got {len(self.keep_rates)}.")
            bad = [k for k in self.keep_rates if not (_positive(k) and k <= 1.0)]
            if bad:
                raise ConfigError(f"keep rates must be in (0, 1], got {bad[0]!r}; e.g. --keep 0.1,0.25,0.5.")
        unknown = [p for p in self.precisions if p not in PRECISIONS]
        if not self.precisions or unknown:
            raise ConfigError(f"--precision takes {', '.join(PRECISIONS)}, got {','.join(self.precisions)!r}.")
        if not _positive(self.minutes) or self.minutes > 24 * 60:
            raise ConfigError(f"--minutes must be above 0 and at most a day, got {self.minutes!r}.")
        if self.min_agreement is not None and not (_finite(self.min_agreement) and 0 <= self.min_agreement <= 100):
            raise ConfigError(f"--min-agreement is a percentage 0..100, got {self.min_agreement!r}.")
        for name in ("warmup", "iters", "calibration_images"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < (1 if name != "warmup" else 0):
                raise ConfigError(f"{name} must be a whole number of at least {1 if name != 'warmup' else 0}, got {value!r}.")


def keep_grid(own: float, points: int = DEFAULT_GRID_POINTS) -> tuple[float, ...]:
    """``points`` keep rates from the checkpoint's own to 1.0, evenly spaced, two decimals."""
    if own >= 1.0:
        return (1.0,)
    step = (1.0 - own) / (points - 1)
    return tuple(sorted({round(own + i * step, 2) for i in range(points - 1)} | {round(own, 4), 1.0}))


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _positive(value: object) -> bool:
    return _finite(value) and value > 0

"""Progress bars: one rule and one library (rich) for every long loop (image decoding, logits, training).

A bar is drawn only where standard error is a terminal a person watches: never into a pipe, a log file
or a CI job (``CI`` set), where redrawn frames are noise and the progress lines already say the same.
Callers ask with ``progress_bar(...)`` and get None where no bar is shown, so a loop reads
``if bar is not None: bar.update(1)``.
"""

from __future__ import annotations

import os
import sys
from typing import Iterable, Iterator, TypeVar

from clca_deploy.terminal import printable

T = TypeVar("T")


def bars_shown() -> bool:
    """The one rule: standard error is a terminal, not a dumb one, and no CI job runs us."""
    if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
        return False
    if os.environ.get("TERM", "") == "dumb":
        return False
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # a replaced or closed standard error
        return False


class ProgressBar:
    """One rich progress bar on standard error, cleared when closed (tqdm's ``leave=False``).

    ``update`` and ``set_postfix`` take tqdm's arguments, so a loop written for either reads the same.
    Standard output is left alone while the bar is shown: it may be the JSON a pipe reads.
    """

    def __init__(self, total: int | None, description: str, unit: str):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn(unit),
            TimeRemainingColumn(), TextColumn("{task.fields[postfix]}"),
            console=Console(stderr=True), transient=True, redirect_stdout=False,
        )
        self._task = self._progress.add_task(printable(description), total=total, postfix="")
        self._progress.start()

    def update(self, advance: int = 1) -> None:
        self._progress.advance(self._task, advance)

    def set_postfix(self, **fields: object) -> None:
        """Short facts after the bar (``loss=0.41``), as tqdm's set_postfix shows them."""
        text = ", ".join(f"{name}={value}" for name, value in fields.items())
        self._progress.update(self._task, postfix=printable(text))

    def close(self) -> None:
        self._progress.stop()

    def __enter__(self) -> "ProgressBar":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def progress_bar(total: int | None, description: str, unit: str, enabled: bool = True) -> ProgressBar | None:
    """A bar, or None where the caller does not want one or ``bars_shown`` says no."""
    return ProgressBar(total, description, unit) if enabled and bars_shown() else None


def track(items: Iterable[T], total: int | None, description: str, unit: str, enabled: bool = True) -> Iterator[T]:
    """``items``, advancing a bar after each where one is shown."""
    bar = progress_bar(total, description, unit, enabled)
    if bar is None:
        yield from items
        return
    with bar:
        for item in items:
            yield item
            bar.update(1)

"""How a step ends other than with its result: skipped once running, failed with partial results, interrupted."""

from __future__ import annotations

from typing import Any


class Skip(Exception):
    """Raised by a step that finds, once running, that it has nothing to do here (the message says why)."""


class StepError(Exception):
    """A step failed but has partial results worth keeping (``result``)."""

    def __init__(self, message: str, result: dict[str, Any] | None = None):
        super().__init__(message)
        self.result = result or {}


class Interrupted(BaseException):
    """SIGTERM (a time limit) arrived: mark the running step and write the report before going."""


def one_line(exc: BaseException) -> str:
    """``Type: first line of the message``, for a report's reason field."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__

"""The command line's shared vocabulary (docs/cli.md), defined once for every command.

- ``--json [PATH]``: the result as JSON, into PATH or (alone, or ``-``) on standard output.
  A bare ``--json`` is rewritten to ``--json -`` before the command parses its arguments
  (:class:`VocabularyGroup`), so the option always takes a value and ``--json`` at the end of a
  line keeps working.
- ``-q/--quiet`` and ``-v/--verbose`` on every command (:func:`add_verbosity`), one place.
- ``--device``: ``cuda``, ``cuda:N``, a bare ``N``; ``cpu`` where a command can run there.
- lists: every value may be comma-separated as well as repeated (:func:`split_list`).
- hidden old spellings resolve through :func:`renamed`.
"""

from __future__ import annotations

import inspect
import json
import logging
import typing
from pathlib import Path
from typing import Any, Callable, Optional

import typer
from typer.core import TyperGroup

from clca_deploy.errors import ClcaDeployError
from clca_deploy.cli_options import WrappedCommand
from clca_deploy.logs import LOGGER_NAME
from clca_deploy.runtime.options import parse_cuda_device

STDOUT = "-"  # the conventional name for standard output, where a command supports it
JSON_FLAG = "--json"
_VERBOSITY = ("quiet", "verbose")


def json_option(what: str = "the result") -> Any:
    """``--json PATH|-`` for a command's result."""
    return typer.Option(
        None, JSON_FLAG, metavar="PATH|-",
        help=f"Write {what} as JSON to PATH; '--json' alone or '-': to standard output.",
    )


def hidden_alias(flag: str, new: str) -> Any:
    """An old spelling kept for scripts: accepted, not shown by --help."""
    return typer.Option(None, flag, hidden=True, help=f"Old spelling of {new}.")


def renamed(value: Any, old_value: Any, new: str, old: str, default: Any = None) -> Any:
    """The value given under the new spelling or the old one (not both); ``default`` if neither."""
    if old_value is not None and value is not None:
        raise ClcaDeployError(f"{old} is the old spelling of {new}; give only {new}.")
    if old_value is not None:
        return old_value
    return value if value is not None else default


def is_stdout(path: Optional[Path]) -> bool:
    """True for the output "-": standard output (a file really named "-" is given with its folder)."""
    return path is not None and str(path) == STDOUT


def json_target(target: Optional[Path], inputs: typing.Iterable[Optional[Path]] = ()) -> Optional[Path]:
    """Check a ``--json`` file before any work (standard output needs no check); returns it unchanged."""
    if target is None or is_stdout(target):
        return target
    from clca_deploy.artifacts import check_output_path, refuse_overwriting_inputs

    check_output_path(target)
    refuse_overwriting_inputs([target], inputs)
    return target


def show_result(data: dict, target: Optional[Path], text_view: Callable[[], None], kind: str) -> None:
    """The text view unless the JSON takes standard output; then the JSON, if asked for, named as every JSON
    the tool writes names itself: ``"format": "clca_deploy.<kind>/<version>"`` (version 1 unless it says)."""
    if not is_stdout(target):
        text_view()
    write_json_result(data if "format" in data else {"format": f"clca_deploy.{kind}/1", **data}, target)


def write_json_result(data: dict, target: Optional[Path]) -> None:
    """``data`` on standard output (``-``) or atomically into ``target`` (already checked)."""
    if target is None:
        return
    if is_stdout(target):
        typer.echo(json.dumps(data, indent=2))
        return
    from clca_deploy.artifacts import write_json

    write_json(target, data)


def split_list(values: typing.Iterable[str]) -> list[str]:
    """``["a,b", "c"]`` -> ``["a", "b", "c"]``: lists may be repeated or comma-separated."""
    return [part.strip() for value in values for part in str(value).split(",") if part.strip()]


def split_numbers(values: typing.Iterable[str], convert: Callable[[str], Any], expected: str) -> tuple:
    """A repeated or comma-separated list of numbers; anything else is one line saying what was ``expected``
    ("--batch-sizes takes whole numbers such as 1,8")."""
    try:
        return tuple(convert(part) for part in split_list(values))
    except ValueError:
        raise ClcaDeployError(f"{expected} (or repeated), got {','.join(values)!r}.") from None


def parse_device(text: Optional[str]) -> Optional[str]:
    """``cpu``, ``cuda`` (any GPU; the old ``gpu`` too) or ``cuda:N`` (a bare N too), spelled so."""
    if text is None:
        return None
    if text.strip().lower() in ("cpu", "cuda", "gpu"):
        return {"gpu": "cuda"}.get(text.strip().lower(), text.strip().lower())
    return f"cuda:{parse_cuda_device(text)}"


def normalize_json_flag(args: list[str]) -> list[str]:
    """A bare ``--json`` (last, or before another option) becomes ``--json -``."""
    normalized = []
    for index, arg in enumerate(args):
        normalized.append(arg)
        if arg == "--":
            return normalized + args[index + 1:]
        following = args[index + 1] if index + 1 < len(args) else None
        if arg == JSON_FLAG and (following is None or (following.startswith("-") and following != STDOUT)):
            normalized.append(STDOUT)
    return normalized


class VocabularyGroup(TyperGroup):
    """The app's command group: hands each command its arguments with a bare ``--json`` made explicit."""

    def resolve_command(self, ctx, args):
        name, command, rest = super().resolve_command(ctx, args)
        return name, command, normalize_json_flag(rest)


def set_verbosity(quiet: bool, verbose: bool) -> None:
    """The ``clca_deploy`` logger's level and a stderr handler for it: -q warnings only, -v debug."""
    if quiet and verbose:
        raise ClcaDeployError("-q/--quiet and -v/--verbose contradict each other; give one.")
    logger = logging.getLogger(LOGGER_NAME)
    logger.setLevel(logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO)
    if not any(isinstance(handler, _StandardErrorHandler) for handler in logger.handlers):
        logger.addHandler(_StandardErrorHandler())
        logger.propagate = False


class _StandardErrorHandler(logging.Handler):
    """The logger's lines on the standard error of the moment (not the stream there was when the handler was
    made: a test runner swaps it per command), escaped; standard output carries results."""

    def emit(self, record: logging.LogRecord) -> None:
        from clca_deploy.terminal import printable

        try:
            typer.echo(printable(record.getMessage()), err=True)
        except Exception:  # a closed or broken stream must not stop the command
            self.handleError(record)


def is_quiet() -> bool:
    return not logging.getLogger(LOGGER_NAME).isEnabledFor(logging.INFO)


def is_verbose() -> bool:
    return logging.getLogger(LOGGER_NAME).isEnabledFor(logging.DEBUG)


def cli_log(to_stderr: bool = False) -> Callable[[str], None]:
    """A command's progress lines: escaped (they quote file names), on standard output beside the text
    view or on standard error (``to_stderr``: where standard output carries JSON or a table); none with -q."""
    from clca_deploy.terminal import printable

    def log(line: str) -> None:
        if not is_quiet():
            typer.echo(printable(line), err=to_stderr)

    return log


class VerbosityCommand(WrappedCommand):
    """A command function plus ``-q/--quiet`` and ``-v/--verbose`` (typer reads the signature below)."""

    @property
    def __signature__(self) -> inspect.Signature:
        added = [
            self.added(name, bool, typer.Option(False, f"-{name[0]}", f"--{name}", help=help))
            for name, help in zip(_VERBOSITY, ("Warnings and errors only (results still shown).", "Debug lines too."))
        ]
        return inspect.Signature(self.own_parameters() + added)

    def __call__(self, **values: Any) -> Any:
        set_verbosity(values.pop("quiet"), values.pop("verbose"))
        return self._command(**values)


def add_verbosity(app: typer.Typer) -> None:
    """Give every command registered on ``app`` the verbosity options (call once, after registering)."""
    for info in app.registered_commands:
        if not isinstance(info.callback, VerbosityCommand):
            info.callback = VerbosityCommand(info.callback)

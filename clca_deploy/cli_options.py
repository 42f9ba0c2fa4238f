"""The runtime options of the commands that run a model, read from the runtime registry when typer asks.

A command written as ``def predict(..., runtime_options: RuntimeOptions)`` and decorated with
:func:`with_runtime_options` shows ``--runtime`` and every registered runtime's own options (each
runtime's options dataclass declares them, Polygraphy-style), and receives them as one validated
``RuntimeOptions``. The signature is computed each time typer builds the command, so a runtime
registered after this module was imported (a plugin, a test's toy runtime) shows up too.
"""

from __future__ import annotations

import inspect
import typing
from typing import Any, Callable, Literal, Optional

import typer

from clca_deploy.runtime.registry import RuntimeOptions, command_line_options, runtime_specs

OPTIONS_PARAMETER = "runtime_options"
RUNTIME_PARAMETER = "runtime"


def _runtime_help(many: bool) -> str:
    choices = "; ".join(f"{spec.name} ({spec.summary})" for spec in runtime_specs())
    if many:
        return f"Runtimes to run each model on, comma-separated or repeated (one row per pair that fits): {choices}."
    return f"Runtime for the file (default: its type's first): {choices}."


class WrappedCommand:
    """A typer command function that shows typer more parameters than it has: a subclass's ``__signature__``
    adds them, and its ``__call__`` takes them off before calling the function."""

    def __init__(self, command: Callable[..., Any]):
        self._command = command
        self.__name__ = command.__name__
        self.__doc__ = command.__doc__
        self.__module__ = command.__module__

    def own_parameters(self, leave_out: tuple[str, ...] = ()) -> list[inspect.Parameter]:
        """The function's own parameters, their annotations resolved (typer needs types, not strings)."""
        hints = typing.get_type_hints(self._command)
        return [parameter.replace(annotation=hints.get(parameter.name, parameter.annotation))
                for parameter in inspect.signature(self._command).parameters.values() if parameter.name not in leave_out]

    @staticmethod
    def added(name: str, annotation: Any, default: Any) -> inspect.Parameter:
        return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)

    @property
    def __annotations__(self) -> dict[str, Any]:  # typing.get_type_hints reads these
        return {name: parameter.annotation for name, parameter in self.__signature__.parameters.items()}


class RuntimeOptionsCommand(WrappedCommand):
    """A typer command function plus the registry's runtime options (see the module docstring)."""

    def __init__(self, command: Callable[..., Any], runtime_list: bool, triton_only: bool, only: tuple[str, ...]):
        super().__init__(command)
        self._runtime_list = runtime_list  # --runtime takes several (bench)
        self._triton_only = triton_only  # only what a Triton model config carries (serve, triton-repo)
        self._only = only  # only these option fields (sweep: the train.py args of its checkpoint)

    def _options(self):
        options = command_line_options(self._triton_only)
        return [option for option in options if not self._only or option.name in self._only]

    @property
    def __signature__(self) -> inspect.Signature:
        own = self.own_parameters(leave_out=(OPTIONS_PARAMETER, RUNTIME_PARAMETER))
        added = []
        if RUNTIME_PARAMETER in inspect.signature(self._command).parameters:  # its help lists the runtimes registered now
            runtime = typer.Option(None, "--runtime", help=_runtime_help(self._runtime_list),
                                   metavar="NAME,NAME" if self._runtime_list else None)
            names = Literal[tuple(spec.name for spec in runtime_specs())]  # type: ignore[misc]
            added.append(self.added(RUNTIME_PARAMETER, Optional[list[str]] if self._runtime_list else Optional[names], runtime))
        for option in self._options():
            added.append(self.added(option.name, *_typer_face(option)))
        return inspect.Signature(own + added)

    def __call__(self, **values: Any) -> Any:
        names = {option.name for option in self._options()}
        given = {name: values.pop(name) for name in list(values) if name in names}
        if self._runtime_list and values.get(RUNTIME_PARAMETER) is not None:  # repeated or comma-separated
            values[RUNTIME_PARAMETER] = ",".join(values[RUNTIME_PARAMETER])
        return self._command(runtime_options=RuntimeOptions(given), **values)


def _typer_face(option) -> tuple[Any, Any]:
    """The annotation and typer.Option of one runtime option: its choices as a Literal, its own parser."""
    flag = option.flag
    annotation = option.annotation
    extra: dict[str, Any] = {}
    if flag.choices:
        annotation = Literal[flag.choices]  # type: ignore[misc]
    if flag.parser is not None:
        extra = {"parser": flag.parser, "metavar": flag.metavar}
    return annotation, typer.Option(option.default, flag.flag, help=flag.help, **extra)


def with_runtime_options(
    runtime_list: bool = False, triton_only: bool = False, only: tuple[str, ...] = ()
) -> Callable[[Callable[..., Any]], RuntimeOptionsCommand]:
    """Decorate a command taking ``runtime_options`` (and, if it has one, a ``runtime`` parameter)."""
    return lambda command: RuntimeOptionsCommand(command, runtime_list, triton_only, only)


# The image budgets of `serve` and `triton-repo`; None keeps the defaults, which live in serving's configs.
MAX_IMAGE_MEGAPIXELS = typer.Option(
    None, "--max-image-megapixels",
    help="Largest image one request may hold, in megapixels; refused from its header before decoding (default 40; "
    "a 600-dpi A4 scan is 35).",
)
MAX_REQUEST_MEGAPIXELS = typer.Option(
    None, "--max-request-megapixels",
    help="Megapixels all images of one request may declare together; more is refused before decoding (default 160).",
)


def pixel_budgets(image: Optional[float], request: Optional[float]) -> dict[str, float]:
    """The budgets given on the command line, as keyword arguments of ServeConfig / TritonRepoConfig."""
    given = (("max_image_megapixels", image), ("max_request_megapixels", request))
    return {name: value for name, value in given if value is not None}

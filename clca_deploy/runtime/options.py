"""How a runtime's options dataclass declares its command-line options, and the checks several runtimes share.

A runtime's options are a frozen dataclass that checks its values in ``__post_init__`` (so an instance
is valid by construction). A field made with :func:`cli_option` is also a command-line option of every
command that runs a model; a plain field is for the Python API only. Two runtimes may declare the
same option (``--threads``) only with the same field name, type, default and help, which is what the
shared makers below give them; the registry refuses any other clash.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from clca_deploy.errors import ClcaDeployError
from clca_deploy.terminal import printable

_CLI = "clca_deploy.cli"  # the key of a field's metadata that holds its CliFlag
_CUDA_DEVICE = re.compile(r"(?:cuda:)?(\d{1,3})")
CUDA_DEVICE_METAVAR = "cuda|cuda:N|N"  # the spellings parse_cuda_device reads


@dataclass(frozen=True)
class CliFlag:
    """The command-line face of one option field."""

    flag: str  # "--threads"
    help: str
    triton: bool = False  # a stock Triton model config can carry it (triton-repo and serve offer it)
    choices: tuple[str, ...] = ()  # a fixed set of values: --help lists them, completion offers them
    parser: Callable[[str], Any] | None = None  # reads the command-line text (e.g. --device cuda:1)
    metavar: str | None = None  # how --help shows the value a parser reads


@dataclass(frozen=True)
class CliOption:
    """One option field as the command line shows it: its field name, type, default and flag."""

    name: str
    annotation: Any
    default: Any
    flag: CliFlag


def cli_option(default: Any, flag: str, help: str, triton: bool = False, choices: tuple[str, ...] = (),
               parser: Callable[[str], Any] | None = None, metavar: str | None = None) -> Any:
    """A dataclass field that is also a command-line option ``flag`` (see the module docstring)."""
    return dataclasses.field(default=default, metadata={_CLI: CliFlag(flag, help, triton, choices, parser, metavar)})


def threads_option() -> Any:
    """``--threads``, shared by the CPU runtimes."""
    return cli_option(None, "--threads", "CPU threads of the runtime (default: the runtime's own choice).", triton=True)


def device_option() -> Any:
    """``--device``, shared by the runtimes that run on a CUDA GPU."""
    return cli_option(
        0, "--device", "GPU the model runs on: cuda, cuda:N or N (an engine; onnxruntime's cuda and tensorrt providers, and auto's GPU).",
        parser=parse_cuda_device, metavar=CUDA_DEVICE_METAVAR,
    )


def parse_cuda_device(text: str) -> int:
    """``cuda`` -> 0, ``cuda:1`` or ``1`` -> 1: the GPU a model runs on (docs/cli.md)."""
    spelled = str(text).strip().lower()
    if spelled == "cuda":
        return 0
    match = _CUDA_DEVICE.fullmatch(spelled)
    if match is None:
        raise ClcaDeployError(f"--device must be cuda, cuda:N or a GPU index N, got {printable(text)!r}.")
    return int(match.group(1))


def cli_options(options_type: type) -> list[CliOption]:
    """The command-line options an options dataclass declares, with their evaluated types."""
    hints = typing.get_type_hints(options_type)
    return [
        CliOption(field.name, hints[field.name], field.default, field.metadata[_CLI])
        for field in dataclasses.fields(options_type)
        if _CLI in field.metadata
    ]


def option_values(options: Any) -> dict[str, Any]:
    """An options instance as plain JSON values by field name (paths as text), e.g. for Triton parameters."""
    values = {field.name: getattr(options, field.name) for field in dataclasses.fields(options)}
    return {name: str(value) if isinstance(value, Path) else value for name, value in values.items()}


def check_threads(threads: int | None) -> None:
    """None (the runtime's default) or a positive whole number."""
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ClcaDeployError(f"--threads must be a positive integer, got {threads}.")


def check_device(device: int) -> None:
    """A CUDA device index, as the driver numbers them (CUDA_VISIBLE_DEVICES applies)."""
    if isinstance(device, bool) or not isinstance(device, int) or device < 0:
        raise ClcaDeployError(f"--device must be a CUDA device index (0, 1, ...), got {device}.")


def check_choice(value: str, choices: tuple[str, ...], what: str) -> None:
    """``value`` is one of ``choices``; the error names ``what`` and the choices."""
    if value not in choices:
        raise ClcaDeployError(f"unknown {what} '{value}'; use {' or '.join(choices)}.")


def as_path(options: Any, name: str) -> None:
    """Turn a text path of a frozen options instance into a Path (values from JSON or the API arrive as text)."""
    value = getattr(options, name)
    if value is not None and not isinstance(value, Path):
        object.__setattr__(options, name, Path(value))

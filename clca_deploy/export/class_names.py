"""Class names for an export: the checkpoint's, a ``--class-names`` file, or the class folders of ``--data``.

Official checkpoints carry no class names, so without these an export names its classes "class 0", "class 1"...
Names from any source pass the one rule of the metadata reader (``metadata.class_names_problem``: one distinct
name per class, 1..200 characters, no control characters), so what export writes is what every runtime reads.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from clca_deploy.errors import ConfigError
from clca_deploy.metadata import MAX_CLASSES, MAX_NAME_CHARS, class_names_problem, read_regular_file

# Room for MAX_CLASSES names of MAX_NAME_CHARS characters (4 bytes each in UTF-8, quoted and separated in JSON).
MAX_CLASS_NAMES_BYTES = MAX_CLASSES * (4 * MAX_NAME_CHARS + 4)
FORMAT_HINT = "one name per line, or a JSON list of names, in the model's class order (class 0 first)"


def read_class_names_file(path: str | Path) -> list[Any]:
    """The names in ``path``: a JSON list, or one name per line (UTF-8; a BOM, CRLF line ends, a final newline and
    spaces around a name are fine). Not checked here: :func:`choose_class_names` checks them against the model."""
    path = Path(path)
    data = read_regular_file(path, "--class-names file", MAX_CLASS_NAMES_BYTES, error=ConfigError)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"--class-names file {path} is not UTF-8 text (byte {exc.start}); write {FORMAT_HINT}.") from None
    if text.lstrip()[:1] in ("[", "{"):  # JSON (an object is refused below: the order of its keys is no class order)
        try:
            names = json.loads(text)
        except RecursionError:
            raise ConfigError(f"--class-names file {path} nests its JSON too deeply; write {FORMAT_HINT}.") from None
        except ValueError as exc:
            where = f"{exc.msg}, line {exc.lineno}" if isinstance(exc, json.JSONDecodeError) else type(exc).__name__
            raise ConfigError(f"--class-names file {path} is not valid JSON ({where}); write {FORMAT_HINT}.") from None
        if not isinstance(names, list):
            raise ConfigError(f"--class-names file {path} holds JSON that is not a list; write {FORMAT_HINT}.")
        return names
    # split("\n"), not splitlines(): splitlines also breaks at \x0b, \x1c and others, which must be refused, not split at.
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line.removesuffix("\r").strip(" ") for line in lines]


@dataclass(frozen=True)
class ChosenNames:
    """The class names an export writes (None: none known), where they come from, and what to tell the user."""

    names: tuple[str, ...] | None
    source: str | None  # "checkpoint", "--class-names FILE", "--data DIR" or None
    notes: tuple[str, ...] = ()


def _from_file(path: Path, names: list[Any], num_classes: int, checkpoint: Sequence[str] | None) -> ChosenNames:
    problem = class_names_problem(names, num_classes)
    if problem is not None:
        raise ConfigError(f"--class-names file {path} {problem}; write {FORMAT_HINT}.")
    replaced = checkpoint is not None and tuple(checkpoint) != tuple(names)
    notes = (f"the class names from {path} replace the checkpoint's own.",) if replaced else ()
    return ChosenNames(tuple(names), f"--class-names {path}", notes)


def _from_folders(folder: Path, names: Sequence[str], num_classes: int) -> ChosenNames:
    if len(names) != num_classes:
        return ChosenNames(None, None, (
            f"{folder} has {len(names)} class folders for the model's {num_classes} classes, so their names were not "
            "written; give the class names with --class-names FILE.",
        ))
    problem = class_names_problem(list(names), num_classes)
    if problem is not None:
        raise ConfigError(
            f"the class folders of {folder} cannot name the classes: the names {problem}; give them with --class-names FILE."
        )
    note = (
        f"class names from the class folders of {folder}, in sorted order as ImageFolder numbers them: check that the "
        "model was trained on these classes in this order (or give them with --class-names FILE)."
    )
    return ChosenNames(tuple(names), f"--data {folder}", (note,))


def choose_class_names(
    num_classes: int, checkpoint: Sequence[str] | None, file: tuple[Path, list[Any]] | None = None,
    folders: tuple[Path, Sequence[str]] | None = None,
) -> ChosenNames:
    """A ``--class-names`` file (path, names read) wins, then the checkpoint's own names, then the class folders
    of ``--data`` (path, folder names) when there are as many as the model has classes; else none."""
    if file is not None:
        return _from_file(file[0], file[1], num_classes, checkpoint)
    if checkpoint:
        return ChosenNames(tuple(checkpoint), "checkpoint")
    if folders is not None:
        return _from_folders(folders[0], folders[1], num_classes)
    return ChosenNames(None, None)

"""Loading checkpoints: official ``train.py`` files, our own, bare state dicts and safetensors.

Pickled checkpoints are read with ``torch.load(weights_only=True)`` and an allow-list of
exactly one class, ``argparse.Namespace`` (how train.py stores its args). Anything else
in the pickle is refused before it can run.
"""

from __future__ import annotations

import argparse
import json
import math
import pickle
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch

from clca_deploy.errors import CheckpointError, ClcaDeployError, ConfigError
from clca_deploy.metadata import read_regular_file
from clca_deploy.model.clca import ClcaModel
from clca_deploy.model.config import ClcaConfig
from clca_deploy.model.fgir.checkpoint import FgirModel, is_fgir_state_dict
from clca_deploy.model.fgir.checkpoint import model_from_official as fgir_model_from_official

SAFETENSORS_CONFIG_KEY = "clca_config"
SAFETENSORS_CLASSES_KEY = "class_names"
_MAX_LISTED = 12


@dataclass(frozen=True)
class CheckpointInfo:
    """Where a model came from and how its settings were resolved."""

    path: str
    format: str  # "official" | "state_dict" | "safetensors"
    defaulted: tuple[str, ...] = ()  # args fields missing from the checkpoint (official fallback used)
    overridden: tuple[str, ...] = ()  # settings given by the caller instead of the checkpoint's
    epoch: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


# torch.save writes a zip archive, or in its legacy format a pickle that opens with the protocol
# opcode 0x80; a file starting otherwise (text, an image, an ONNX graph) is not a checkpoint.
_TORCH_SAVE_HEADS = (b"PK\x03\x04", b"\x80")
_EXPECTED = "expected a .pth/.safetensors from train.py or `clca-deploy train`"


def _not_a_checkpoint(path: Path, why: str, damaged: bool = False) -> CheckpointError:
    advice = "; if it is one, it is damaged or incomplete: re-copy it" if damaged else ""
    return CheckpointError(f"{path} is not a valid checkpoint ({why}): {_EXPECTED}{advice}.")


def _describe_start(head: bytes) -> str:
    if not head:
        return "it is empty"
    line = head.split(b"\n", 1)[0][:24]
    text = line.decode("ascii", errors="replace")
    if text.isprintable() and "\ufffd" not in text:
        return f"it starts with the text {text!r}"
    return f"it starts with the bytes {head[:8].hex(' ')}"


def check_checkpoint_file(path: str | Path) -> Path:
    """A cheap look (no unpickling) at whether ``path`` can be a checkpoint, so that a command taking
    one as a later input (``train --init``) refuses a wrong file before its work, not after it."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}. Check the path.")
    try:
        with open(path, "rb") as handle:
            head = handle.read(64)
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc.strerror or exc}.") from exc
    if path.suffix == ".safetensors":
        return path  # its header is JSON; safetensors itself says what is wrong with it
    if not head.startswith(_TORCH_SAVE_HEADS):
        raise _not_a_checkpoint(path, _describe_start(head))
    if head.startswith(b"PK") and not zipfile.is_zipfile(path):  # a zip cut short has no central directory
        raise _not_a_checkpoint(path, "a zip archive without its end", damaged=True)
    return path


def read_pickled_checkpoint(path: Path) -> Any:
    """``torch.load(weights_only=True)`` with only ``argparse.Namespace`` allowed, and clear errors."""
    path = check_checkpoint_file(path)
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        message = str(exc)
        blocked = re.search(r"GLOBAL ([\w.]+)", message)
        if blocked is None and "global" not in message.lower():
            raise _not_a_checkpoint(path, "a damaged pickle", damaged=True) from exc
        what = blocked.group(1) if blocked else "an unknown class"
        raise CheckpointError(
            f"refused to load {path}: its pickle holds {what}, and only tensors, plain containers and "
            "argparse.Namespace are allowed. Nothing in it was executed. Re-save the weights as a state "
            "dict or .safetensors from a trusted environment."
        ) from exc
    except MemoryError:
        raise
    except Exception as exc:  # torch.load raises IndexError, KeyError, RuntimeError... on bytes it cannot parse
        first_sentence = str(exc).split(". ")[0].splitlines()[0][:120] if str(exc).strip() else "no details"
        raise _not_a_checkpoint(path, f"{type(exc).__name__}: {first_sentence}", damaged=True) from exc


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        return load_file(str(path), device="cpu"), metadata
    except (SafetensorError, OSError, ValueError) as exc:
        raise _not_a_checkpoint(path, f"not readable as safetensors: {exc}", damaged=True) from exc


def _safetensors_json(path: Path, metadata: Mapping[str, str], key: str) -> Any:
    try:
        return json.loads(metadata[key])
    except ValueError as exc:
        raise CheckpointError(f"{path}: its safetensors metadata '{key}' is not valid JSON ({exc}); re-save it.") from exc


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    )


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None, str, dict[str, Any]]:
    """(state_dict, args or None, format, extras) without building a model."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}. Check the path.")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes). Re-copy it.")
    if path.suffix == ".safetensors":
        state_dict, metadata = _read_safetensors(path)
        args = _safetensors_json(path, metadata, SAFETENSORS_CONFIG_KEY) if SAFETENSORS_CONFIG_KEY in metadata else None
        if args is not None and not isinstance(args, Mapping):
            raise CheckpointError(f"{path}: its safetensors metadata '{SAFETENSORS_CONFIG_KEY}' is not a JSON object.")
        extras = {}
        if SAFETENSORS_CLASSES_KEY in metadata:
            extras["class_names"] = _safetensors_json(path, metadata, SAFETENSORS_CLASSES_KEY)
        return state_dict, args, "safetensors", extras
    obj = read_pickled_checkpoint(path)
    if isinstance(obj, Mapping) and "model" in obj and _is_state_dict(obj["model"]):
        args = obj.get("args")
        if isinstance(args, argparse.Namespace):
            args = vars(args)
        elif args is not None and not isinstance(args, Mapping):
            raise CheckpointError(f"{path}: 'args' is a {type(args).__name__}, expected argparse.Namespace or dict.")
        # ILA/GLSim train.py store their args as 'config' (see clca_deploy.model.fgir).
        extras = {k: obj[k] for k in ("epoch", "class_names", "config") if k in obj}
        return dict(obj["model"]), (dict(args) if args is not None else None), "official", extras
    if _is_state_dict(obj):
        return dict(obj), None, "state_dict", {}
    raise _not_a_checkpoint(
        path, f"it holds a {type(obj).__name__}, neither {{'model': state_dict, 'args': ...}} nor a state dict"
    )


def _describe_mismatch(model: ClcaModel, state_dict: Mapping[str, torch.Tensor]) -> str | None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    shapes = sorted(
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in set(expected) & set(state_dict)
        if state_dict[k].shape != expected[k].shape
    )
    parts = []
    for label, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes)):
        if items:
            shown = ", ".join(items[:_MAX_LISTED]) + (f" (+{len(items) - _MAX_LISTED} more)" if len(items) > _MAX_LISTED else "")
            parts.append(f"{len(items)} {label}: {shown}")
    return "; ".join(parts) or None


def model_from_state_dict(
    config: ClcaConfig, state_dict: Mapping[str, torch.Tensor], source: str = "state dict"
) -> ClcaModel:
    """Build the model for ``config`` and load ``state_dict`` strictly (fp16 weights become fp32)."""
    model = ClcaModel(config)
    state_dict = dict(state_dict)
    if config.ifa_head:
        # train.py keeps the unused Linear(D, 1000) head of CLA models; it never runs.
        for key in ("head.weight", "head.bias"):
            state_dict.pop(key, None)
    problem = _describe_mismatch(model, state_dict)
    if problem:
        kind = model.reducer_kind
        hint = (
            f" {config.method}'s weights have one row per output token, so they fix the keep rate and "
            "image size: use the trained ones."
            if kind is not None and kind.keep_rate_in_weights
            else ""
        )
        raise CheckpointError(
            f"{source} does not fit {config.model} at {config.img_size}px "
            f"(num_clr={config.num_clr}, ifa_head={config.ifa_head}, classes={config.num_classes}): {problem}. "
            f"Check the model name and settings the checkpoint was trained with.{hint}"
        )
    converted = {k: v.float() if v.is_floating_point() else v for k, v in state_dict.items()}
    model.load_state_dict(converted, strict=True)
    return model.eval()


def _load_fgir(path: str | Path, state_dict: dict, fmt: str, extras: dict, settings: dict) -> FgirModel:
    """An official ILA / GLSim checkpoint: its own 'config' decides everything (``settings`` stand in
    for it only where the file has none: bare fgir_vit state dicts with ``--config``)."""
    if settings and extras.get("config") is None:
        extras = {**extras, "config": settings}
    elif settings:
        raise ConfigError(
            f"{path} is an official ILA/GLSim checkpoint; its settings come from its own config, so "
            f"{', '.join(sorted(settings))} cannot be set (those options are for CLCA checkpoints)."
        )
    model = fgir_model_from_official(state_dict, extras.get("config"), source=str(path))
    model.source = CheckpointInfo(path=str(path), format=fmt, epoch=extras.get("epoch"))
    _attach_class_names(model, extras.get("class_names"), path)  # ours carry them; official ones do not
    return model


def _attach_class_names(model, class_names, path: str | Path) -> None:
    if class_names is None:
        return
    if len(class_names) != model.config.num_classes:
        raise CheckpointError(f"{path}: {len(class_names)} class names for {model.config.num_classes} classes.")
    model.class_names = tuple(str(c) for c in class_names)


def load_checkpoint(path: str | Path, **settings: Any) -> ClcaModel | FgirModel:
    """Load a checkpoint as an eval-mode ``ClcaModel``, or ``IlaModel`` / ``GlsimModel`` for
    official ILA / GLSim checkpoints (see ``clca_deploy.model.fgir``).

    Settings come from the checkpoint's ``args`` (official ``train.py`` names: ``model``,
    ``input_size``, ``keep_rate``, ``reduction_loc``, ``clc``, ``num_clr``, ...); keyword
    ``settings`` override them, and are required for bare state dicts without metadata.
    """
    state_dict, args, fmt, extras = read_checkpoint(path)
    if is_fgir_state_dict(state_dict):
        return _load_fgir(path, state_dict, fmt, extras, settings)
    if "keep_rate" in settings and isinstance(settings["keep_rate"], (int, float)):
        settings["keep_rate"] = [settings["keep_rate"]]
    if args is None and not settings:
        raise CheckpointError(
            f"{path} holds weights only: pass the settings it was trained with as a JSON file of its train.py "
            "args, --config ARGS.json (info, export, predict, bench, sweep; train takes --init-config), e.g. "
            '{"model": "evit_vit_tiny_patch16_224", "input_size": 224, "num_classes": 10, "keep_rate": [0.1], '
            '"clc": true, "num_clr": 1, "ifa_head": true}.'
        )
    base = dict(args or {})
    overridden = tuple(k for k in settings if k in base and base[k] != settings[k])
    try:
        config, defaulted = ClcaConfig.from_args(base, settings)
    except ClcaDeployError as exc:
        raise type(exc)(f"{path}: {exc}") from exc
    model = model_from_state_dict(config, state_dict, source=str(path))
    _attach_class_names(model, extras.get("class_names"), path)
    model.source = CheckpointInfo(
        path=str(path),
        format=fmt,
        defaulted=defaulted if args is not None else (),
        overridden=overridden,
        epoch=extras.get("epoch"),
    )
    return model


# A train.py args dump is a few KB; past this bound the file is not one (or is hostile).
MAX_TRAIN_ARGS_BYTES = 1 << 20
MAX_TRAIN_ARGS_LIST = 1024
_ARGS_EXAMPLE = '{"model": "evit_vit_tiny_patch16_224", "num_classes": 10, ...}'


def _simple(value: Any) -> bool:
    """A value train.py's argparse can hold: text, a finite number, true/false, null."""
    if isinstance(value, float):
        return math.isfinite(value)
    return value is None or isinstance(value, (str, bool)) or (isinstance(value, int) and abs(value) <= 2**53)


def _train_arg(value: Any) -> bool:
    """A simple value, or a flat list of them (keep_rate, reduction_loc...)."""
    if isinstance(value, list):
        return len(value) <= MAX_TRAIN_ARGS_LIST and all(_simple(item) for item in value)
    return _simple(value)


def read_train_args(path: str | Path) -> dict[str, Any]:
    """The settings a checkpoint was trained with, from a JSON object of official train.py args
    (``--config ARGS.json``: what a bare state dict lacks). Unknown keys are ignored, so a dump
    of ``vars(args)`` works as it is. Only a regular file of at most 1 MiB is read, and only an object
    of simple values (text, numbers, true/false, null, flat lists of them) is accepted."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"settings file {path} not found; give a JSON file of the checkpoint's train.py args.")
    data = read_regular_file(path, "settings file", MAX_TRAIN_ARGS_BYTES, error=ConfigError)
    try:
        args = json.loads(data.decode("utf-8"))
    except RecursionError:
        raise ConfigError(f"cannot read settings file {path} as JSON: it is nested too deeply; expected an object {_ARGS_EXAMPLE}") from None
    except ValueError as exc:  # UnicodeDecodeError is a ValueError too
        raise ConfigError(f"cannot read settings file {path} as JSON ({type(exc).__name__}: {str(exc)[:120]}).") from None
    if not isinstance(args, dict):
        raise ConfigError(
            f"settings file {path} holds a JSON {type(args).__name__}; expected an object of train.py args such as {_ARGS_EXAMPLE}."
        )
    bad = next((key for key, value in args.items() if not _train_arg(value)), None)
    if bad is not None:
        raise ConfigError(
            f"settings file {path}: {bad[:60]!r} is not a train.py arg value (text, a number, true/false, null or a flat "
            f"list of them); give the JSON of the checkpoint's train.py args, such as {_ARGS_EXAMPLE}."
        )
    return args

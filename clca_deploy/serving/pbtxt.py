"""A small writer of protobuf text format, for Triton's ``config.pbtxt``.

Plain dicts in, readable text out, so each config is written as data and checked against
Triton's own ModelConfig schema in the tests (tritonclient ships it).
"""

from __future__ import annotations

from typing import Any


class Enum(str):
    """An enum value (TYPE_FP32, KIND_GPU): written bare, not quoted."""


def to_pbtxt(message: dict[str, Any]) -> str:
    """``{"name": "m", "dims": [3, 4], "input": [{...}]}`` -> protobuf text format.

    Lists of dicts become repeated message blocks, lists of scalars ``[a, b]``, dicts nested
    messages; map fields are lists of ``{"key": ..., "value": ...}`` dicts.
    """
    return "".join(_lines(message, 0))


def _lines(message: dict[str, Any], depth: int):
    pad = "  " * depth
    for key, value in message.items():
        if isinstance(value, dict):
            yield f"{pad}{key} {{\n"
            yield from _lines(value, depth + 1)
            yield f"{pad}}}\n"
        elif isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
            for item in value:
                yield f"{pad}{key} {{\n"
                yield from _lines(item, depth + 1)
                yield f"{pad}}}\n"
        elif isinstance(value, list):
            yield f"{pad}{key}: [ {', '.join(_scalar(item) for item in value)} ]\n"
        else:
            yield f"{pad}{key}: {_scalar(value)}\n"


def _scalar(value: Any) -> str:
    if isinstance(value, Enum):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + "".join(_escape(ch) for ch in value) + '"'
    raise TypeError(f"cannot write {type(value).__name__} in protobuf text format")


def _escape(ch: str) -> str:
    # Printable ASCII as is; anything else (newlines, accented class names) as its UTF-8 bytes in
    # octal escapes, which protobuf's text parser reads back into the same string.
    if ch == '"':
        return '\\"'
    if ch == "\\":
        return "\\\\"
    if " " <= ch <= "~":
        return ch
    return "".join(f"\\{byte:03o}" for byte in ch.encode("utf-8"))

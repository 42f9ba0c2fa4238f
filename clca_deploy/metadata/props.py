"""The one reader of ONNX ``metadata_props`` (of a file, or copied into an engine's sidecar): every key
typed and bounded, and the rule that the graph's input and output must agree with it.

The bounds are what a model file may ask of this tool (docs/security.md). Leaf classifiers sit far inside
them; past them a crafted number would make a command build a name per class or allocate an image until
the machine runs out of memory.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from clca_deploy.errors import ClcaDeployError
from clca_deploy.terminal import has_unsafe_characters

FORMAT_KEY = "clca_deploy.format"
FORMAT_VERSION = "1"

MAX_CLASSES = 100_000
MIN_IMG_SIZE, MAX_IMG_SIZE = 16, 4096
MAX_RESIZE_FACTOR = 2  # resize_size in img_size..2*img_size; the official eval resizes to img_size / 0.875
MAX_BATCH = 4096  # the largest batch an export or an engine may fix or allow (export's dynamic batch stops there)
MAX_BLOCKS = 256  # entries of keep_rate, trained_keep_rate, reduction_loc and token_schedule
MAX_TOKENS = 1 << 21  # tokens in one block: 4096 px at patch size 4 is about a million
MAX_NAME_CHARS = 200  # a class name, model name, version...
MAX_VALUE_CHARS = 8 << 20  # one metadata value: room for MAX_CLASSES class names of ~80 characters
MAX_JSON_DEPTH = 8  # clca_config nests two levels deep; a deeper one was not written by this tool
MAX_ONNX_BYTES = (2 << 30) - 1  # protobuf parses no message over 2 GiB; larger models keep weights outside
# The resampling filters data.preprocess knows. It keeps its own table (name -> Pillow filter) because it
# is copied into Triton repositories, where nothing else of the package is; tests/security checks they agree.
INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "lanczos")

_SHA256 = re.compile("[0-9a-f]{64}")
_REQUIRED = object()
EXPORT_AGAIN = "export it again"


def has_control(text: str) -> bool:
    """Whether ``text`` holds a control, line-break or bidi character: one would split Triton's labels.txt
    (a name per line) or a printed line of results, or reorder what a terminal shows."""
    return has_unsafe_characters(text)


@dataclass(frozen=True)
class OnnxModelInfo:
    """Parsed metadata of an exported CLCA ONNX file."""

    model: str
    method: str
    backbone: str
    keep_rate: tuple[float, ...]
    trained_keep_rate: tuple[float, ...]
    reduction_loc: tuple[int, ...]
    token_schedule: tuple[tuple[int, int], ...]
    img_size: int
    preprocess: dict[str, Any]
    num_classes: int
    class_names: tuple[str, ...] | None
    source_sha256: str | None
    clca_config: dict[str, Any]
    clca_deploy_version: str
    precision: str
    family: str = "clca"  # "clca" | "ila" | "glsim"; files from before the key are CLCA
    only_runtime: str | None = None  # the one runtime that reads the file (OpenVINO's INT8 form), None: any

    def refuse_other_runtime(self, runtime: str, source: str) -> None:
        """A one-line error when ``runtime`` is not the one runtime this file is for."""
        if self.only_runtime is not None and runtime != self.only_runtime:
            raise ClcaDeployError(
                f"{source} is the {self.only_runtime} form of an INT8 model (`clca-deploy calibrate --{self.only_runtime}`), "
                f"which only {self.only_runtime} reads: pass --runtime {self.only_runtime}, or use the .int8.onnx file it was made from."
            )


def shown(value: Any) -> str:
    """A value from a file, as an error message quotes it: repr (control characters escaped), cut short."""
    text = repr(value)
    return text if len(text) <= 48 else text[:45] + "..."


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _depth(value: Any, limit: int) -> bool:
    """Whether ``value`` (decoded JSON) nests at most ``limit`` containers deep; stops at the limit."""
    if limit < 0:
        return False
    children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    return all(_depth(child, limit - 1) for child in children)


class _Props:
    """Typed, bounded lookups in one file's metadata_props; a failure is one error naming key and bound."""

    def __init__(self, props: Mapping[str, Any], source: str, remedy: str):
        self.props, self.source, self.remedy = props, source, remedy

    def fail(self, key: str, why: str) -> ClcaDeployError:
        return ClcaDeployError(f"{self.source} has damaged clca-deploy metadata: {key} {why}; {self.remedy}.")

    def raw(self, key: str, default: Any = _REQUIRED, limit: int = MAX_NAME_CHARS) -> Any:
        if key not in self.props:
            if default is _REQUIRED:
                raise self.fail(key, "is missing")
            return default
        value = self.props[key]
        if not isinstance(value, str):  # a sidecar's onnx_metadata is JSON: it may hold anything
            raise self.fail(key, f"is {shown(value)}, not text")
        if len(value) > limit:
            raise self.fail(key, f"is {len(value):,} characters long (at most {limit:,})")
        return value

    def text(self, key: str, default: Any = _REQUIRED) -> Any:
        value = self.raw(key, default)
        if isinstance(value, str) and (not value or has_control(value)):
            raise self.fail(key, f"is {shown(value)}; expected a non-empty name without control characters")
        return value

    def json(self, key: str, default: Any = _REQUIRED) -> Any:
        text = self.raw(key, default, MAX_VALUE_CHARS)
        if text is default and default is not _REQUIRED:
            return default
        try:
            return json.loads(text)
        except RecursionError:
            raise self.fail(key, "is JSON nested too deeply") from None
        except ValueError:
            raise self.fail(key, "is not valid JSON") from None

    def integer(self, key: str, low: int, high: int) -> int:
        value = self.json(key)
        if not _is_int(value) or not low <= value <= high:
            raise self.fail(key, f"is {shown(value)}; expected a whole number in {low}..{high:,}")
        return value

    def int_list(self, key: str, low: int, high: int, what: str) -> tuple[int, ...]:
        value = self.json(key)
        if not isinstance(value, list) or len(value) > MAX_BLOCKS or not all(_is_int(v) and low <= v <= high for v in value):
            raise self.fail(key, f"is {shown(value)}; expected a list of at most {MAX_BLOCKS} {what}")
        return tuple(value)

    def rates(self, key: str, least: int = 1) -> tuple[float, ...]:
        value = self.json(key)
        if not isinstance(value, list) or not least <= len(value) <= MAX_BLOCKS or not all(
            _is_number(v) and 0 < v <= 1 for v in value
        ):
            raise self.fail(key, f"is {shown(value)}; expected {least}..{MAX_BLOCKS} keep rates in (0, 1]")
        return tuple(float(v) for v in value)

    def schedule(self, key: str) -> tuple[tuple[int, int], ...]:
        value = self.json(key)
        pair = lambda p: isinstance(p, list) and len(p) == 2 and all(_is_int(n) and 1 <= n <= MAX_TOKENS for n in p)  # noqa: E731
        if not isinstance(value, list) or not 1 <= len(value) <= MAX_BLOCKS or not all(pair(p) for p in value):
            raise self.fail(
                key, f"is {shown(value)}; expected 1..{MAX_BLOCKS} [tokens in, tokens out] pairs of whole numbers in 1..{MAX_TOKENS:,}"
            )
        return tuple((p[0], p[1]) for p in value)

    def triple(self, key: str, positive: bool) -> tuple[float, float, float]:
        value = self.json(key)
        if not isinstance(value, list) or len(value) != 3 or not all(_is_number(v) and (v > 0 or not positive) for v in value):
            kind = "finite numbers above 0" if positive else "finite numbers"
            raise self.fail(key, f"is {shown(value)}; expected 3 {kind} (one per RGB channel)")
        return tuple(float(v) for v in value)  # type: ignore[return-value]


def class_names_problem(names: Any, num_classes: int) -> str | None:
    """What is wrong with ``names`` as the class names of a ``num_classes``-way classifier, as a phrase that
    follows where they come from ("holds 4 names for 3 outputs; ..."), or None. The one rule for names from any
    source (metadata, a --class-names file, folder names): one distinct name per class, each 1..MAX_NAME_CHARS
    characters without control characters."""
    if not isinstance(names, list) or len(names) != num_classes:
        what = f"{len(names)} names" if isinstance(names, list) else shown(names)
        return f"holds {what} for {num_classes} outputs; expected one name per class"
    bad = next((n for n in names if not isinstance(n, str) or not n or len(n) > MAX_NAME_CHARS or has_control(n)), None)
    if bad is not None:
        return f"holds {shown(bad)}; expected names of 1..{MAX_NAME_CHARS} characters without control characters"
    seen: set[str] = set()
    for name in names:
        if name in seen:
            # A name maps to one index when data is scored by name; two would silently mis-score one class.
            return f"names {shown(name)} twice; class names must be distinct"
        seen.add(name)
    return None


def _class_names(read: _Props, num_classes: int) -> tuple[str, ...] | None:
    names = read.json("class_names", None)
    if names is None or names == []:
        return None  # an export without class names (official checkpoints carry none)
    problem = class_names_problem(names, num_classes)
    if problem is not None:
        raise read.fail("class_names", problem)
    return tuple(names)


def _preprocess(read: _Props, img_size: int) -> dict[str, Any]:
    resize = read.integer("resize_size", img_size, MAX_RESIZE_FACTOR * img_size)
    interpolation = read.text("interpolation")
    if interpolation not in INTERPOLATIONS:
        raise read.fail("interpolation", f"is {shown(interpolation)}; expected one of {', '.join(INTERPOLATIONS)}")
    return {
        "img_size": img_size, "resize_size": resize, "interpolation": interpolation,
        "mean": list(read.triple("mean", positive=False)), "std": list(read.triple("std", positive=True)),
    }


def _object(read: _Props, key: str) -> dict[str, Any]:
    value = read.json(key)
    if not isinstance(value, dict) or not _depth(value, MAX_JSON_DEPTH):
        raise read.fail(key, f"is {shown(value)}; expected a JSON object at most {MAX_JSON_DEPTH} levels deep")
    return value


def _sha256(read: _Props, key: str) -> str | None:
    value = read.raw(key, None)
    if value is not None and not _SHA256.fullmatch(value):
        raise read.fail(key, f"is {shown(value)}; expected 64 hexadecimal digits")
    return value


def parse_metadata(props: Mapping[str, Any], source: str = "ONNX file", remedy: str = EXPORT_AGAIN) -> OnnxModelInfo:
    """Checked metadata from metadata_props (of a file, or of an engine's sidecar); ``source`` names it in
    errors, ``remedy`` says what to do about a damaged one.

    Every value is typed and bounded here (docs/security.md), so consumers use the result as it is."""
    if not isinstance(props, Mapping) or FORMAT_KEY not in props:
        raise ClcaDeployError(
            f"{source} has no clca-deploy metadata (image size, preprocessing, classes); export the "
            "checkpoint with `clca-deploy export`, which writes them into the file."
        )
    read = _Props(props, source, remedy)
    if read.raw(FORMAT_KEY) != FORMAT_VERSION:
        raise ClcaDeployError(
            f"{source} has clca-deploy metadata of format {shown(props[FORMAT_KEY])}, this version reads format "
            f"{FORMAT_VERSION}: export it again with this version, or upgrade clca-deploy."
        )
    img_size = read.integer("img_size", MIN_IMG_SIZE, MAX_IMG_SIZE)
    num_classes = read.integer("num_classes", 1, MAX_CLASSES)
    return OnnxModelInfo(
        model=read.text("model"), method=read.text("method"), backbone=read.text("backbone"),
        keep_rate=read.rates("keep_rate"), trained_keep_rate=read.rates("trained_keep_rate", least=0),
        reduction_loc=read.int_list("reduction_loc", 0, MAX_BLOCKS - 1, "block indices"),
        token_schedule=read.schedule("token_schedule"), img_size=img_size, preprocess=_preprocess(read, img_size),
        num_classes=num_classes, class_names=_class_names(read, num_classes), source_sha256=_sha256(read, "source_sha256"),
        clca_config=_object(read, "clca_config"), clca_deploy_version=read.text("clca_deploy.version"),
        precision=read.text("precision", "fp32"), family=read.text("family", "clca"),
        only_runtime=_runtime_name(read, "only_runtime"),
    )


_RUNTIME_NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}")


def _runtime_name(read: _Props, key: str) -> str | None:
    value = read.raw(key, None)
    if value is not None and not _RUNTIME_NAME.fullmatch(value):
        raise read.fail(key, f"is {shown(value)}; expected a runtime name such as openvino")
    return value


def shape_text(shape: Sequence[int | None]) -> str:
    """``(?, 3, 224, 224)``: a shape with its unknown (dynamic) sizes as ``?``."""
    return "(" + ", ".join("?" if size is None else str(size) for size in shape) + ")"


def check_io_shapes(
    info: OnnxModelInfo, image: Sequence[int | None], logits: Sequence[int | None], source: str, remedy: str = EXPORT_AGAIN
) -> None:
    """The image input is (batch, 3, S, S) with S the metadata's img_size, and the logits (batch, num_classes).

    Runtimes size images and buffers and name scores from the metadata; a graph that disagrees would fail
    every request (or name the wrong class), so it is refused before any work. ``None``: a dynamic size."""
    size = info.img_size
    if len(image) != 4 or image[1] not in (None, 3) or any(side not in (None, size) for side in image[2:]):
        raise ClcaDeployError(
            f"{source} takes images of shape {shape_text(image)} but its metadata says 3x{size}x{size} (img_size "
            f"{size}); the file was edited or damaged: {remedy}."
        )
    if len(logits) != 2 or logits[1] not in (None, info.num_classes):
        width = logits[-1] if logits else None
        raise ClcaDeployError(
            f"{source} gives {'?' if width is None else width} scores per image (shape {shape_text(logits)}) but its "
            f"metadata describes {info.num_classes} classes; the file was edited or damaged: {remedy}."
        )

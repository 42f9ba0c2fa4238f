"""The placement report `calibrate --target-agreement` writes, and its one reader for `--placement`.

The report says which units stay float and why, what was measured, and how the file was
calibrated (method, images, held-out images), so that `calibrate --placement REPORT` makes the same
file again from the same images. Like every file the tool reads it is untrusted: the reader checks
types and bounds before anything is used.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from clca_deploy.calibration.config import METHODS
from clca_deploy.errors import ClcaDeployError
from clca_deploy.terminal import printable

FORMAT = "clca-deploy-int8-placement"
VERSION = 1
MAX_REPORT_BYTES = 8 << 20
MAX_UNITS = 100_000
MAX_UNIT_CHARS = 400
MAX_IMAGES = 1_000_000


@dataclass(frozen=True)
class Placement:
    """What `--placement` takes from a report: the float units and how the searched file was calibrated."""

    float_units: tuple[str, ...]
    method: str
    calibration_images: int
    held_out_images: int
    target_agreement: float | None


def placement_report_path(output: Path) -> Path:
    """``model.int8.onnx`` -> ``model.int8.placement.json``."""
    return output.with_name(output.name.removesuffix(".onnx") + ".placement.json")


def read_placement(path: str | Path) -> Placement:
    """The placement of a report, or a one-line error naming what is wrong with the file."""
    from clca_deploy.metadata.files import read_regular_file

    raw = read_regular_file(path, "placement report", MAX_REPORT_BYTES)
    fail = _failing(path)
    try:
        report = json.loads(raw)
    except (ValueError, RecursionError):
        raise fail("is not JSON") from None
    if not isinstance(report, dict) or report.get("format") != FORMAT:
        raise fail(f"is not a placement report (no \"format\": \"{FORMAT}\")")
    if report.get("version") != VERSION:
        raise fail(f"has version {printable(str(report.get('version')))[:20]}, this tool reads version {VERSION}")
    calibration = report.get("calibration")
    if not isinstance(calibration, dict):
        raise fail("has no \"calibration\" object")
    method = calibration.get("method")
    if method not in METHODS:
        raise fail(f"names calibration method {printable(str(method))[:40]}, not one of {', '.join(METHODS)}")
    return Placement(
        float_units=_units(report.get("float_units"), fail),
        method=method,
        calibration_images=_count(calibration.get("images"), "calibration.images", 1, fail),
        held_out_images=_count(calibration.get("held_out_images"), "calibration.held_out_images", 0, fail),
        target_agreement=_target(report.get("target_agreement"), fail),
    )


def _failing(path):
    def fail(why: str) -> ClcaDeployError:
        return ClcaDeployError(f"placement report {printable(str(path))} {why}; pass a report written by `clca-deploy calibrate --target-agreement`.")

    return fail


def _units(value, fail) -> tuple[str, ...]:
    if not isinstance(value, list) or len(value) > MAX_UNITS:
        raise fail(f"has no \"float_units\" list of at most {MAX_UNITS:,} entries")
    units = []
    for entry in value:
        unit = entry.get("unit") if isinstance(entry, dict) else None
        if not isinstance(unit, str) or not unit or len(unit) > MAX_UNIT_CHARS or printable(unit) != unit:
            raise fail(f"has a float unit that is not a name of at most {MAX_UNIT_CHARS} printable characters")
        units.append(unit)
    if len(set(units)) != len(units):
        raise fail("names a float unit twice")
    return tuple(units)


def _count(value, key: str, least: int, fail) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not least <= value <= MAX_IMAGES:
        raise fail(f"has {key} {printable(str(value))[:20]}, not a whole number in [{least}, {MAX_IMAGES:,}]")
    return value


def _target(value, fail) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and 0 < value <= 100):
        raise fail(f"has target_agreement {printable(str(value))[:20]}, not a percentage in (0, 100]")
    return float(value)

"""tune's resumable record, ``tune.record.json`` in the work folder: what was asked and what was measured.

Rewritten atomically after each measurement, so an interrupted run resumes where it stopped. The file is
untrusted input (anyone may edit it): `read_record` is its one reader and checks every field.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clca_deploy.artifacts import write_json
from clca_deploy.errors import ClcaDeployError
from clca_deploy.metadata.files import read_regular_file
from clca_deploy.pipeline.tune.model import PRECISIONS, STATUSES, Candidate, Measurement
from clca_deploy.terminal import printable

RECORD_FILE = "tune.record.json"
FORMAT = "clca_deploy.tune-record/1"
MAX_RECORD_BYTES = 8 * 1024 * 1024
MAX_MEASUREMENTS = 10_000
MAX_SAMPLES = 100_000  # per measurement
MAX_TEXT = 4096  # characters of a reason, a path or a settings value
MAX_TOKENS = 100_000_000  # over all blocks of one image
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}")  # a runtime or an OpenVINO float precision
_OPTIONAL_NUMBERS = {"p50_ms": 1e12, "p90_ms": 1e12, "energy_mj_per_image": 1e12, "top1": 100.0, "agreement": 100.0}
_CANDIDATE_FIELDS = {"keep_rate", "precision", "runtime", "inference_precision"}
MEASUREMENT_FIELDS = {"candidate", "tokens", "status", "reason", "model_path", "samples_ms", *_OPTIONAL_NUMBERS}


@dataclass(frozen=True)
class TuneRecord:
    """What a tune run was asked (``settings``: a JSON object fingerprinting the checkpoint's sha256, batch,
    iterations, data path and machine) and what it has measured so far."""

    settings: dict
    measurements: tuple[Measurement, ...] = ()


class _Bad(Exception):
    """A field of the record that is not what this tool writes."""


def _shown(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return "an object" if isinstance(value, dict) else "a list"
    text = repr(value)
    return printable(text if len(text) <= 40 else text[:37] + "...")


def _number(value: Any, where: str, high: float, low: float = 0.0, low_open: bool = False) -> float:
    try:
        number = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan
    except OverflowError:
        number = math.nan
    if not math.isfinite(number) or number > high or number < low or (low_open and number == low):
        bounds = f"above {low:g} and at most {high:g}" if low_open else f"from {low:g} to {high:g}"
        raise _Bad(f"{where} is {_shown(value)}; expected a number {bounds}")
    return number


def _text(value: Any, where: str, pattern: re.Pattern | None = None, limit: int = MAX_TEXT) -> str:
    if not isinstance(value, str) or len(value) > limit or (pattern is not None and not pattern.fullmatch(value)):
        wanted = "a name of at most 64 letters, digits and _.+-" if pattern else f"text of at most {limit:,} characters"
        raise _Bad(f"{where} is {_shown(value)}; expected {wanted}")
    return value


def _object(value: Any, where: str, allowed: set[str], required: set[str]) -> dict:
    if not isinstance(value, dict):
        raise _Bad(f"{where} is {_shown(value)}; expected an object")
    unknown, missing = sorted(set(value) - allowed), sorted(required - set(value))
    if unknown or missing:
        raise _Bad(f"{where} has {'unknown field ' + _shown(unknown[0]) if unknown else 'no ' + missing[0]}")
    return value


def _candidate(value: Any, where: str) -> Candidate:
    data = _object(value, where, _CANDIDATE_FIELDS, _CANDIDATE_FIELDS - {"inference_precision"})
    if data["precision"] not in PRECISIONS:
        raise _Bad(f"{where}.precision is {_shown(data['precision'])}; expected one of {', '.join(PRECISIONS)}")
    inference = data.get("inference_precision")
    return Candidate(_number(data["keep_rate"], f"{where}.keep_rate", 1.0, low_open=True), data["precision"],
                     _text(data["runtime"], f"{where}.runtime", _NAME),
                     None if inference is None else _text(inference, f"{where}.inference_precision", _NAME))


def _measurement(value: Any, where: str) -> Measurement:
    data = _object(value, where, MEASUREMENT_FIELDS, {"candidate", "tokens"})
    tokens, status, samples = data["tokens"], data.get("status", "ok"), data.get("samples_ms", [])
    if status not in STATUSES:
        raise _Bad(f"{where}.status is {_shown(status)}; expected one of {', '.join(STATUSES)}")
    least = 1 if status == "ok" else 0  # a candidate ruled out before its export has no token count
    if not isinstance(tokens, int) or isinstance(tokens, bool) or not least <= tokens <= MAX_TOKENS:
        raise _Bad(f"{where}.tokens is {_shown(tokens)}; expected a whole number from {least} to {MAX_TOKENS:,}")
    if not isinstance(samples, list) or len(samples) > MAX_SAMPLES:
        raise _Bad(f"{where}.samples_ms is {_shown(samples)}; expected a list of at most {MAX_SAMPLES:,} latencies")
    numbers = {key: None if data.get(key) is None else _number(data[key], f"{where}.{key}", high)
               for key, high in _OPTIONAL_NUMBERS.items()}
    texts = {key: None if data.get(key) is None else _text(data[key], f"{where}.{key}") for key in ("reason", "model_path")}
    return Measurement(
        candidate=_candidate(data["candidate"], f"{where}.candidate"), tokens=tokens, status=status, **numbers, **texts,
        samples_ms=tuple(_number(sample, f"{where}.samples_ms[{i}]", 1e12) for i, sample in enumerate(samples)),
    )


def _settings(value: Any, where: str = "settings", depth: int = 0) -> Any:
    """Plain JSON: text, finite numbers, true/false, null, and lists or objects of them, bounded."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return value if isinstance(value, int) and abs(value) < 2**63 else _number(value, where, 1e300, low=-1e300)
    if isinstance(value, str):
        return _text(value, where)
    if depth >= 4 or not isinstance(value, (list, dict)) or len(value) > 256:
        raise _Bad(f"{where} is {_shown(value)} nested or sized beyond what tune writes")
    if isinstance(value, list):
        return [_settings(item, f"{where}[{i}]", depth + 1) for i, item in enumerate(value)]
    return {_text(key, f"{where} key", limit=100): _settings(item, f"{where}.{key[:40]}", depth + 1)
            for key, item in value.items()}


def _parse(payload: Any) -> TuneRecord:
    found = payload.get("format") if isinstance(payload, dict) else None
    if found != FORMAT:
        if isinstance(found, str) and found.startswith(FORMAT.split("/")[0] + "/"):
            raise _Bad(f"has format {_shown(found)}, which this version does not read (it reads {FORMAT!r})")
        raise _Bad(f"is not a clca-deploy tune record (no \"format\": {FORMAT!r})")
    _object(payload, "the record", {"format", "settings", "measurements"}, {"format", "settings", "measurements"})
    settings, items = payload["settings"], payload["measurements"]
    if not isinstance(settings, dict):
        raise _Bad(f"settings is {_shown(settings)}; expected an object")
    if not isinstance(items, list) or len(items) > MAX_MEASUREMENTS:
        raise _Bad(f"measurements is {_shown(items)}; expected a list of at most {MAX_MEASUREMENTS:,}")
    measurements = tuple(_measurement(item, f"measurements[{i}]") for i, item in enumerate(items))
    repeated = [key for key, count in Counter(m.candidate.key for m in measurements).items() if count > 1]
    if repeated:
        raise _Bad(f"measures {printable(repeated[0])} twice")
    return TuneRecord(_settings(settings), measurements)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict:
    if len(data := dict(pairs)) != len(pairs):
        raise _Bad("repeats a key in one object")
    return data


def _no_constant(name: str) -> None:
    raise _Bad(f"holds {name}, which is not a number")


def _refusal(path: Path, problem: str) -> ClcaDeployError:
    return ClcaDeployError(f"tune record {printable(path)}: {problem}; delete it or pass another -o folder.")


def read_record(path: str | Path) -> TuneRecord | None:
    """The record at ``path``, None if there is none; anything else than a record this tool writes (not
    JSON, another format or version, a field of the wrong type or out of range, too large) is refused with
    a one-line ClcaDeployError that names the file and says to delete it or choose another -o folder."""
    path = Path(path)
    try:
        info = os.stat(path)  # stat, not open: opening a FIFO would block
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise _refusal(path, f"cannot be read ({exc.strerror or exc})") from None
    if not stat.S_ISREG(info.st_mode):
        raise _refusal(path, "is not a regular file")
    if info.st_size > MAX_RECORD_BYTES:
        raise _refusal(path, f"is larger than the {MAX_RECORD_BYTES:,} bytes tune writes")
    try:
        # bounded even if it grows meanwhile; its own one-line error where the file cannot be opened
        data = read_regular_file(path, "tune record", MAX_RECORD_BYTES)
        return _parse(json.loads(data.decode("utf-8"), parse_constant=_no_constant, object_pairs_hook=_unique_keys))
    except _Bad as exc:
        raise _refusal(path, str(exc)) from None
    except RecursionError:
        raise _refusal(path, "is JSON nested too deeply") from None
    except ValueError as exc:  # UnicodeDecodeError is one too
        raise _refusal(path, f"is not valid JSON ({type(exc).__name__}: {printable(str(exc)[:80])})") from None


def write_record(path: str | Path, record: TuneRecord) -> Path:
    """Write ``record`` to ``path`` atomically. Raises ValueError (a bug, not a user error) for a record
    `read_record` would refuse, so a run never leaves a record that cannot resume."""
    payload = {"format": FORMAT, "settings": record.settings, "measurements": [m.to_dict() for m in record.measurements]}
    try:
        text = json.dumps(payload, indent=2, allow_nan=False)  # laid out as write_json does, to know its size
        if len(text.encode("utf-8")) > MAX_RECORD_BYTES:
            raise _Bad(f"{len(text.encode('utf-8')):,} bytes is over {MAX_RECORD_BYTES:,}: keep fewer samples")
        plain = json.loads(text)
        _parse(plain)
    except (_Bad, TypeError, ValueError) as exc:
        raise ValueError(f"refusing to write a tune record that could not be read back: {exc}") from None
    return write_json(path, plain)


def resumable(record: TuneRecord | None, settings: dict) -> dict[str, Measurement]:
    """The record's measurements by candidate key when it was made with these ``settings`` (compared as
    JSON, as written), else {}: another checkpoint, batch, data folder or machine measures afresh."""
    if record is None or record.settings != json.loads(json.dumps(settings)):
        return {}
    return {measurement.candidate.key: measurement for measurement in record.measurements}

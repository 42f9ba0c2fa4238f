"""Benchmark results as frozen dataclasses and their versioned JSON form.

The JSON file is the record; the terminal table (``bench.table``) and the PNG plot
(``bench.plot``) are views of the same objects; they import this module, never the reverse. A backend that failed or was skipped
keeps its row with a status and a reason.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from clca_deploy.artifacts import atomic_output
from clca_deploy.bench.latency import LatencyStats
from clca_deploy.errors import ClcaDeployError
from clca_deploy.terminal import printable

# Optional fields added later (the power fields of LatencyStats) keep version 1: readers of version 1
# ignore keys they do not know, and this one reads their absence as None. Bump only for a change that
# an older reader would misread. The fields: docs/bench-report.schema.json.
REPORT_VERSION = 1
# A report names itself as "format": "clca_deploy.<kind>/<version>", as doctor's report, the engine sidecars and
# `clca-deploy cache --json` do; reports written before the bench report did say "version": 1 instead, and load.
REPORT_FORMAT = re.compile(r"clca_deploy\.bench/(?P<version>[0-9]{1,6})")
STATUSES = ("ok", "failed", "skipped")


def utc_now() -> str:
    """The current time as ISO 8601 UTC, the format of ``BenchReport.created``."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _opt_float(value) -> float | None:
    # numpy scalars (float32 in particular) are not JSON-serialisable; coerce on entry so a
    # long benchmark never fails at write time and the JSON round trip stays exact.
    return None if value is None else float(value)


def _json_normal(value, what: str):
    """``value`` as it will read back from JSON (tuples become lists); fails early if it cannot be written."""
    try:
        return json.loads(json.dumps(value, sort_keys=True))
    except (TypeError, ValueError) as error:
        raise ValueError(f"{what} is not JSON-serialisable: {error}") from error


@dataclass(frozen=True)
class AccuracyResult:
    """Accuracy of one backend on the evaluation images, and its logit error against the reference."""

    num_images: int
    top1: float | None  # percent; None when the data has no labels
    top5: float | None
    top1_agreement: float | None  # percent agreement of argmax with the reference; None for the reference
    max_abs_logit_error: float | None  # vs the reference logits; None for the reference
    mean_abs_logit_error: float | None

    def __post_init__(self) -> None:
        object.__setattr__(self, "num_images", int(self.num_images))
        for name in ("top1", "top5", "top1_agreement", "max_abs_logit_error", "mean_abs_logit_error"):
            object.__setattr__(self, name, _opt_float(getattr(self, name)))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> AccuracyResult:
        return cls(**{key: d[key] for key in cls.__dataclass_fields__})


@dataclass(frozen=True)
class BackendResult:
    """One row of a benchmark: a model file run by one backend at one precision."""

    label: str  # display name: runtime, device, file, e.g. "onnxruntime CUDA:0 (model.int8.onnx)"
    backend: str  # the registered runtime's name
    model_path: str
    precision: str  # "fp32" | "fp16" | "int8"
    keep_rate: tuple[float, ...] | None
    status: str  # "ok" | "failed" | "skipped"
    reason: str | None = None  # required (non-empty) when status != "ok"
    is_reference: bool = False
    providers: tuple[str, ...] = ()
    latency: dict[int, LatencyStats] = field(default_factory=dict)  # batch size -> stats
    accuracy: AccuracyResult | None = None
    peak_rss_mb: float | None = None
    # The precision float work ran in where the runtime chooses it (OpenVINO: f32 or bf16); None elsewhere.
    inference_precision: str | None = None

    def __post_init__(self) -> None:
        # Wrong values here are programming errors in the benchmark code, hence ValueError.
        if self.status not in STATUSES:
            raise ValueError(f"{self.label}: status {self.status!r} is not one of {STATUSES}")
        if self.status != "ok" and not (self.reason and self.reason.strip()):
            raise ValueError(f"{self.label}: a {self.status!r} result needs a reason")
        for batch_size, stats in self.latency.items():
            if int(batch_size) != stats.batch_size:
                raise ValueError(f"{self.label}: latency key {batch_size} holds stats of batch size {stats.batch_size}")
        # Lists from callers or JSON would otherwise break equality with the tuples of a fresh result.
        if self.keep_rate is not None:
            object.__setattr__(self, "keep_rate", tuple(float(r) for r in self.keep_rate))
        object.__setattr__(self, "providers", tuple(self.providers))
        object.__setattr__(self, "latency", {int(b): s for b, s in sorted(self.latency.items())})
        object.__setattr__(self, "peak_rss_mb", _opt_float(self.peak_rss_mb))

    def to_dict(self) -> dict:
        return {
            "label": self.label,
            "backend": self.backend,
            "model_path": self.model_path,
            "precision": self.precision,
            "keep_rate": None if self.keep_rate is None else list(self.keep_rate),
            "status": self.status,
            "reason": self.reason,
            "is_reference": self.is_reference,
            "providers": list(self.providers),
            # JSON object keys are strings; from_dict turns them back into ints.
            "latency": {str(b): stats.to_dict() for b, stats in sorted(self.latency.items())},
            "accuracy": None if self.accuracy is None else self.accuracy.to_dict(),
            "peak_rss_mb": self.peak_rss_mb,
            "inference_precision": self.inference_precision,
        }

    @classmethod
    def from_dict(cls, d: dict) -> BackendResult:
        return cls(
            label=d["label"],
            backend=d["backend"],
            model_path=d["model_path"],
            precision=d["precision"],
            keep_rate=None if d["keep_rate"] is None else tuple(d["keep_rate"]),
            status=d["status"],
            reason=d.get("reason"),
            is_reference=bool(d.get("is_reference", False)),
            providers=tuple(d.get("providers", ())),
            latency={int(b): LatencyStats.from_dict(s) for b, s in d.get("latency", {}).items()},
            accuracy=None if d.get("accuracy") is None else AccuracyResult.from_dict(d["accuracy"]),
            peak_rss_mb=d.get("peak_rss_mb"),
            inference_precision=d.get("inference_precision"),
        )


@dataclass(frozen=True)
class BenchReport:
    """Everything one benchmark run measured, with what was timed and where."""

    results: tuple[BackendResult, ...]
    data: dict  # {"path", "kind", "num_images", "num_readable", "labelled": bool}
    skipped_images: tuple[dict, ...]  # {"path", "reason"} per image that could not be read
    timing: dict  # {"warmup", "iters", "batch_sizes", "what_was_timed"}
    environment: dict
    created: str  # ISO 8601 UTC
    version: int = REPORT_VERSION

    def __post_init__(self) -> None:
        object.__setattr__(self, "results", tuple(self.results))
        references = [r.label for r in self.results if r.is_reference]
        if len(references) > 1:
            raise ValueError(f"more than one reference result: {references}")
        # The free-form blocks are stored as JSON reads them back, so that a report equals its
        # own round trip (a tuple of batch sizes would come back as a list).
        object.__setattr__(self, "data", _json_normal(self.data, "report data block"))
        object.__setattr__(self, "timing", _json_normal(self.timing, "report timing block"))
        object.__setattr__(self, "environment", _json_normal(self.environment, "report environment block"))
        object.__setattr__(
            self, "skipped_images", tuple(_json_normal(s, "skipped image entry") for s in self.skipped_images)
        )

    @property
    def reference(self) -> BackendResult | None:
        """The result the others' agreement and logit errors are measured against, if any."""
        return next((r for r in self.results if r.is_reference), None)

    @property
    def labelled(self) -> bool:
        """True when the evaluation data had labels, so top-1/top-5 are meaningful."""
        return bool(self.data.get("labelled", False))

    @property
    def batch_sizes(self) -> tuple[int, ...]:
        """Every batch size timed for some result or requested in the timing block, ascending."""
        sizes = {int(b) for b in self.timing.get("batch_sizes", ())}
        for result in self.results:
            sizes.update(result.latency)
        return tuple(sorted(sizes))

    def to_dict(self) -> dict:
        """Plain JSON-ready dict; ``format`` first, free-form blocks with sorted keys."""
        return {
            "format": f"clca_deploy.bench/{self.version}",
            "created": self.created,
            "data": self.data,
            "timing": self.timing,
            "results": [r.to_dict() for r in self.results],
            "skipped_images": list(self.skipped_images),
            "environment": self.environment,
        }

    @classmethod
    def from_dict(cls, d: dict) -> BenchReport:
        """Rebuild a report from ``to_dict`` output; ClcaDeployError if it is not a readable report."""
        version = _report_version(d)
        if type(version) is not int or version != REPORT_VERSION:
            hint = (
                "it was written by a newer clca-deploy; upgrade clca-deploy to read it"
                if type(version) is int and version > REPORT_VERSION
                else "it is not a report this tool wrote"
            )
            raise ClcaDeployError(
                f"benchmark report version {version!r} is not supported (this clca-deploy reads version "
                f"{REPORT_VERSION}); {hint}."
            )
        try:
            return cls(
                results=tuple(BackendResult.from_dict(r) for r in d["results"]),
                data=d["data"],
                skipped_images=tuple(d.get("skipped_images", ())),
                timing=d["timing"],
                environment=d.get("environment", {}),
                created=d["created"],
                version=version,
            )
        except KeyError as error:
            raise ClcaDeployError(f"benchmark report is missing the field {error}; was it edited by hand?") from error
        except (TypeError, ValueError, AttributeError) as error:
            # From a file, a bad status or a row without a reason is bad input, not a bug.
            raise ClcaDeployError(f"benchmark report is malformed: {error}") from error

    def to_json(self) -> str:
        """The report as indented JSON text, what ``write_json`` writes (control characters escaped)."""
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def write_json(self, path: str | Path) -> Path:
        """Write the report as indented JSON, atomically; returns the path."""
        text = self.to_json()
        with atomic_output(path) as tmp:
            tmp.write_text(text, encoding="utf-8")
        return Path(path)


def _report_version(d) -> object:
    """The version a report states: N of ``"format": "clca_deploy.bench/N"``, or the ``"version"`` of a report
    written before the format field; a ClcaDeployError for anything else."""
    if not isinstance(d, dict) or ("format" not in d and "version" not in d):
        raise ClcaDeployError("not a clca-deploy benchmark report: it has no 'format' field.")
    if "format" not in d:
        return d["version"]
    match = REPORT_FORMAT.fullmatch(d["format"]) if isinstance(d["format"], str) else None
    if match is None:
        raise ClcaDeployError(
            f"not a clca-deploy benchmark report: its format is {printable(repr(d['format']))[:80]}, "
            "not clca_deploy.bench/N."
        )
    return int(match["version"])


RESCUE_PREFIX = "clca-deploy-bench-"


def write_rescue_copy(report: BenchReport) -> Path:
    """Write ``report`` to a new file in the temp folder (``TMPDIR``), for when its own path cannot be
    written: minutes of measurements are not thrown away for a full disk. The file is this user's only
    (mode 0600: the temp folder is shared); an OSError means the temp folder cannot take it either."""
    handle, name = tempfile.mkstemp(prefix=RESCUE_PREFIX, suffix=".json")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(report.to_json())
            stream.flush()
            os.fsync(stream.fileno())
    except BaseException:
        os.unlink(name)  # half a report is no rescue
        raise
    return Path(name)


def rescue(report: BenchReport) -> tuple[str, bool]:
    """After ``report`` could not be written where asked: save it with ``write_rescue_copy`` and return
    (the sentence saying where, True), or (the sentence saying the temp folder could not take it, False)."""
    try:
        return f"The results were saved in {printable(write_rescue_copy(report))} instead.", True
    except OSError as exc:
        return f"The temp folder could not take them either ({exc.strerror or exc})", False


def load_report(path: str | Path) -> BenchReport:
    """Read a report written by ``BenchReport.write_json``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ClcaDeployError(f"benchmark report {path} does not exist.") from None
    except IsADirectoryError:
        raise ClcaDeployError(f"{path} is a folder; give the report's .json file.") from None
    try:
        d = json.loads(text)
    except json.JSONDecodeError as error:
        raise ClcaDeployError(f"{path} is not valid JSON ({error}); is it a clca-deploy benchmark report?") from error
    try:
        return BenchReport.from_dict(d)
    except ClcaDeployError as error:
        raise ClcaDeployError(f"{path}: {error}") from error


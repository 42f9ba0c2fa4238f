"""What `tune` measures and decides about: candidates, their measurements, the budget and the pick."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

PRECISIONS = ("fp32", "fp16", "int8")
STATUSES = ("ok", "pruned", "failed", "skipped")


@dataclass(frozen=True, order=True)
class Candidate:
    """One deployment to try: a keep rate, a file precision, a runtime (and OpenVINO's float precision)."""

    keep_rate: float
    precision: str  # of the model file: fp32, fp16 or int8
    runtime: str  # a registered runtime's name
    inference_precision: str | None = None  # OpenVINO's float parts (f32 or bf16); None elsewhere

    @property
    def family(self) -> tuple[str, str, str | None]:
        """Everything but the keep rate: the pruning rule works within one family."""
        return (self.precision, self.runtime, self.inference_precision)

    @property
    def key(self) -> str:
        """A stable name, e.g. ``openvino/int8/bf16/keep0.25``."""
        return f"{self.runtime}/{self.precision}/{self.inference_precision or '-'}/keep{self.keep_rate:g}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Budget:
    """The limit a deployment must meet: p90 latency per call at ``batch`` (ms), or energy per image (mJ)."""

    ms: float | None = None
    mj: float | None = None

    @property
    def metric(self) -> str:
        return "p90_ms" if self.ms is not None else "energy_mj_per_image"

    @property
    def limit(self) -> float:
        return self.ms if self.ms is not None else self.mj  # type: ignore[return-value]


def accuracy_field(measurements) -> str:
    """What "most accurate" ranks ``measurements`` by: ``top1`` where every one has it (labelled images),
    else ``agreement`` with the checkpoint."""
    return "top1" if all(m.top1 is not None for m in measurements) else "agreement"


@dataclass(frozen=True)
class Measurement:
    """What was measured of one candidate on this machine (None: not measured)."""

    candidate: Candidate
    tokens: int  # tokens the graph processes over all blocks: the x of the latency curve
    status: str = "ok"  # ok, pruned (ruled out without timing), failed, skipped
    reason: str | None = None
    p50_ms: float | None = None
    p90_ms: float | None = None
    energy_mj_per_image: float | None = None
    top1: float | None = None  # % on labelled --data
    agreement: float | None = None  # % top-1 agreement with the checkpoint (PyTorch)
    model_path: str | None = None
    samples_ms: tuple[float, ...] = field(default_factory=tuple)

    def value(self, metric: str) -> float | None:
        return getattr(self, metric)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["candidate"] = self.candidate.to_dict()
        data["samples_ms"] = list(self.samples_ms)
        return data

"""Which deployments `tune` can try on this machine, and their files, made through the existing stages.

Every file is reused when its source and settings match (the checkpoint's hash and keep rate in the
metadata, as `sweep` and `demo` reuse theirs), so a second run makes nothing it already has.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from clca_deploy.errors import ClcaDeployError
from clca_deploy.pipeline.tune.model import Candidate

# (file precision, runtime, OpenVINO float precision), in the order a table lists them.
FAMILIES: tuple[tuple[str, str, str | None], ...] = (
    ("fp32", "onnxruntime", None), ("int8", "onnxruntime", None), ("fp16", "onnxruntime", None),
    ("fp32", "openvino", "f32"), ("fp32", "openvino", "bf16"), ("int8", "openvino", "f32"), ("int8", "openvino", "bf16"),
    ("fp32", "tensorrt", None), ("fp16", "tensorrt", None), ("int8", "tensorrt", None),
)
GPU_ONLY = {("fp16", "onnxruntime")}  # FP16 graphs on a CPU are emulated: never the faster choice there


@dataclass(frozen=True)
class Machine:
    """What this machine runs: the runtimes that import (and, for TensorRT, find a GPU), and whether
    onnxruntime has a GPU. Each left-out runtime comes with the reason, for the report."""

    runtimes: tuple[str, ...]
    gpu: bool
    left_out: tuple[tuple[str, str], ...] = ()


def probe_machine(device: int = 0) -> Machine:
    """The runtimes of this machine (never raises: a missing one is a reason, not an error)."""
    from clca_deploy.runtime.registry import runtime_spec
    from clca_deploy.system.gpu import gpu_unavailable_reason
    from clca_deploy.tensorrt.toolkit import tensorrt_unavailable_reason

    usable, left_out = [], []
    for name in ("onnxruntime", "openvino"):
        try:
            runtime_spec(name).require(f"tune on {name}")
            usable.append(name)
        except ClcaDeployError as exc:
            left_out.append((name, str(exc)))
    reason = tensorrt_unavailable_reason(device)
    if reason is None:
        usable.append("tensorrt")
    else:
        left_out.append(("tensorrt", reason))
    return Machine(tuple(usable), gpu_unavailable_reason(device) is None, tuple(left_out))


def candidates(machine: Machine, keep_rates, precisions, runtimes) -> tuple[list[Candidate], list[str]]:
    """Every candidate this machine can run within the asked precisions and runtimes; notes on what is not tried."""
    notes = [f"{name} not tried: {reason}" for name, reason in machine.left_out if runtimes is None or name in runtimes]
    unknown = [name for name in runtimes or () if name not in {runtime for _, runtime, _ in FAMILIES}]
    if unknown:
        raise ClcaDeployError(f"tune runs onnxruntime, openvino or tensorrt, not {', '.join(unknown)}.")
    chosen = []
    for precision, runtime, float_precision in FAMILIES:
        if precision not in precisions or runtime not in machine.runtimes or (runtimes and runtime not in runtimes):
            continue
        if (precision, runtime) in GPU_ONLY and not machine.gpu:
            notes.append(f"{precision} on {runtime} not tried: no GPU (an FP16 graph on a CPU is emulated)")
            continue
        chosen += [Candidate(keep, precision, runtime, float_precision) for keep in keep_rates]
    if not chosen:
        raise ClcaDeployError("nothing to try on this machine: " + ("; ".join(notes) or "no runtime matches --runtime/--precision")
                              + ". Install a runtime (clca-deploy doctor) or widen --runtime/--precision.")
    return chosen, notes


@dataclass(frozen=True)
class Files:
    """Makes (or reuses) the files of candidates, in ``workdir``, from the checkpoint."""

    checkpoint: Path
    checkpoint_sha: str
    workdir: Path
    calibration_data: Path
    calibration_images: int
    batch: int
    log: Callable[[str], None]
    made: dict = field(default_factory=dict)  # (kind, keep, ...) -> what it gave: each file is checked once a run

    def _once(self, key: tuple, make: Callable[[], Any]) -> Any:
        if key not in self.made:
            self.made[key] = make()
        return self.made[key]

    def fp32(self, keep: float) -> Path:
        from clca_deploy.pipeline.sweep import export_or_reuse

        return self._once(("fp32", keep), lambda: export_or_reuse(self.checkpoint, self.checkpoint_sha, keep,
                                                                   self.workdir, self.log))

    def tokens(self, keep: float) -> int:
        """Tokens the export at ``keep`` processes over all its blocks."""
        from clca_deploy.pipeline.tune.measure import total_tokens

        return self._once(("tokens", keep), lambda: total_tokens(self.fp32(keep)))

    def int8(self, keep: float, openvino_form: bool) -> Path:
        """The Q/DQ file, or (``openvino_form``) OpenVINO's form of the same calibration."""
        qdq, form = self._once(("int8", keep), lambda: self._calibrated(keep))
        return form if openvino_form else qdq

    def _calibrated(self, keep: float) -> tuple[Path, Path]:
        from clca_deploy.calibration import CalibrationConfig, calibrated_path, quantize_int8
        from clca_deploy.calibration.openvino_form import openvino_form_path
        from clca_deploy.metadata import is_export_of

        fp32 = self.fp32(keep)
        qdq = calibrated_path(fp32, "int8")
        form = openvino_form_path(qdq)
        if not (is_export_of(qdq, self.checkpoint_sha, keep, "int8") and is_export_of(form, self.checkpoint_sha, keep, "int8")):
            config = CalibrationConfig(data=self.calibration_data, num_images=self.calibration_images, openvino=True)
            quantize_int8(fp32, qdq, config, log=self.log)
        return qdq, form

    def fp16(self, keep: float) -> Path:
        return self._once(("fp16", keep), lambda: self._half(keep))

    def _half(self, keep: float) -> Path:
        from clca_deploy.calibration import calibrated_path, to_fp16
        from clca_deploy.metadata import is_export_of

        fp32 = self.fp32(keep)
        path = calibrated_path(fp32, "fp16")
        if not is_export_of(path, self.checkpoint_sha, keep, "fp16"):
            to_fp16(fp32, path, log=self.log)
        return path

    def engine(self, keep: float, precision: str) -> Path:
        from clca_deploy.pipeline.build_trt import build_trt, default_engine_path
        from clca_deploy.tensorrt.build import EngineConfig
        from clca_deploy.tensorrt.plan import BatchProfile

        source = {"fp32": self.fp32, "fp16": self.fp16}.get(precision, lambda k: self.int8(k, False))(keep)
        path = default_engine_path(source, precision)
        if not path.is_file():  # an engine is tied to this GPU and TensorRT: `tune` builds it here, once
            profile = BatchProfile(1, self.batch, self.batch)
            build_trt(source, path, EngineConfig(precision=precision, batch=profile), log=self.log)
        return path

    def model_file(self, candidate: Candidate) -> Path:
        """The file ``candidate`` runs."""
        keep, precision = candidate.keep_rate, candidate.precision
        if candidate.runtime == "tensorrt":
            return self.engine(keep, precision)
        if precision == "int8":
            return self.int8(keep, openvino_form=candidate.runtime == "openvino")
        return self.fp16(keep) if precision == "fp16" else self.fp32(keep)

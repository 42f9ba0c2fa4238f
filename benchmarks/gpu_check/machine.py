"""What this machine has for the check: one frozen profile, probed once, that planning reads.

The profile comes from `doctor`'s probes and the runtime registry (plus the few facts doctor does not
keep as data: which CUDA bindings import, whether PyTorch sees GPU N, which onnxruntime providers
exist, whether a power sensor reads GPU N). Tests build fake profiles directly.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

# The golden checkpoint with the official code's logits beside it, in ../shared.
FIXTURE = "evit_tiny_clca_k0.1_224"
CUDA_PROVIDER = "CUDAExecutionProvider"
# Step cost estimates are for a 16-core datacenter host; fewer cores make the CPU steps slower, a
# Jetson's GPU makes the GPU steps slower.
REFERENCE_CORES = 16
JETSON_GPU_FACTOR = 3.0


@dataclass(frozen=True)
class Machine:
    """GPU ``device`` and what can run on it here; a None reason means "usable"."""

    device: int
    gpu: dict | None = None  # system.gpu.GpuInfo of ``device``, as a dict
    gpu_reason: str | None = None
    jetson: bool = False
    cpu_count: int = REFERENCE_CORES
    torch: str | None = None  # version; None: not installed
    torch_reason: str | None = "PyTorch is not installed"  # why checkpoints cannot run at all
    torch_cuda_reason: str | None = "PyTorch is not installed"  # why PyTorch cannot use GPU ``device``
    onnxruntime: str | None = None
    onnxruntime_reason: str | None = "onnxruntime is not installed"
    ort_providers: tuple[str, ...] = ()
    tensorrt_reason: str | None = "TensorRT is not installed"
    bindings: tuple[str, ...] = ()  # CUDA Python bindings that import, in clca_deploy's order
    power_reason: str | None = "no power sensor"
    pytest: bool = False
    fixture: str | None = None  # the golden checkpoint's path, when ../shared holds it
    fixture_reason: str | None = "no ../shared"
    leaves: str | None = None  # ../shared's real leaves (train/ and test/), when present
    doctor: dict = field(default_factory=dict)

    @property
    def ort_cuda_reason(self) -> str | None:
        """Why onnxruntime cannot run on the GPU here (None: its CUDA provider exists)."""
        if self.onnxruntime_reason:
            return self.onnxruntime_reason
        if CUDA_PROVIDER in self.ort_providers:
            return None
        found = ", ".join(self.ort_providers) or "none"
        return (f"onnxruntime {self.onnxruntime} has no {CUDA_PROVIDER} (providers: {found}): "
                "onnxruntime-gpu is not installed")

    @property
    def cpu_factor(self) -> float:
        return max(1.0, REFERENCE_CORES / max(1, self.cpu_count))

    @property
    def gpu_factor(self) -> float:
        return JETSON_GPU_FACTOR if self.jetson else 1.0

    def to_dict(self) -> dict:
        data = asdict(self)
        data.pop("doctor")  # recorded once, by the doctor step
        data["ort_cuda_reason"] = self.ort_cuda_reason
        return data


def _reason(call) -> str | None:
    """None when ``call()`` raises nothing, else its one-line message."""
    try:
        call()
    except Exception as exc:  # a probe that breaks is a reason, never a crash of the check
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return None


def _torch_cuda_reason(device: int, torch_reason: str | None) -> str | None:
    if torch_reason:
        return torch_reason
    import torch

    build = f"a CUDA {torch.version.cuda} build" if torch.version.cuda else "a CPU build"
    if not torch.cuda.is_available():
        return f"PyTorch {torch.__version__} ({build}) sees no CUDA GPU"
    count = torch.cuda.device_count()
    if device >= count:
        return f"PyTorch sees {count} GPU(s), none with index {device}"
    return None


def _onnxruntime_providers(reason: str | None) -> tuple[str, ...]:
    if reason:
        return ()
    try:
        import onnxruntime

        return tuple(onnxruntime.get_available_providers())
    except Exception:  # a GPU build missing its CUDA libraries fails at import; doctor's row says how
        return ()


def _power_reason(device: int) -> str | None:
    from clca_deploy.bench.power.picker import pick_power_sampler

    try:
        sampler, reason = pick_power_sampler(device)
    except Exception as exc:  # a broken driver costs the power figures, not the check
        return f"power sensor check failed: {type(exc).__name__}: {exc}"
    return None if sampler is not None else reason


def _shared_facts(shared: Path) -> dict:
    fixture = shared / "fixtures" / "clca_golden" / f"{FIXTURE}.pth"
    leaves = shared / "data" / "leaves"
    return {
        "fixture": str(fixture) if fixture.is_file() else None,
        "fixture_reason": None if fixture.is_file() else f"{fixture} not found (../shared is not here; pass --shared)",
        "leaves": str(leaves) if (leaves / "train").is_dir() and (leaves / "test").is_dir() else None,
    }


def probe_machine(device: int, shared: Path) -> Machine:
    """This machine's profile for GPU ``device``: doctor's report, the registry's runtimes, the sensors."""
    from clca_deploy.doctor.report import run_doctor
    from clca_deploy.extras import has_module
    from clca_deploy.runtime.registry import runtime_spec
    from clca_deploy.system.checks import dist_version
    from clca_deploy.system.gpu import gpu_info, gpu_unavailable_reason
    from clca_deploy.tensorrt.cuda import installed_bindings
    from clca_deploy.tensorrt.toolkit import tensorrt_unavailable_reason

    doctor = run_doctor()
    gpu_reason = gpu_unavailable_reason(device)
    torch_reason = _reason(lambda: runtime_spec("torch").require("the PyTorch steps"))
    ort_reason = _reason(lambda: runtime_spec("onnxruntime").require("the onnxruntime steps"))
    return Machine(
        device=device, gpu=None if gpu_reason else gpu_info(device).to_dict(), gpu_reason=gpu_reason,
        jetson=doctor.jetson is not None, cpu_count=os.cpu_count() or 1,
        torch=dist_version("torch"), torch_reason=torch_reason,
        torch_cuda_reason=_torch_cuda_reason(device, torch_reason),
        onnxruntime=dist_version("onnxruntime") or dist_version("onnxruntime-gpu"), onnxruntime_reason=ort_reason,
        ort_providers=_onnxruntime_providers(ort_reason),
        tensorrt_reason=tensorrt_unavailable_reason(device), bindings=tuple(installed_bindings()),
        power_reason=_power_reason(device), pytest=has_module("pytest"), doctor=doctor.to_dict(),
        **_shared_facts(shared),
    )

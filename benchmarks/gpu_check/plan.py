"""The steps of the check, in the order they run, each with its cost, its needs and when it applies.

Cheap probes first, then what a GPU machine says most per second: PyTorch on the GPU, then TensorRT
(its tests, a freshly trained tiny model's engines, the golden fixture's), then the CPU baselines the GPU
figures are compared with. A step whose machine lacks something is skipped with the reason when the plan
is made; the runner leaves out what the budget cannot hold.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional

from benchmarks.gpu_check.machine import Machine
from benchmarks.gpu_check.steps import probes, trt, vit
from clca_deploy.bench.power.meter import POWER_WINDOW_S


@dataclass(frozen=True)
class Settings:
    """The sizes of the check: the defaults are the real check; tests pass tiny ones."""

    vit_args: Mapping[str, Any] | None = None  # None: benchmarks/export_latency.py's ViT-B/16 448 EViT + CLCA
    keeps: tuple[float, ...] = (1.0, 0.1)
    batch_sizes: tuple[int, ...] = (1, 8)
    images: int = 8  # leaf images each runtime's logits are compared on
    gpu_warmup: int = 10
    gpu_iters: int = 50
    cpu_warmup: int = 1
    cpu_iters: int = 3  # CPU timings are baselines only: a few calls of a ViT-B at 448 take seconds
    power_window_s: float = POWER_WINDOW_S
    binding_bytes: int = 64 << 20
    binding_repeats: int = 10
    matmul_size: int = 8192
    synthetic_size: int = 112  # synthetic leaves, where ../shared's are missing
    synthetic_per_class: tuple[int, int] = (60, 20)  # train, test images per cultivar
    tiny_img_size: int = 112
    tiny_epochs: int = 3
    calibration_images: int = 64
    trt_tests_timeout_s: float = 300.0
    torch_device: str | None = None  # None: cuda:N; tests run the GPU steps' code on "cpu"

    def __post_init__(self) -> None:
        if not self.keeps or not self.batch_sizes or min(self.batch_sizes) < 1 or self.images < 1:
            raise ValueError("keeps, batch sizes and images must be given, all positive")


Reason = Callable[[Machine], Optional[str]]


def always(machine: Machine) -> str | None:
    return None


@dataclass(frozen=True)
class Step:
    """One unit of the check: ``run(work)`` returns what the report keeps (a JSON-able dict)."""

    name: str
    run: Callable[[Any], dict]
    estimate_s: float  # on a 16-core datacenter host with an H100-class GPU
    cpu_bound: bool = False
    needs: tuple[str, ...] = ()  # earlier steps whose products it uses
    applies: Reason = always  # why it cannot run on this machine (None: it can)

    def estimate(self, machine: Machine) -> float:
        return self.estimate_s * (machine.cpu_factor if self.cpu_bound else machine.gpu_factor)


def _first(*reasons: Reason) -> Reason:
    def reason(machine: Machine) -> str | None:
        return next((r for check in reasons if (r := check(machine))), None)

    return reason


def _bindings(m: Machine) -> str | None:
    return None if m.bindings else "no CUDA Python binding is installed (cuda-python or pycuda)"


def _power(m: Machine) -> str | None:
    return m.power_reason


def _torch(m: Machine) -> str | None:
    return m.torch_reason


def _torch_gpu(m: Machine) -> str | None:
    return m.torch_cuda_reason


def _ort(m: Machine) -> str | None:
    return m.onnxruntime_reason


def _ort_gpu(m: Machine) -> str | None:
    return m.ort_cuda_reason


def _tensorrt(m: Machine) -> str | None:
    return f"TensorRT cannot run here: {m.tensorrt_reason}" if m.tensorrt_reason else None


def _pytest(m: Machine) -> str | None:
    return None if m.pytest else "pytest is not installed (the trt tests need it)"


def _fixture(m: Machine) -> str | None:
    return m.fixture_reason if m.fixture is None else None


def probe_steps() -> list[Step]:
    return [
        Step("doctor", probes.doctor, 1),
        Step("gpu and driver", probes.gpu, 2),
        Step("CUDA bindings", probes.cuda_bindings, 5, applies=_bindings),
        Step("NVML power", probes.power, 8, applies=_power),
        Step("leaf images", probes.leaves, 5, cpu_bound=True),
    ]


def torch_gpu_steps(settings: Settings) -> list[Step]:
    steps = [Step(vit.CHECKPOINT, vit.checkpoint, 25, cpu_bound=True, needs=("leaf images",), applies=_torch)]
    for keep in settings.keeps:
        # The first use pays for the CPU reference logits (a few seconds of a ViT-B at 448).
        steps.append(Step(f"torch GPU keep {keep:g}", lambda w, k=keep: vit.torch_gpu(w, k), 50,
                          needs=(vit.CHECKPOINT,), applies=_torch_gpu))
    return steps


def tensorrt_steps(label: str, model: Callable[[Machine], str | None], first: Step | None) -> list[Step]:
    """ONNX files, the three engines, engines against onnxruntime, latency and power, of one model."""
    needs = (first.name,) if first else ()
    files = f"{label}: ONNX files"
    steps = [first] if first else []
    steps.append(Step(files, lambda w: trt.onnx_files(w, label), 45, cpu_bound=True, needs=("leaf images", *needs),
                      applies=_first(_tensorrt, _torch, _ort, model)))
    for precision in trt.PRECISIONS:
        steps.append(Step(f"{label}: {precision} engine", lambda w, p=precision: trt.engine(w, label, p), 45,
                          needs=(files,), applies=_tensorrt))
    steps.append(Step(f"{label}: engines vs onnxruntime", lambda w: trt.compare(w, label), 15, needs=(files,),
                      applies=_tensorrt))
    steps.append(Step(f"{label}: latency and power", lambda w: trt.latency(w, label), 40, needs=(files,),
                      applies=_tensorrt))
    return steps


def cpu_steps(settings: Settings) -> list[Step]:
    steps = []
    for keep in settings.keeps:
        export = f"ONNX export keep {keep:g}"
        steps.append(Step(export, lambda w, k=keep: vit.export(w, k), 90, cpu_bound=True, needs=(vit.CHECKPOINT,),
                          applies=_first(_torch, _ort)))
        steps.append(Step(f"onnxruntime GPU keep {keep:g}", lambda w, k=keep: vit.onnxruntime_gpu(w, k), 30,
                          needs=(export,), applies=_ort_gpu))
        steps.append(Step(f"onnxruntime CPU keep {keep:g}", lambda w, k=keep: vit.onnxruntime_cpu(w, k), 30,
                          cpu_bound=True, needs=(export,), applies=_ort))
    for keep in settings.keeps:
        steps.append(Step(f"torch CPU keep {keep:g}", lambda w, k=keep: vit.torch_cpu(w, k), 30, cpu_bound=True,
                          needs=(vit.CHECKPOINT,), applies=_torch))
    return steps


def plan_steps(settings: Settings) -> list[Step]:
    """Every step, in the order it runs; which of them apply is the machine's business (``Step.applies``)."""
    train = Step(trt.TRAIN, trt.train_tiny, 60, needs=("leaf images",), applies=_first(_tensorrt, _torch))
    trt_tests = Step("trt tests", trt.trt_tests, 150, applies=_first(_tensorrt, _pytest))
    return [
        *probe_steps(),
        *torch_gpu_steps(settings),
        trt_tests,
        *tensorrt_steps(trt.TINY, lambda m: None, train),
        *tensorrt_steps(trt.FIXTURE, _fixture, None),
        *cpu_steps(settings),
    ]


def check_order(steps: list[Step]) -> None:
    """Every need names an earlier step, and names are unique (a plan bug otherwise)."""
    seen: set[str] = set()
    for step in steps:
        missing = [need for need in step.needs if need not in seen]
        if missing or step.name in seen:
            raise ValueError(f"step {step.name!r}: needs {missing} not planned before it, or planned twice")
        seen.add(step.name)


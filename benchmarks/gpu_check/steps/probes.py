"""The cheap steps: doctor, the driver and GPU, our CUDA binding layer for real, NVML power, the leaf images."""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.gpu_check.outcome import Skip, StepError, one_line
from benchmarks.gpu_check.work import Work, latency_fields


def doctor(work: Work) -> dict[str, Any]:
    """`clca-deploy doctor`'s JSON, as probed when the plan was made."""
    return {"doctor": work.machine.doctor}


def gpu(work: Work) -> dict[str, Any]:
    """GPU N as the driver reports it (system/gpu.py), every GPU, and nvidia-smi's driver version."""
    from clca_deploy.system.gpu import list_gpus, query_nvidia_smi

    smi = query_nvidia_smi()
    return {
        "gpu": work.machine.gpu, "gpus": [info.to_dict() for info in list_gpus()],
        "nvidia_smi": None if smi is None else [asdict(entry) for entry in smi],
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
    }


# -- CUDA bindings ---------------------------------------------------------------------------------------


def _context_device(binding) -> int | str:
    """The device of the current context, asked of the driver through the binding's own package."""
    try:
        if binding.name == "cuda-python":
            try:
                from cuda.bindings import driver
            except ImportError:
                from cuda import cuda as driver
            error, device = driver.cuCtxGetDevice()
            return int(device) if error == driver.CUresult.CUDA_SUCCESS else f"cuCtxGetDevice failed: {error}"
        import pycuda.driver as driver

        bus = driver.Context.get_device().pci_bus_id()
        return next(i for i in range(driver.Device.count()) if driver.Device(i).pci_bus_id() == bus)
    except Exception as exc:  # a binding without the call (an old one, a test's fake): not asked, not failed
        return f"not asked: {one_line(exc)}"


def _round_trips(binding, nbytes: int, repeats: int) -> dict[str, Any]:
    """Pinned host -> GPU -> host copies on one stream, checked byte for byte and timed (best of ``repeats``)."""
    count = max(1, nbytes // 4)
    with contextlib.ExitStack() as cleanup:  # whatever was allocated is freed, also when a later call fails
        host_in = binding.pinned((count,), np.float32)
        cleanup.callback(binding.free_pinned, host_in)
        host_out = binding.pinned((count,), np.float32)
        cleanup.callback(binding.free_pinned, host_out)
        pointer = binding.alloc(count * 4)
        cleanup.callback(binding.free, pointer)
        stream = binding.stream()
        cleanup.callback(binding.destroy_stream, stream)
        host_in[:] = np.arange(count, dtype=np.float32)
        host_out[:] = -1.0
        h2d, d2h = [], []
        for _ in range(repeats):
            start = time.perf_counter()
            binding.copy_to_device(pointer, host_in, stream)
            binding.synchronize(stream)
            middle = time.perf_counter()
            binding.copy_to_host(host_out, pointer, stream)
            binding.synchronize(stream)
            h2d.append(middle - start)
            d2h.append(time.perf_counter() - middle)
        if not np.array_equal(host_in, host_out):
            raise StepError(f"{binding.name}: the data copied to the GPU and back differs")
    rate = lambda seconds: count * 4 / max(min(seconds), 1e-9) / 1e9  # noqa: E731  (best of the repeats)
    return {"bytes": count * 4, "round_trips": repeats, "h2d_gb_per_s": rate(h2d), "d2h_gb_per_s": rate(d2h)}


def _exercise(name: str, work: Work) -> dict[str, Any]:
    from clca_deploy.tensorrt.cuda import current, open_binding

    binding = open_binding(work.device, name)  # device N's primary context, retained
    try:
        with current(binding):
            copies = _round_trips(binding, work.settings.binding_bytes, work.settings.binding_repeats)
            context_device = _context_device(binding)
    finally:
        binding.release()
    if isinstance(context_device, int) and context_device != work.device:
        raise StepError(f"{name}: the context is on GPU {context_device}, not GPU {work.device}")
    return {"status": "ok", "device": work.device, "context_device": context_device, **copies}


def cuda_bindings(work: Work) -> dict[str, Any]:
    """clca_deploy/tensorrt/cuda.py for real with every installed binding: context, memory, copies, stream."""
    rows: dict[str, Any] = {}
    for name in work.machine.bindings:
        try:
            rows[name] = _exercise(name, work)
        except Exception as exc:  # one binding failing must not hide the other's result
            rows[name] = {"status": "failed", "reason": one_line(exc)}
    failed = [name for name, entry in rows.items() if entry["status"] != "ok"]
    if failed:
        raise StepError(f"CUDA binding {', '.join(failed)} failed: {rows[failed[0]]['reason']}", {"bindings": rows})
    return {"bindings": rows}


# -- power -------------------------------------------------------------------------------------------------


def _power_fields(stats) -> dict[str, Any]:
    fields = latency_fields(stats)
    fields["seconds"] = sum(stats.samples_ms) / 1000.0
    return fields


def _matmul(work: Work) -> dict[str, Any]:
    """A square FP16 matmul on GPU N timed for the power window: watts and energy under a known load."""
    import torch

    from clca_deploy.bench.latency import measure_latency

    device = torch.device(work.torch_device)
    size = work.settings.matmul_size
    dtype = torch.float16 if device.type == "cuda" else torch.float32  # the CPU stand-in of tests has no fast fp16
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)

    def run(_: np.ndarray) -> None:
        torch.matmul(a, b)
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    sampler, reason = work.power_sampler()
    window = work.settings.power_window_s
    stats = measure_latency(run, np.zeros((1, 1), np.float32), 3, 10, sampler, reason, min_seconds=window)
    fields = _power_fields(stats)
    fields.update(matmul=f"{size}x{size} {str(dtype).removeprefix('torch.')}",
                  tflops=2 * size**3 / (stats.p50_ms / 1000) / 1e12)
    return fields


def power(work: Work) -> dict[str, Any]:
    """Board power of GPU N through its sensor: idle, then under a matmul, each over the time-based window."""
    from clca_deploy.bench.latency import measure_latency

    sampler, reason = work.power_sampler()
    if sampler is None:
        raise Skip(reason)
    idle = measure_latency(lambda _: time.sleep(0.02), np.zeros((1, 1), np.float32), 0, 1, sampler, reason,
                           min_seconds=work.settings.power_window_s)
    result: dict[str, Any] = {"source": sampler.source, "idle": _power_fields(idle)}
    if work.machine.torch_cuda_reason and not work.settings.torch_device:
        result["load"] = {"status": "skipped", "reason": work.machine.torch_cuda_reason}
    else:
        result["load"] = _matmul(work)
    missing = [what for what in ("idle", "load") if result[what].get("power_reason")]
    if missing:
        raise StepError(f"no power figure {'/'.join(missing)}: {result[missing[0]]['power_reason']}", result)
    return result


# -- images ------------------------------------------------------------------------------------------------


def leaves(work: Work) -> dict[str, Any]:
    """../shared's real leaves where present, else the demo's synthetic leaves (nothing is downloaded)."""
    from clca_deploy.data.synthetic import SyntheticLeafConfig, write_synthetic_dataset
    from clca_deploy.pipeline.demo import SYNTHETIC_DIFFICULTY

    if work.machine.leaves:
        work.products["leaves"] = Path(work.machine.leaves)
        return {"source": "shared", "path": work.machine.leaves}
    train, test = work.settings.synthetic_per_class
    config = SyntheticLeafConfig(train_per_class=train, test_per_class=test, image_size=work.settings.synthetic_size,
                                 difficulty=SYNTHETIC_DIFFICULTY)
    info = write_synthetic_dataset(work.folder / "leaves", config)
    work.products["leaves"] = info.root
    return {"source": "synthetic", "config": config.to_dict(), "classes": info.num_classes,
            "train_images": info.train_images, "test_images": info.test_images}

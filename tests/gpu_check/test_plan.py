"""gpu_check's plan against fake machine profiles: what runs, what is skipped and why, in which order."""

from __future__ import annotations

from dataclasses import replace

import pytest

from benchmarks.gpu_check.plan import Settings, Step, check_order, plan_steps
from benchmarks.gpu_check.runner import initial_records
from tests.gpu_check.helpers import BARE_H100, FULL, TINY

DEFAULT = Settings()


def statuses(machine, settings=DEFAULT) -> dict[str, tuple[str, str | None]]:
    return {r["name"]: (r["status"], r.get("reason")) for r in initial_records(plan_steps(settings), machine)}


def test_every_plan_is_ordered_and_unique():
    for settings in (DEFAULT, TINY):
        steps = plan_steps(settings)
        check_order(steps)  # raises on a need planned later, or a name twice
        assert len({step.name for step in steps}) == len(steps)
    with pytest.raises(ValueError, match="needs"):
        check_order([Step("b", lambda w: {}, 1, needs=("a",)), Step("a", lambda w: {}, 1)])


def test_a_bare_h100_without_tensorrt_plans_the_pytorch_and_onnxruntime_steps():
    plan = statuses(BARE_H100)
    planned = [name for name, (status, _) in plan.items() if status == "planned"]
    assert planned == [
        "doctor", "gpu and driver", "CUDA bindings", "NVML power", "leaf images", "ViT-B/16 448 checkpoint",
        "torch GPU keep 1", "torch GPU keep 0.1", "ONNX export keep 1", "onnxruntime CPU keep 1",
        "ONNX export keep 0.1", "onnxruntime CPU keep 0.1", "torch CPU keep 1", "torch CPU keep 0.1",
    ]
    # Every TensorRT step is skipped with the reason, not failed.
    trt = {name: reason for name, (status, reason) in plan.items() if "engine" in name or "tiny" in name or "fixture" in name}
    assert trt and all(reason == "TensorRT cannot run here: TensorRT is not installed" for reason in trt.values())
    assert plan["trt tests"] == ("skipped", "TensorRT cannot run here: TensorRT is not installed")
    status, reason = plan["onnxruntime GPU keep 1"]
    assert status == "skipped" and "has no CUDAExecutionProvider" in reason and "onnxruntime-gpu" in reason


def test_a_full_gpu_server_plans_every_step():
    plan = statuses(FULL)
    assert {status for status, _ in plan.values()} == {"planned"}
    assert len(plan) == 30  # 5 probes, 3 ViT on the GPU, trt tests, 7 tiny model, 6 fixture, 8 CPU baselines


def test_a_missing_fixture_skips_its_chain_and_says_where_it_looked():
    plan = statuses(replace(FULL, fixture=None, fixture_reason="/x/shared/fixture.pth not found (pass --shared)"))
    fixture = {name: value for name, value in plan.items() if name.startswith("golden fixture")}
    assert plan["golden fixture: ONNX files"] == ("skipped", "/x/shared/fixture.pth not found (pass --shared)")
    # The engines need the ONNX files: skipped with the reason passed on, not left to fail.
    assert all(status == "skipped" for status, _ in fixture.values())
    assert "needs 'golden fixture: ONNX files'" in plan["golden fixture: fp16 engine"][1]
    assert plan["tiny model: fp16 engine"][0] == "planned"


def test_without_pytorch_the_checkpoint_steps_are_skipped_but_not_the_probes():
    no_torch = replace(FULL, torch=None, torch_reason="running a checkpoint needs PyTorch: pip install ...",
                       torch_cuda_reason="PyTorch is not installed")
    plan = statuses(no_torch)
    assert plan["ViT-B/16 448 checkpoint"] == ("skipped", no_torch.torch_reason)
    assert plan["torch CPU keep 0.1"][0] == "skipped" and plan["tiny model: train"][0] == "skipped"
    assert all(plan[name][0] == "planned" for name in ("doctor", "gpu and driver", "CUDA bindings", "NVML power", "trt tests"))


def test_no_binding_no_sensor_no_pytest_are_reasons():
    plan = statuses(replace(FULL, bindings=(), power_reason="no power sensor: NVML does not start", pytest=False))
    assert plan["CUDA bindings"] == ("skipped", "no CUDA Python binding is installed (cuda-python or pycuda)")
    assert plan["NVML power"] == ("skipped", "no power sensor: NVML does not start")
    assert plan["trt tests"] == ("skipped", "pytest is not installed (the trt tests need it)")


def test_estimates_scale_with_the_machine():
    step = {s.name: s for s in plan_steps(DEFAULT)}
    cpu, gpu = step["torch CPU keep 1"], step["torch GPU keep 1"]
    assert cpu.estimate(replace(FULL, cpu_count=4)) == 4 * cpu.estimate(FULL)  # 16 reference cores / 4
    assert gpu.estimate(replace(FULL, cpu_count=4)) == gpu.estimate(FULL)
    assert gpu.estimate(replace(FULL, jetson=True)) == 3 * gpu.estimate(FULL)


def test_the_default_plan_fits_the_bare_h100_in_the_default_budget():
    from benchmarks.gpu_check.cli import DEFAULT_BUDGET_S

    records = initial_records(plan_steps(DEFAULT), BARE_H100)
    total = sum(r["estimate_s"] for r in records if r["status"] == "planned")
    assert total <= DEFAULT_BUDGET_S, total

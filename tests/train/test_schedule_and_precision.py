"""Pure decisions of the trainer: learning-rate schedule, evaluation epochs, budget, precision."""

from __future__ import annotations

import math

import pytest

from clca_deploy.errors import ConfigError
from clca_deploy.train.config import FINETUNE_LR, SCRATCH_LR, TrainConfig
from clca_deploy.train.loop import _epochs_for_budget
from clca_deploy.train.precision import resolve_precision
from clca_deploy.train.schedule import evaluation_epochs, learning_rate


def test_warmup_is_linear_then_cosine_ends_at_min_lr():
    lr = lambda step: learning_rate(step, total_steps=100, warmup_steps=10, base_lr=1e-3, warmup_lr=1e-6, min_lr=1e-5)
    assert lr(0) == pytest.approx(1e-6)
    assert lr(5) == pytest.approx(1e-6 + (1e-3 - 1e-6) / 2)
    assert lr(10) == pytest.approx(1e-3)
    assert lr(55) == pytest.approx(1e-5 + (1e-3 - 1e-5) / 2)
    assert lr(100) == pytest.approx(1e-5)
    steps = [lr(s) for s in range(10, 101)]
    assert all(a >= b for a, b in zip(steps, steps[1:]))


def test_no_warmup_starts_at_base_lr():
    assert learning_rate(0, 10, 0, 1e-3, 1e-6, 1e-5) == pytest.approx(1e-3)


def test_evaluation_epochs_spread_and_include_the_last():
    assert evaluation_epochs(100, 10) == frozenset(range(9, 100, 10))
    assert evaluation_epochs(3, 10) == frozenset({0, 1, 2})
    assert 6 in evaluation_epochs(7, 3)


def test_budget_fits_epochs_with_evaluation_cost():
    # 60 s budget, 10 s epochs on 300 images, 90 test images evaluated 3 times (1 s each).
    assert _epochs_for_budget(60.0, 10.0, 300, 90, 3) == math.floor((60 * 0.97 - 3) / 10)
    assert _epochs_for_budget(5.0, 10.0, 300, 0, 1) == 1


@pytest.mark.parametrize(
    "requested, device, bf16, expected",
    [("auto", "cuda", False, "fp16"), ("auto", "cpu", True, "bf16"), ("auto", "cpu", False, "fp32"),
     ("fp32", "cuda", True, "fp32"), ("bf16", "cpu", True, "bf16")],
)
def test_precision_choice(requested, device, bf16, expected):
    assert resolve_precision(requested, device, bf16_on_cpu=bf16) == expected


@pytest.mark.parametrize("requested, device, bf16", [("fp16", "cpu", True), ("bf16", "cpu", False)])
def test_impossible_precision_is_refused(requested, device, bf16):
    with pytest.raises(ConfigError):
        resolve_precision(requested, device, bf16_on_cpu=bf16)


def test_config_defaults_and_validation():
    assert TrainConfig(epochs=1).base_lr == SCRATCH_LR
    assert TrainConfig(epochs=1, pretrained=True).base_lr == FINETUNE_LR
    for bad in ({}, {"epochs": 1, "minutes": 1.0}, {"epochs": 0}, {"epochs": 1, "keep_rate": 0.0},
                {"epochs": 1, "batch_size": 1}, {"epochs": 1, "augment": "wild"}, {"minutes": -1.0}):
        with pytest.raises(ConfigError):
            TrainConfig(**bad)

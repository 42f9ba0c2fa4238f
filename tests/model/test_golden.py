"""Fidelity to the official code: golden checkpoints and the logits the official code produced."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clca_deploy.errors import UnsupportedError
from clca_deploy.model import ClcaConfig, load_checkpoint
from tests.conftest import golden_names, load_golden

# The fixtures' attention is deliberately peaky, which amplifies fp32 rounding: on this CPU,
# merely switching ATen/MKL kernel paths (ATEN_CPU_CAPABILITY, MKL_CBWR) moves the error
# against the TopK fixture between 0.7e-4 and 5.3e-4, and the fixture itself is 3.6e-4 from
# the exact (fp64) function; onnxruntime's kernels land 3.4e-4 from it. So the bound is 1e-4,
# widened to a quarter of the fixture's perturbation_stability where that is larger: still
# 4x tighter than the effect of a 1e-5 input change, and orders of magnitude below what a
# wrong token selection does.
BASE_ATOL = 1e-4


def tolerance(meta: dict) -> float:
    return max(BASE_ATOL, 0.25 * meta["perturbation_stability"])


def _supported(meta: dict) -> bool:
    try:
        ClcaConfig(model=meta["model"], img_size=meta["img_size"], num_classes=meta["num_classes"])
    except UnsupportedError:
        return False
    return True


@pytest.mark.parametrize("name", golden_names())
def test_golden_logits_and_token_counts(name):
    path, meta, io = load_golden(name)
    if not _supported(meta):
        pytest.skip(f"{meta['model']}: method not implemented yet")
    model = load_checkpoint(path)
    with torch.no_grad():
        logits = model(torch.from_numpy(io["input"])).numpy()
    np.testing.assert_allclose(logits, io["logits"], atol=tolerance(meta), rtol=0)
    assert (logits.argmax(1) == io["logits"].argmax(1)).all()
    counts = [[step.tokens_in, step.tokens_out] for step in model.token_schedule()]
    assert counts == meta["tokens_in_out_per_block"]


@pytest.mark.parametrize("name", golden_names())
def test_golden_settings_resolved_from_args(name):
    path, meta, _ = load_golden(name)
    if not _supported(meta):
        pytest.skip(f"{meta['model']}: method not implemented yet")
    config = load_checkpoint(path).config
    assert config.model == meta["model"]
    assert config.img_size == meta["img_size"]
    assert config.keep_rate == (meta["keep_rate"],)
    assert list(config.reduction_loc) == meta["reduction_loc"]
    assert (config.clc, config.num_clr, config.ifa_head) == (meta["clc"], meta["num_clr"], meta["ifa_head"])
    assert config.num_classes == meta["num_classes"]

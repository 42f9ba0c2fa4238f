"""Fidelity to the official ILA and GLSim code: their checkpoints, logits, token counts and crops.

Expected values come from the fixtures (../shared/fixtures/{ila,glsim}_golden), which the
official code produced; see their READMEs for the tolerances. fp64 is the exact function
(the official fp64 run agrees with itself to 3e-15); fp32 within 1e-5, below the 1e-5 input
perturbation's effect (2.7e-6 to 4.5e-6) plus fp32 rounding.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from PIL import Image

from clca_deploy.model import load_checkpoint
from clca_deploy.model.fgir import GlsimModel, IlaModel
from clca_deploy.model.fgir.glsim import select_patches
from tests.conftest import SHARED
from tests.model.fgir_fixtures import fgir_names, load_fgir_golden

FP64_ATOL = 1e-12
FP32_ATOL = 1e-5


def _logits(model, inputs: np.ndarray, double: bool = False) -> np.ndarray:
    if double:
        model = copy.deepcopy(model).double()
    with torch.no_grad():
        x = torch.from_numpy(inputs)
        return model(x.double() if double else x).numpy()


@pytest.mark.parametrize("name", fgir_names())
def test_fp64_logits_are_the_official_function(name):
    path, meta, io = load_fgir_golden(name)
    model = load_checkpoint(path)
    logits = _logits(model, io["input"], double=True)
    assert logits.dtype == np.float64
    np.testing.assert_allclose(logits, io["logits_fp64"], atol=FP64_ATOL, rtol=0)


@pytest.mark.parametrize("name", fgir_names())
def test_fp32_logits_match_the_official_run(name):
    path, meta, io = load_fgir_golden(name)
    model = load_checkpoint(path)
    assert next(model.parameters()).dtype == torch.float32  # the fp16 checkpoint is converted
    logits = _logits(model, io["input"])
    np.testing.assert_allclose(logits, io["logits"], atol=FP32_ATOL, rtol=0)
    np.testing.assert_allclose(logits, io["logits_fp64"], atol=FP32_ATOL, rtol=0)
    assert (logits.argmax(1) == np.array(meta["logits_argmax"])).all()


def _counts(model, stage: str) -> list[list[int]]:
    return [[s.tokens_in, s.tokens_out] for s in model.token_schedule() if s.stage == stage]


@pytest.mark.parametrize("name", fgir_names("ila"))
def test_ila_token_counts_and_adapters(name):
    path, meta, _ = load_fgir_golden(name)
    model = load_checkpoint(path)
    assert isinstance(model, IlaModel)
    assert _counts(model, "encoder") == meta["tokens_in_out_per_block"]
    adapters = [(s.adapter, s.tokens_in, s.tokens_out) if s.adapter else None for s in model.token_schedule()]
    expected = [(a["adapter"], a["tokens_in"], a["tokens_out"]) if a else None for a in meta["adapter_after_block"]]
    assert adapters == expected


@pytest.mark.parametrize("name", fgir_names("ila"))
def test_ila_sequence_lengths_really_run(name):
    """The schedule is what the forward does: the length leaving each block's adapter."""
    path, meta, io = load_fgir_golden(name)
    model = load_checkpoint(path)
    seen = []
    hooks = [block.register_forward_hook(lambda m, i, o: seen.append(i[0].shape[1])) for block in model.encoder.blocks]
    _logits(model, io["input"])
    for hook in hooks:
        hook.remove()
    assert seen == [pair[0] for pair in meta["tokens_in_out_per_block"]]


@pytest.mark.parametrize("name", fgir_names("glsim"))
def test_glsim_token_counts(name):
    path, meta, _ = load_fgir_golden(name)
    model = load_checkpoint(path)
    assert isinstance(model, GlsimModel)
    assert _counts(model, "global") == meta["tokens_in_out_per_block"]
    assert _counts(model, "crop") == meta["tokens_in_out_per_block_crop_pass"]
    assert _counts(model, "aggregator") == meta["aggregator_tokens_in_out_per_block"]


@pytest.mark.parametrize("name", fgir_names("glsim"))
def test_glsim_selection_boxes_and_crops(name):
    path, meta, io = load_fgir_golden(name)
    model = load_checkpoint(path)
    images = torch.from_numpy(io["input"])
    with torch.no_grad():
        logits, crops, boxes = model.forward_with_crops(images)
        top = select_patches(model.encode(images), meta["settings"]["dynamic_top"])
    assert [sorted(row) for row in top.tolist()] == [sorted(row) for row in meta["topk_patch_indices"]]
    assert boxes.tolist() == meta["crop_boxes_x0_x1_y0_y1"]
    # Bit-identical here; 1e-6 leaves room for one rounding step of another CPU's interpolation kernel.
    np.testing.assert_allclose(crops.numpy(), io["crops"], atol=1e-6, rtol=0)
    np.testing.assert_allclose(logits.numpy(), io["logits"], atol=FP32_ATOL, rtol=0)


@pytest.mark.parametrize("name", fgir_names("glsim"))
def test_glsim_boxes_in_fp64(name):
    """The fixture's boxes hold in fp64 too (its README: stable under perturbation and fp64)."""
    path, meta, io = load_fgir_golden(name)
    model = copy.deepcopy(load_checkpoint(path)).double()
    with torch.no_grad():
        _, _, boxes = model.forward_with_crops(torch.from_numpy(io["input"]).double())
    assert boxes.tolist() == meta["crop_boxes_x0_x1_y0_y1"]


@pytest.mark.parametrize("name", fgir_names())
def test_settings_and_pipeline_attributes(name):
    path, meta, _ = load_fgir_golden(name)
    model = load_checkpoint(path)
    config, settings = model.config, meta["settings"]
    assert (config.model, config.img_size, config.num_classes) == (
        settings["model_name"], settings["image_size"], settings["num_classes"]
    )
    assert config.family == ("glsim" if name.startswith("glsim") else "ila")
    assert config.vit.layer_norm_eps == settings["layer_norm_eps"]
    assert config.resize_size == settings["test_resize_size"] == int(1.34 * settings["image_size"])
    assert model.class_names is None and model.source.format == "official" and model.source.epoch == 50
    assert not model.training
    if config.ila is not None:
        assert list(config.ila.ila_locs) == settings["ila_locs"]
        assert list(config.ila.ila_ds_locs) == settings["ila_ds_locs"]
        assert config.ila.adapter == settings["adapter"]
    else:
        assert config.glsim.dynamic_top == settings["dynamic_top"]
        assert config.glsim.anchor_class_token is settings["anchor_class_token"]


@pytest.mark.parametrize("name", fgir_names())
def test_preprocessing_reproduces_the_official_input(name):
    """The model's preprocessing settings (square resize to int(1.34 S), crop S) give the fixture's input exactly."""
    from clca_deploy.data.preprocess import PreprocessConfig, preprocess

    path, meta, io = load_fgir_golden(name)
    config = PreprocessConfig.from_dict(load_checkpoint(path).config.preprocess_settings())
    images = [Image.open(SHARED / relative) for relative in meta["input_images"]]
    batch = np.stack([preprocess(image, config) for image in images])
    np.testing.assert_array_equal(batch, io["input"])

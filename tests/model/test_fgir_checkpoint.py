"""Official ILA / GLSim checkpoints: strict loading, DDP prefixes, refused options, ``clca-deploy info``."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from typer.testing import CliRunner

from clca_deploy.cli import app
from clca_deploy.errors import CheckpointError, ClcaDeployError, ConfigError, UnsupportedError
from clca_deploy.model import load_checkpoint
from tests.model.fgir_fixtures import fgir_names, load_fgir_golden, read_raw, save_edited

ILA_NAME = "ila_t16_readme_224"
GLSIM_NAME = "glsim_t16_224"


def _same_logits(a, b, inputs) -> bool:
    x = torch.from_numpy(inputs)
    with torch.no_grad():
        return torch.equal(a(x), b(x))


@pytest.mark.parametrize("name", [ILA_NAME, GLSIM_NAME])
def test_ddp_prefixed_checkpoint_loads_to_the_same_logits(name, tmp_path):
    path, _, io = load_fgir_golden(name)
    raw = read_raw(path)
    raw["model"] = {f"module.{key}": value for key, value in raw["model"].items()}
    ddp = tmp_path / "ddp.pth"
    torch.save(raw, ddp)
    assert _same_logits(load_checkpoint(path), load_checkpoint(ddp), io["input"])


@pytest.mark.parametrize("name, key", [
    (ILA_NAME, "model.encoder.ila_ds.0.ds_conv.weight"),
    (ILA_NAME, "model.encoder.ila_ds.1.norm1.1.running_var"),  # BN statistics are part of the function
    (GLSIM_NAME, "model.anchor_class_token"),  # unused by the forward, but part of the official model
    (GLSIM_NAME, "model.aggregator_norm.weight"),
])
def test_missing_key_is_refused_by_name(name, key, tmp_path):
    raw = read_raw(load_fgir_golden(name)[0])
    del raw["model"][key]
    path = tmp_path / "missing.pth"
    torch.save(raw, path)
    with pytest.raises(CheckpointError, match="missing keys") as error:
        load_checkpoint(path)
    assert key in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("key", ["model.encoder.ila_ds.2.ds_conv.weight", "model.head.extra", "module.model.head.head.weight"])
def test_extra_key_is_refused_by_name(key, tmp_path):
    raw = read_raw(load_fgir_golden(ILA_NAME)[0])
    raw["model"][key] = torch.zeros(3, dtype=torch.float16)
    path = tmp_path / "extra.pth"
    torch.save(raw, path)
    with pytest.raises(CheckpointError, match="unexpected keys") as error:
        load_checkpoint(path)
    assert key in str(error.value)


def test_wrong_shape_is_refused_by_name(tmp_path):
    raw = read_raw(load_fgir_golden(ILA_NAME)[0])
    raw["model"]["model.head.head.weight"] = torch.zeros(10, 192, dtype=torch.float16)
    path = tmp_path / "shape.pth"
    torch.save(raw, path)
    with pytest.raises(CheckpointError, match=r"model\.head\.head\.weight: checkpoint \(10, 192\)"):
        load_checkpoint(path)


def test_config_that_disagrees_with_the_weights_is_refused(tmp_path):
    """ila_padding=True keeps 196 patches after ila_ds: the weights still fit, but the grid does not shrink."""
    raw = read_raw(load_fgir_golden(ILA_NAME)[0])
    model = load_checkpoint(save_edited(raw, tmp_path, ila_padding=True))
    assert [s.tokens_out for s in model.token_schedule()] == [197] * 12
    with pytest.raises(CheckpointError, match="unexpected keys: model.encoder.ila_ds.1"):
        load_checkpoint(save_edited(raw, tmp_path, ila_ds_locs=[3]))


def test_checkpoint_without_config_is_refused(tmp_path):
    raw = read_raw(load_fgir_golden(GLSIM_NAME)[0])
    del raw["config"]
    path = tmp_path / "no_config.pth"
    torch.save(raw, path)
    with pytest.raises(CheckpointError, match="no 'config'"):
        load_checkpoint(path)


def test_settings_cannot_override_an_official_fgir_config():
    path = load_fgir_golden(ILA_NAME)[0]
    with pytest.raises(ConfigError, match="input_size"):
        load_checkpoint(path, input_size=384)


UNSUPPORTED = [
    (GLSIM_NAME, {"sim_metric": "l2"}, "sim_metric"),
    (GLSIM_NAME, {"anchor_random": True}, "anchor_random"),
    (GLSIM_NAME, {"test_flip": True}, "test_flip"),
    (GLSIM_NAME, {"reducer": "pool"}, "reducer"),
    (GLSIM_NAME, {"classifier": "avg_cls"}, "classifier"),
    (GLSIM_NAME, {"dynamic_anchor": False, "anchor_size": None}, "dynamic_anchor"),
    (GLSIM_NAME, {"dynamic_top": 500}, "dynamic_top"),
    (GLSIM_NAME, {"deit_recipe": True}, "deit_recipe"),
    (GLSIM_NAME, {"model_name": "vit_bs16"}, "model_name"),
    (ILA_NAME, {"classifier": "pool"}, "classifier"),
    (ILA_NAME, {"prompt": "vpt_deep"}, "prompt"),
    (ILA_NAME, {"selector": "psm"}, "selector"),
    (ILA_NAME, {"dynamic_anchor": True}, "dynamic_anchor"),
    (ILA_NAME, {"custom_mean_std": True}, "custom_mean_std"),
    (ILA_NAME, {"patch_stride": 12}, "patch_stride"),
    (ILA_NAME, {"pos_embedding_type": "sincos"}, "pos_embedding_type"),
    (ILA_NAME, {"adapter_path": "conv"}, "adapter_path"),
    (ILA_NAME, {"ila_ds_conv_type": "max_pool"}, "ila_ds_conv_type"),
    (ILA_NAME, {"ila_dilation": 2}, "ila_dilation"),
    (ILA_NAME, {"image_size": 200}, "image_size"),
]


@pytest.mark.parametrize("name, changes, option", UNSUPPORTED, ids=[f"{n[:5]}-{o}" for n, _, o in UNSUPPORTED])
def test_unsupported_option_is_refused_in_one_line_naming_it(name, changes, option, tmp_path):
    raw = read_raw(load_fgir_golden(name)[0])
    path = save_edited(raw, tmp_path, **changes)
    with pytest.raises(UnsupportedError) as error:
        load_checkpoint(path)
    message = str(error.value)
    assert option in message and "\n" not in message and str(path) in message


def test_missing_config_field_is_refused(tmp_path):
    raw = read_raw(load_fgir_golden(ILA_NAME)[0])
    del raw["config"].ila_ds_locs
    path = tmp_path / "old.pth"
    torch.save(raw, path)
    with pytest.raises(CheckpointError, match="no 'ila_ds_locs'"):
        load_checkpoint(path)


def test_options_the_official_vit_glsim_ignores_are_accepted(tmp_path):
    """select_top_k, aggregator_type, inference_crops and token_drop are read only by the official
    timm-backbone GLSim (timm_glsim.py); ViTGLSim (vit_* names) never sees them."""
    path, _, io = load_fgir_golden(GLSIM_NAME)
    raw = read_raw(path)
    edited = save_edited(raw, tmp_path, select_top_k=True, aggregator_type="conv", inference_crops=False, token_drop=0.5)
    assert _same_logits(load_checkpoint(path), load_checkpoint(edited), io["input"])


runner = CliRunner()


@pytest.mark.parametrize("name", fgir_names())
def test_info_shows_family_and_tokens_per_block(name):
    path, meta, _ = load_fgir_golden(name)
    result = runner.invoke(app, ["info", str(path)])
    assert result.exit_code == 0, result.output
    family = "GLSim" if name.startswith("glsim") else "ILA"
    assert f"[family {family}, fgir_vit backbone]" in result.output
    assert f"resize {int(1.34 * meta['settings']['image_size'])}" in result.output
    assert "GMACs" in result.output and "parameters" in result.output
    last_in, last_out = meta["tokens_in_out_per_block"][-1]
    prefix = "global " if family == "GLSim" else ""
    assert f"{prefix}11: {last_in:>5} -> {last_out}" in result.output
    if family == "GLSim":
        assert "crop 11:   197 -> 197" in result.output and "aggregator  0:     2 -> 2" in result.output
    else:
        block, (tokens_in, tokens_out) = next((i, p) for i, p in enumerate(meta["tokens_in_out_per_block"]) if p[0] != p[1])
        assert f"{block:>2}: {tokens_in:>5} -> {tokens_out:<5}  ila_ds[0]" in result.output


@pytest.mark.parametrize("name", fgir_names())
def test_info_json_schedule_matches_fixture(name):
    path, meta, _ = load_fgir_golden(name)
    result = runner.invoke(app, ["info", str(path), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    first_stage = data["schedule"][0]["stage"]
    counts = [[s["tokens_in"], s["tokens_out"]] for s in data["schedule"] if s["stage"] == first_stage]
    assert counts == meta["tokens_in_out_per_block"]
    assert data["settings"]["resize_size"] == meta["settings"]["test_resize_size"]


def test_info_refusal_is_one_line_exit_2(tmp_path):
    raw = read_raw(load_fgir_golden(GLSIM_NAME)[0])
    edited = save_edited(raw, tmp_path, sim_metric="l1")
    proc = subprocess.run([sys.executable, "-m", "clca_deploy.cli", "info", str(edited)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1 and "sim_metric='l1'" in proc.stderr


def test_errors_are_clca_deploy_errors():
    assert issubclass(UnsupportedError, ClcaDeployError) and issubclass(CheckpointError, ClcaDeployError)

"""Checkpoint loading: formats, safety of unpickling, and clear errors."""

from __future__ import annotations

import argparse
import pathlib
import json
import os

import pytest
import torch
from safetensors.torch import save_file

from clca_deploy.errors import CheckpointError, ConfigError
from clca_deploy.model import ClcaConfig, ClcaModel, load_checkpoint
from clca_deploy.model.checkpoint import SAFETENSORS_CONFIG_KEY

TINY = dict(model="evit_vit_tiny_patch16_224", input_size=32, num_classes=3, keep_rate=[0.5],
            reduction_loc=[3, 6, 9], clc=True, num_clr=1, clc_include_gap=True, clc_pool_cls=False,
            clc_pool_clr=False, clc_recover_at_last=True, ifa_head=True, ifa_dws_conv_groups=2)


def tiny_model() -> ClcaModel:
    config, _ = ClcaConfig.from_args(TINY)
    torch.manual_seed(0)
    return ClcaModel(config).eval()


def official_dict(model: ClcaModel) -> dict:
    state = model.state_dict()
    # train.py keeps the unused 1000-class head of CLA models in the state dict.
    state["head.weight"] = torch.zeros(1000, model.config.backbone.embed_dim)
    state["head.bias"] = torch.zeros(1000)
    return {"model": state, "args": argparse.Namespace(**TINY), "epoch": 3, "ema_best": False}


class RunsCode:
    """Unpickling this would create a file: a stand-in for a malicious checkpoint."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def same_logits(a: ClcaModel, b: ClcaModel) -> bool:
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return torch.equal(a(images), b(images))


def test_official_format_roundtrip(tmp_path):
    model = tiny_model()
    path = tmp_path / "best_checkpoint.pth"
    torch.save(official_dict(model), path)
    loaded = load_checkpoint(path)
    assert loaded.source.format == "official" and loaded.source.epoch == 3
    assert not loaded.training
    assert same_logits(model, loaded)


def test_fp16_weights_run_in_fp32(tmp_path):
    model = tiny_model()
    ckpt = official_dict(model)
    ckpt["model"] = {k: v.half() if v.is_floating_point() else v for k, v in ckpt["model"].items()}
    torch.save(ckpt, tmp_path / "half.pth")
    loaded = load_checkpoint(tmp_path / "half.pth")
    assert all(p.dtype == torch.float32 for p in loaded.parameters())


def test_pickle_that_runs_code_is_refused_and_not_executed(tmp_path):
    marker = tmp_path / "pwned"
    ckpt = official_dict(tiny_model())
    ckpt["args"] = RunsCode(marker)
    path = tmp_path / "evil.pth"
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError, match="Nothing in it was executed"):
        load_checkpoint(path)
    assert not marker.exists()


def test_other_classes_than_namespace_are_refused(tmp_path):
    ckpt = official_dict(tiny_model())
    ckpt["extra"] = pathlib.PurePosixPath("harmless")  # not on the allow-list
    torch.save(ckpt, tmp_path / "parser.pth")
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(tmp_path / "parser.pth")


def test_bare_state_dict_needs_settings(tmp_path):
    model = tiny_model()
    torch.save(model.state_dict(), tmp_path / "weights.pth")
    with pytest.raises(CheckpointError, match="pass the settings"):
        load_checkpoint(tmp_path / "weights.pth")
    loaded = load_checkpoint(tmp_path / "weights.pth", **TINY)
    assert loaded.source.format == "state_dict"
    assert same_logits(model, loaded)


def test_safetensors_with_and_without_metadata(tmp_path):
    model = tiny_model()
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, tmp_path / "plain.safetensors")
    save_file(state, tmp_path / "meta.safetensors", metadata={SAFETENSORS_CONFIG_KEY: json.dumps(TINY)})
    assert same_logits(model, load_checkpoint(tmp_path / "plain.safetensors", **TINY))
    assert same_logits(model, load_checkpoint(tmp_path / "meta.safetensors"))


def test_mismatch_lists_missing_unexpected_and_shapes(tmp_path):
    ckpt = official_dict(tiny_model())
    state = ckpt["model"]
    del state["blocks.0.norm1.weight"]
    state["blocks.0.surprise"] = torch.zeros(1)
    state["clr"] = torch.zeros(1, 2, 192)
    torch.save(ckpt, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(tmp_path / "bad.pth")
    message = str(err.value)
    assert "1 missing keys: blocks.0.norm1.weight" in message
    assert "1 unexpected keys: blocks.0.surprise" in message
    assert "clr: checkpoint (1, 2, 192) vs model (1, 1, 192)" in message


def test_wrong_settings_for_weights(tmp_path):
    torch.save(official_dict(tiny_model()), tmp_path / "ckpt.pth")
    with pytest.raises(CheckpointError, match="shape mismatches"):
        load_checkpoint(tmp_path / "ckpt.pth", num_classes=5)


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", b"PK\x03\x04truncated"])
def test_corrupt_or_empty_files(tmp_path, content):
    path = tmp_path / "broken.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


def test_truncated_checkpoint(tmp_path):
    path = tmp_path / "full.pth"
    torch.save(official_dict(tiny_model()), path)
    data = path.read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="complete"):
        load_checkpoint(tmp_path / "cut.pth")


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.pth")


def test_keep_rate_override_and_bad_values(tmp_path):
    torch.save(official_dict(tiny_model()), tmp_path / "ckpt.pth")
    loaded = load_checkpoint(tmp_path / "ckpt.pth", keep_rate=0.25)
    assert loaded.config.keep_rate == (0.25,)
    assert loaded.source.overridden == ("keep_rate",)
    for bad in (0.0, 1.5, -0.1):
        with pytest.raises(ConfigError, match="outside"):
            load_checkpoint(tmp_path / "ckpt.pth", keep_rate=bad)


def test_missing_args_fields_use_official_fallbacks(tmp_path):
    ckpt = official_dict(tiny_model())
    args = dict(TINY)
    del args["clc_recover_at_last"]  # official model code: getattr(args, ..., False)
    ckpt["args"] = argparse.Namespace(**args)
    torch.save(ckpt, tmp_path / "old.pth")
    loaded = load_checkpoint(tmp_path / "old.pth")
    assert loaded.config.clc_recover_at_last is False
    assert loaded.source.defaulted == ("clc_recover_at_last",)

"""End to end: train on a tiny ImageFolder tree, resume, and write the official checkpoint layout."""

from __future__ import annotations

import argparse
import shutil

import pytest
import torch

from clca_deploy.data import PreprocessConfig, open_dataset
from clca_deploy.errors import ClcaDeployError, ConfigError
from clca_deploy.model import load_checkpoint
from clca_deploy.train import TrainConfig, train
from clca_deploy.train import loop as train_loop
from clca_deploy.train.evaluate import eval_tensors, evaluate
from tests.conftest import load_golden
from tests.train.conftest import write_image_folder

TINY = dict(model="evit_vit_tiny_patch16_224", keep_rate=0.1, img_size=32, batch_size=4, evaluations=1)


def _quiet(_line: str) -> None:
    pass


def test_train_writes_a_checkpoint_that_loads_and_evaluates(tiny_splits, tmp_path):
    out = tmp_path / "ckpt.pth"
    result = train(tiny_splits, out, TrainConfig(epochs=2, **TINY), log=_quiet, progress=False)
    assert result.epochs == result.epochs_run == 2
    assert result.train_images == 24 and result.test_images == 9
    assert result.steps == 2 * (24 // 4)
    assert result.history[-1].test_top1 == result.test_top1 is not None
    model = load_checkpoint(out)
    assert model.class_names == ("class_00", "class_01", "class_02")
    assert model.config.img_size == 32 and model.config.keep_rate == (0.1,)
    assert model.source.epoch == 1
    # The checkpoint's weights are the trained ones: its accuracy is the one reported.
    images, labels, _ = eval_tensors(open_dataset(tiny_splits / "test"), PreprocessConfig.for_size(32))
    assert evaluate(model, images, labels, torch.device("cpu")) == pytest.approx(result.test_top1)


def test_resumed_run_equals_an_uninterrupted_one(tiny_splits, tmp_path, monkeypatch):
    monkeypatch.setattr(train_loop, "SAVE_INTERVAL_SECONDS", 0.0)
    config = TrainConfig(epochs=3, precision="fp32", **TINY)
    whole = tmp_path / "whole.pth"
    train(tiny_splits, whole, config, log=_quiet, progress=False)

    class Interrupt(Exception):
        pass

    def stop_in_epoch_two(line: str) -> None:
        if line.startswith("epoch    2/3"):
            raise Interrupt

    part = tmp_path / "part.pth"
    with pytest.raises(Interrupt):
        train(tiny_splits, part, config, log=stop_in_epoch_two, progress=False)
    assert load_checkpoint(part).source.epoch == 0  # epoch 2 never finished writing
    resumed = train(tiny_splits, part, config, resume=True, log=_quiet, progress=False)
    assert resumed.resumed_from_epoch == 1 and resumed.epochs_run == 2
    a, b = load_checkpoint(whole).state_dict(), load_checkpoint(part).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_existing_output_needs_resume_and_resume_needs_same_settings(tiny_splits, tmp_path):
    out = tmp_path / "ckpt.pth"
    train(tiny_splits, out, TrainConfig(epochs=1, **TINY), log=_quiet, progress=False)
    before = out.read_bytes()
    with pytest.raises(ConfigError, match="--resume"):
        train(tiny_splits, out, TrainConfig(epochs=1, **TINY), log=_quiet, progress=False)
    with pytest.raises(ConfigError, match="keep_rate"):
        train(tiny_splits, out, TrainConfig(epochs=1, **{**TINY, "keep_rate": 0.5}), resume=True, log=_quiet, progress=False)
    assert out.read_bytes() == before
    with pytest.raises(ConfigError, match="no checkpoint|none is there"):
        train(tiny_splits, tmp_path / "missing.pth", TrainConfig(epochs=1, **TINY), resume=True, log=_quiet)


def test_unreadable_training_images_are_skipped_and_named(tiny_splits, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(tiny_splits / "train", data / "train")
    (data / "train" / "class_00" / "broken.jpg").write_bytes(b"not a jpeg")
    lines = []
    result = train(data, tmp_path / "c.pth", TrainConfig(epochs=1, **TINY), log=lines.append, progress=False)
    assert result.train_images == 24 and result.test_dir is None
    assert any("broken.jpg" in s for s in result.skipped)
    assert any(line.startswith("skipped") and "broken.jpg" in line for line in lines)


def test_checkpoint_has_the_official_layout(golden_dir, tmp_path):
    """Same settings as the official fixture evit_tiny_clca_k0.1_224: same keys, same shapes."""
    path, meta, _ = load_golden("evit_tiny_clca_k0.1_224")
    with torch.serialization.safe_globals([argparse.Namespace]):
        official = torch.load(path, map_location="cpu", weights_only=True)
    data = tmp_path / "leaves15"
    write_image_folder(data / "train", classes=meta["num_classes"], per_class=2, size=64)
    out = tmp_path / "ours.pth"
    config = TrainConfig(epochs=1, model=meta["model"], keep_rate=meta["keep_rate"], batch_size=8, img_size=meta["img_size"])
    train(data, out, config, log=_quiet, progress=False)
    with torch.serialization.safe_globals([argparse.Namespace]):
        ours = torch.load(out, map_location="cpu", weights_only=True)
    assert {k: tuple(v.shape) for k, v in ours["model"].items()} == {
        k: tuple(v.shape) for k, v in official["model"].items()
    }
    assert set(official) <= set(ours)
    official_args, our_args = vars(official["args"]), vars(ours["args"])
    model_fields = [k for k in official_args if k in ("model", "input_size", "keep_rate", "reduction_loc", "clc", "num_clr",
                    "clc_include_gap", "clc_pool_cls", "clc_pool_clr", "clc_recover_at_last", "ifa_head",
                    "ifa_dws_conv_groups", "num_classes")]
    assert len(model_fields) == 13
    assert {k: our_args[k] for k in model_fields} == {k: official_args[k] for k in model_fields}


def test_plain_training_has_a_linear_head(tiny_splits, tmp_path):
    out = tmp_path / "plain.pth"
    train(tiny_splits, out, TrainConfig(epochs=1, clca=False, **TINY), log=_quiet, progress=False)
    model = load_checkpoint(out)
    assert not model.config.clc and not model.config.ifa_head and model.config.num_clr == 0
    assert model.head.out_features == 3


def test_data_that_is_not_an_imagefolder_is_refused(tmp_path):
    (tmp_path / "flat").mkdir()
    write_image_folder(tmp_path / "x", classes=1, per_class=3)
    for f in (tmp_path / "x" / "class_00").iterdir():
        f.rename(tmp_path / "flat" / f.name)
    with pytest.raises(ClcaDeployError, match="ImageFolder"):
        train(tmp_path / "flat", tmp_path / "c.pth", TrainConfig(epochs=1, **TINY), log=_quiet)

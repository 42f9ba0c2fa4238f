"""Training ILA and GLSim: the timm -> fgir_vit backbone map, official checkpoints, freezing, resume."""

from __future__ import annotations

import argparse
import copy

import pytest
import torch

from clca_deploy.data import PreprocessConfig, open_dataset
from clca_deploy.errors import ConfigError, UnsupportedError
from clca_deploy.model import load_checkpoint
from clca_deploy.model.clca import ClcaModel
from clca_deploy.model.config import ClcaConfig
from clca_deploy.model.fgir import FgirConfig, GlsimModel, IlaModel, IlaSettings, VitSpec, config_from_args
from clca_deploy.model.fgir.checkpoint import build_model
from clca_deploy.train import TrainConfig, train
from clca_deploy.train import fgir as fgir_train
from clca_deploy.train import loop as train_loop
from clca_deploy.train.backbone_map import resample_grid, timm_to_fgir
from clca_deploy.train.checkpoint import save_training_checkpoint
from clca_deploy.train.evaluate import eval_tensors
from clca_deploy.train.fgir import model_config, official_init, trainable_when_frozen
from clca_deploy.train.fgir_args import official_namespace
from clca_deploy.train.init import init_fresh
from tests.model.fgir_fixtures import load_fgir_golden, read_raw

OFFICIAL_KEYS = {"config", "epoch", "model", "accuracy", "optimizer"}
# The smallest inputs each family runs at: ILA's two down-sampling adapters take a 5x5 grid
# to 1x1; GLSim's dynamic_top 8 needs at least 8 patches.
ILA_TINY = dict(model="ila_vit_t16", img_size=80, batch_size=4, evaluations=1)
GLSIM_TINY = dict(model="glsim_vit_t16", img_size=48, batch_size=8, evaluations=1, precision="fp32")


def _quiet(_line: str) -> None:
    pass


def _random_clca(model: str, img_size: int, **settings) -> ClcaModel:
    torch.manual_seed(0)
    clca = ClcaModel(ClcaConfig(model=model, img_size=img_size, num_classes=3, **settings))
    init_fresh(clca, torch.Generator().manual_seed(0))
    with torch.no_grad():  # norms away from 1/0 and a non-trivial class token, so a wrong mapping shows
        for name, param in clca.named_parameters():
            if "norm" in name or name == "cls_token":
                param.add_(0.1 * torch.randn(param.shape))
    return clca.eval()


def test_mapped_backbone_computes_the_clca_encoder_features():
    clca = _random_clca("vit_tiny_patch16_224", 32)  # plain ViT: no reduction, final LayerNorm
    # The eps is set to timm's 1e-6 here only: with fgir's 1e-12 the functions differ by about
    # 1e-5 relative (eps against a unit-scale variance), which would hide a small mapping error.
    vit = VitSpec("vit_t16", 16, 192, 768, 3, 12, layer_norm_eps=1e-6)
    config = FgirConfig(family="ila", model_name="vit_t16", image_size=32, num_classes=3, vit=vit, resize_size=42,
                        ila=IlaSettings(adapter=None, ila=False))
    fgir = build_model(config)
    mapped, left_out = timm_to_fgir(clca.state_dict(), depth=12, grid=2)
    missing, unexpected = fgir.load_state_dict(mapped, strict=False)
    assert sorted(missing) == ["head.head.bias", "head.head.weight"] and not unexpected
    assert left_out == ["head.bias", "head.weight"]
    images = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        tokens, _ = clca.double().forward_features(images)
        expected = clca.norm(tokens)
        ours = fgir.double().encode(images)
    # float64: the two layouts only reorder roundings (fused vs separate q/k/v, scale before vs after).
    torch.testing.assert_close(ours, expected, rtol=0, atol=1e-10)


def test_position_rows_are_resampled_and_clr_rows_dropped():
    clca = _random_clca("evit_vit_tiny_patch16_224", 32, keep_rate=(0.5,), clc=True, num_clr=1, ifa_head=True)
    pos = clca.pos_embed.detach()  # [1, 1 + 4 + 1 (CLR), 192]
    mapped, left_out = timm_to_fgir(clca.state_dict(), depth=12, grid=3, extra_tokens=1)
    new = mapped["positional_embedding.pos_embedding"]
    assert new.shape == (1, 10, 192)
    assert torch.equal(new[:, 0], pos[:, 0])
    # Corners aligned (the official zoom order 1): the 2x2 grid's corners are the 3x3 grid's corners.
    corners_old, corners_new = pos[0, [1, 2, 3, 4]], new[0, [1, 3, 7, 9]]
    torch.testing.assert_close(corners_new, corners_old)
    torch.testing.assert_close(new[0, 5], pos[0, 1:5].mean(0))  # the centre is the mean of the four
    assert "clr" in left_out and "encoder_norm.weight" not in mapped  # CLA models have no final norm
    assert torch.equal(resample_grid(pos[:, 1:5], 2), pos[:, 1:5])


def test_layerscale_backbones_are_refused():
    clca = ClcaModel(ClcaConfig(model="deit3_small_patch16_224", img_size=32, num_classes=3))
    with pytest.raises(ConfigError, match="LayerScale"):
        timm_to_fgir(clca.state_dict(), depth=12, grid=2)


def test_official_freeze_rule():
    for name in ("head.head.weight", "encoder.ila_ds.0.ds_conv.weight", "encoder.blocks.3.adapter_attn.adapter_up.bias",
                 "class_token"):
        assert trainable_when_frozen(name, "ila"), name
    for name in ("encoder.blocks.3.attn.proj_q.weight", "patch_embedding.weight", "positional_embedding.pos_embedding",
                 "encoder_norm.weight", "encoder.blocks.0.proj.weight"):
        assert not trainable_when_frozen(name, "ila"), name
    assert trainable_when_frozen("aggregator_norm.weight", "glsim") and trainable_when_frozen("head.weight", "glsim")
    assert not trainable_when_frozen("class_token", "glsim")  # GLSim's rule has no unfreeze_cls


@pytest.mark.parametrize("model, size", [("ila_vit_t16", 224), ("ila_vit_s16", 112), ("glsim_vit_t16", 112),
                                         ("glsim_vit_b16", 224)])
def test_namespace_describes_the_model(model, size):
    config = model_config(model, size, 15)
    training = {"seed": 1, "epochs": 3, "batch_size": 8, "dataset_name": "leaves", "opt": "adamw", "lr": 1e-3,
                "weight_decay": 0.05, "warmup_lr": 1e-6, "min_lr": 1e-5, "warmup_epochs": 2, "ls": 0.1}
    namespace = official_namespace(config, freeze_backbone=False, training=training, run={"steps_per_epoch": 4})
    assert config_from_args(vars(namespace)) == config
    assert ("ila" in vars(namespace)) == model.startswith("ila")  # what marks an ILA-repository config
    assert namespace.resize_size == namespace.test_resize_size == int(size * 1.34)


def test_official_init():
    generator = torch.Generator().manual_seed(0)
    ila = IlaModel(model_config("ila_vit_t16", 80, 3))
    official_init(ila, generator)
    ds = ila.encoder.ila_ds[0].ds_conv.weight.detach()
    assert abs(float(ds.mean()) - 1.0) < 1e-3 and float(ds.std()) < 2e-3  # dws_near_ones_init: N(1, 0.001)
    assert not ila.class_token.any()
    assert float(ila.encoder.blocks[0].attn.proj_q.bias.detach().abs().max()) < 1e-4  # biases N(0, 1e-6)
    glsim = GlsimModel(model_config("glsim_vit_t16", 48, 3))
    official_init(glsim, generator)
    assert not glsim.head.weight.any() and not glsim.head.bias.any()


def test_unknown_names_and_options_are_refused(tiny_splits, tmp_path):
    cases = [
        (dict(model="ila_vit_x16", img_size=80), ConfigError, "unknown model 'ila_vit_x16'"),
        (dict(model="glsim_vit_t16", img_size=48, pretrained=True), ConfigError, "--pretrained is for CLCA"),
        (dict(model="ila_vit_t16", img_size=80, freeze_backbone=True), ConfigError, "needs trained backbone"),
        (dict(model="evit_vit_tiny_patch16_224", img_size=32, freeze_backbone=True), ConfigError, "ILA recipe"),
        (dict(model="glsim_vit_t16", img_size=32), UnsupportedError, "dynamic_top=8"),
        (dict(model="ila_vit_t16", img_size=48), UnsupportedError, "leaves no patches"),
    ]
    for settings, error, message in cases:
        with pytest.raises(error, match=message):
            train(tiny_splits, tmp_path / "x.pth", TrainConfig(epochs=1, batch_size=4, **settings), log=_quiet)
    assert not (tmp_path / "x.pth").exists()


def _capture_saved_models(monkeypatch) -> list:
    saved = []
    original = fgir_train.save_checkpoint

    def capture(path, model, **kwargs):
        saved.append(copy.deepcopy(model).eval())
        return original(path, model, **kwargs)

    monkeypatch.setattr(fgir_train, "save_checkpoint", capture)
    return saved


def _check_official_layout(path, fixture: str) -> dict:
    state = read_raw(path)
    assert OFFICIAL_KEYS <= set(state) and isinstance(state["config"], argparse.Namespace)
    assert set(state) - OFFICIAL_KEYS <= {"class_names", "lr_scheduler", "rng_state", "generator_state"}
    assert state["model"] and all(k.startswith("model.") for k in state["model"])
    assert isinstance(state["optimizer"], dict) and set(state["optimizer"]) == {"state", "param_groups"}
    official = read_raw(load_fgir_golden(fixture)[0])
    assert set(vars(official["config"])) <= set(vars(state["config"]))  # every field the official code writes
    return state


@pytest.mark.parametrize("model, fixture", [("ila_vit_t16", "ila_t16_readme_224"), ("glsim_vit_t16", "glsim_t16_224")])
def test_written_state_dict_has_the_official_keys_and_shapes(model, fixture, tmp_path):
    """The official recipe's model at the fixture's size: the official code would fill every parameter."""
    fgir = build_model(model_config(model, 224, 15))
    namespace = official_namespace(fgir.config, freeze_backbone=model.startswith("ila"), run={},
                                   training={"seed": 1, "epochs": 1, "batch_size": 8, "dataset_name": "leaves",
                                             "opt": "adamw", "lr": 1e-3, "weight_decay": 0.05, "warmup_lr": 1e-6,
                                             "min_lr": 1e-5, "warmup_epochs": 2, "ls": 0.1})
    path = fgir_train.save_checkpoint(tmp_path / "m.pth", fgir, epochs_done=1, accuracy=None, namespace=namespace,
                                      optimizer=None)
    ours, official = read_raw(path), read_raw(load_fgir_golden(fixture)[0])
    assert {k: v.shape for k, v in ours["model"].items()} == {k: v.shape for k, v in official["model"].items()}
    differing = {k for k, v in vars(official["config"]).items() if vars(ours["config"])[k] != v}
    # What a run decides (data, optimizer, schedule, bookkeeping); every model field is the official one.
    assert differing <= {"entity", "results_dir", "run_name", "epochs", "opt", "lr", "weight_decay", "clip_grad", "fp16",
                         "warmup_steps", "ls", "hidden_dropout_prob", "num_images_train", "num_images_val",
                         "num_images_test"}, differing
    assert set(vars(ours["config"])) == set(vars(official["config"]))


def test_ila_run_writes_the_official_format_and_loads_as_trained(tiny_splits, tmp_path, monkeypatch):
    saved = _capture_saved_models(monkeypatch)
    out = tmp_path / "ila.pth"
    result = train(tiny_splits, out, TrainConfig(epochs=1, **ILA_TINY), log=_quiet, progress=False)
    state = _check_official_layout(out, "ila_t16_readme_224")
    assert state["epoch"] == 1 and state["accuracy"] == pytest.approx(result.test_top1)
    assert state["class_names"] == ["class_00", "class_01", "class_02"]
    config = vars(state["config"])
    assert (config["ila_locs"], config["ila_ds_locs"], config["adapter"], config["image_size"]) == ([], [3, 7], "adapter", 80)

    loaded = load_checkpoint(out)
    assert isinstance(loaded, IlaModel) and loaded.config == saved[-1].config
    assert loaded.class_names == ("class_00", "class_01", "class_02")  # so predictions name the species
    images, _, _ = eval_tensors(open_dataset(tiny_splits / "test"), PreprocessConfig.from_dict(loaded.config.preprocess_settings()))
    with torch.no_grad():
        torch.testing.assert_close(loaded(images), saved[-1](images), rtol=0, atol=0)


def test_ila_from_a_clca_backbone_trains_only_what_the_official_recipe_trains(tiny_splits, tmp_path):
    clca = _random_clca("evit_vit_tiny_patch16_224", 64, keep_rate=(0.5,), clc=True, num_clr=1, ifa_head=True)
    clca.class_names = ("a", "b", "c")
    init = save_training_checkpoint(tmp_path / "clca.pth", clca, epoch=0, training_args={})
    out = tmp_path / "ila.pth"
    lines = []
    train(tiny_splits, out, TrainConfig(epochs=1, freeze_backbone=True, **ILA_TINY), init=init, log=lines.append,
          progress=False)
    assert any(line.startswith("freeze") for line in lines)
    trained = load_checkpoint(out).state_dict()
    mapped, _ = timm_to_fgir(clca.state_dict(), depth=12, grid=5, extra_tokens=1)  # 64 px -> 80 px grid
    frozen = [k for k in mapped if not trainable_when_frozen(k, "ila")]
    assert len(frozen) == len(mapped) - 1  # all but the class token
    assert all(torch.equal(trained[k], mapped[k]) for k in frozen)
    assert not torch.equal(trained["class_token"], mapped["class_token"])  # unfreeze_cls
    assert torch.equal(trained["encoder_norm.weight"], torch.ones(192))  # not in a CLA model: a fresh, frozen norm
    assert vars(read_raw(out)["config"])["freeze_backbone"] is True


def test_glsim_run_resumes_exactly(tiny_splits, tmp_path, monkeypatch):
    monkeypatch.setattr(train_loop, "SAVE_INTERVAL_SECONDS", 0.0)
    config = TrainConfig(epochs=2, **GLSIM_TINY)
    whole = tmp_path / "whole.pth"
    train(tiny_splits, whole, config, log=_quiet, progress=False)
    _check_official_layout(whole, "glsim_t16_224")

    class Interrupt(Exception):
        pass

    def stop_in_epoch_two(line: str) -> None:
        if line.startswith("epoch    2/2"):
            raise Interrupt

    part = tmp_path / "part.pth"
    with pytest.raises(Interrupt):
        train(tiny_splits, part, config, log=stop_in_epoch_two, progress=False)
    assert read_raw(part)["epoch"] == 1
    with pytest.raises(ConfigError, match="settings differ"):
        train(tiny_splits, part, TrainConfig(**{**GLSIM_TINY, "epochs": 2, "img_size": 64}), resume=True, log=_quiet)
    resumed = train(tiny_splits, part, config, resume=True, log=_quiet, progress=False)
    assert resumed.resumed_from_epoch == 1 and resumed.epochs_run == 1
    a, b = load_checkpoint(whole), load_checkpoint(part)
    assert isinstance(b, GlsimModel)
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())

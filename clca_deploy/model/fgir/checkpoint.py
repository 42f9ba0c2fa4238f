"""Official ILA / GLSim checkpoints: ``{'config': Namespace, 'model': state_dict, ...}`` -> our model, strictly.

Both repositories (``arkel23/DownSamplingInterLayerAdapter``, package ``fgir_vit``, and
``arkel23/GLSim``) save the ``argparse.Namespace`` that their ``build_model`` wrote the final
model settings back into. A field set to None there means "the model code's default", as in
the official ``ViTConfig``; a missing field is refused (the official parsers always write
every field read here), and so is every option this project does not reproduce, in one line
naming the option.

The official ``build_model`` loads with ``strict=False``; on a DDP checkpoint (``module.``
keys) that silently loads nothing. Here the DDP prefix is stripped, every key must be used
and every parameter filled, or the load is refused naming the keys. fp16 tensors become fp32.
This module works on what ``clca_deploy.model.checkpoint`` read (it does no file I/O).
"""

from __future__ import annotations

import argparse
from typing import Any, Mapping

import torch

from clca_deploy.errors import CheckpointError, ClcaDeployError, UnsupportedError
from clca_deploy.model.fgir.config import GLSIM, ILA, VIT_SIZES, FgirConfig, GlsimSettings, IlaSettings, VitSpec
from clca_deploy.model.fgir.glsim import GlsimModel
from clca_deploy.model.fgir.ila import IlaModel

DDP_PREFIX = "module."
MODEL_PREFIX = "model."  # the official wrapper (VisionTransformer) holds the network as `.model`
_SIGNATURE = "patch_embedding.weight"  # fgir_vit's name; timm (CLCA) calls it patch_embed.proj
_MAX_LISTED = 12
# What each repository's ViTConfig holds when an arg is None (not when it is missing): its
# signature default where that is not None (ILA's False flags), else its table default.
_COMMON_DEFAULTS = {
    "classifier": "cls", "pos_embedding_type": "learned", "encoder_norm": True, "layer_norm_eps": 1e-12,
    "image_size": 224, "num_classes": 1000,
}
_ILA_DEFAULTS = {
    **_COMMON_DEFAULTS, "adapter": None, "adapter_dim": 8, "adapter_kernel_size": 3, "adapter_path": False,
    "ila": False, "ila_locs": None, "ila_ds_locs": [], "ila_cls_conv": False, "ila_ds_conv": False,
    "ila_ds_conv_type": False, "ila_ds_kernel_size": 3, "ila_norm1": None, "ila_norm2": None,
    "ila_norm3": None, "ila_padding": False, "ila_dilation": 1, "ila_dws_conv_groups": 2,
}
_GLSIM_DEFAULTS = {
    **_COMMON_DEFAULTS, "dynamic_top": 2, "sim_metric": "cos", "anchor_random": False, "anchor_class_token": False,
    "reducer": None, "aggregator": False, "aggregator_num_hidden_layers": 1, "aggregator_norm": False,
    "test_flip": False, "anchor_size": None, "num_anchors": None, "dynamic_anchor": False,
}

FgirModel = IlaModel | GlsimModel


def is_fgir_state_dict(state_dict: Mapping[str, Any]) -> bool:
    """Whether the keys are the official fgir_vit ones (``model.…`` or, from DDP, ``module.model.…``)."""
    return any(key in state_dict for key in (MODEL_PREFIX + _SIGNATURE, DDP_PREFIX + MODEL_PREFIX + _SIGNATURE))


def build_model(config: FgirConfig) -> FgirModel:
    """An untrained model for ``config``, in eval mode."""
    return (GlsimModel(config) if config.family == GLSIM else IlaModel(config)).eval()


def strip_prefixes(state_dict: Mapping[str, torch.Tensor], source: str = "checkpoint") -> tuple[dict[str, torch.Tensor], str]:
    """(keys without ``[module.]model.``, the prefix removed); a key without it is refused by name."""
    prefix = DDP_PREFIX + MODEL_PREFIX if DDP_PREFIX + MODEL_PREFIX + _SIGNATURE in state_dict else MODEL_PREFIX
    stray = sorted(k for k in state_dict if not k.startswith(prefix))
    if stray:
        raise CheckpointError(
            f"{source}: {len(stray)} unexpected keys outside '{prefix}': {_listed(stray)}. "
            "Use the checkpoint exactly as the official train.py saved it."
        )
    return {k[len(prefix):]: v for k, v in state_dict.items()}, prefix


def _listed(keys: list[str]) -> str:
    more = f" (+{len(keys) - _MAX_LISTED} more)" if len(keys) > _MAX_LISTED else ""
    return ", ".join(keys[:_MAX_LISTED]) + more


def describe_mismatch(model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], prefix: str) -> str | None:
    """Missing, unexpected and wrongly shaped keys, named as the file names them; None if none."""
    expected = model.state_dict()
    missing = sorted(prefix + k for k in set(expected) - set(state_dict))
    unexpected = sorted(prefix + k for k in set(state_dict) - set(expected))
    shapes = sorted(
        f"{prefix + k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in set(expected) & set(state_dict)
        if state_dict[k].shape != expected[k].shape
    )
    parts = [
        f"{len(items)} {label}: {_listed(items)}"
        for label, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes))
        if items
    ]
    return "; ".join(parts) or None


def config_from_checkpoint(config: Any, source: str) -> FgirConfig:
    """FgirConfig from the checkpoint's ``config`` entry (argparse.Namespace or dict)."""
    if isinstance(config, argparse.Namespace):
        config = vars(config)
    if not isinstance(config, Mapping):
        raise CheckpointError(
            f"{source} holds official fgir_vit (ILA/GLSim) weights but no 'config' Namespace; load the file "
            "the official train.py saved, which carries its settings, or give that config as a JSON object "
            "(vars of its Namespace) with --config CONFIG.json."
        )
    try:
        return config_from_args(config)
    except ClcaDeployError as exc:
        raise type(exc)(f"{source}: {exc}") from exc


def model_from_official(state_dict: Mapping[str, torch.Tensor], config: Any, source: str = "checkpoint") -> FgirModel:
    """The ILA or GLSim model of an official checkpoint's ``model`` and ``config`` entries, loaded strictly."""
    fgir_config = config_from_checkpoint(config, source)
    weights, prefix = strip_prefixes(state_dict, source)
    model = build_model(fgir_config)
    problem = describe_mismatch(model, weights, prefix)
    if problem:
        raise CheckpointError(
            f"{source} does not fit {fgir_config.family.upper()} {fgir_config.model_name} at {fgir_config.image_size}px "
            f"as its config describes it: {problem}. Use the checkpoint exactly as the official train.py saved it."
        )
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in weights.items()}, strict=True)
    return model.eval()


def config_from_args(args: Mapping[str, Any]) -> FgirConfig:
    """The config of an official checkpoint, from ``vars(checkpoint['config'])``; refuses what we do not reproduce."""
    family = detect_family(args)
    read = _ArgReader(args, _ILA_DEFAULTS if family == ILA else _GLSIM_DEFAULTS)
    try:
        vit = _vit_spec(read)
        _refuse_common(read, args, vit.patch_size)
        image_size = int(read("image_size"))
        return FgirConfig(
            family=family, model_name=vit.name, image_size=image_size, num_classes=int(read("num_classes")),
            vit=vit, resize_size=_test_resize_size(args, image_size),
            ila=_ila_settings(read) if family == ILA else None,
            glsim=_glsim_settings(read, vit) if family == GLSIM else None,
        )
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"the checkpoint's config cannot describe a model: {exc}") from exc


def _vit_spec(read: "_ArgReader") -> VitSpec:
    """The official table's dimensions for ``model_name``, with the args' values where they are set."""
    name = str(read("model_name"))
    if name not in VIT_SIZES:
        raise UnsupportedError(f"model_name {name!r} is not an fgir_vit model; supported: {', '.join(VIT_SIZES)}.")
    patch, hidden, intermediate, heads, layers = VIT_SIZES[name]
    spec = VitSpec(
        name=name, patch_size=patch, hidden_size=int(read("hidden_size", hidden)),
        intermediate_size=int(read("intermediate_size", intermediate)), num_heads=int(read("num_attention_heads", heads)),
        num_layers=int(read("num_hidden_layers", layers)), layer_norm_eps=float(read("layer_norm_eps")),
        encoder_norm=bool(read("encoder_norm")),
    )
    if spec.hidden_size % spec.num_heads:
        _refuse("num_attention_heads", spec.num_heads, f"it does not divide hidden_size {spec.hidden_size}")
    return spec


def detect_family(args: Mapping[str, Any]) -> str:
    """ILA-repository configs have ``ila``; GLSim-repository ones have the anchor fields and no ``ila``."""
    if "ila" in args:
        if args.get("dynamic_anchor"):
            raise UnsupportedError(
                "dynamic_anchor=True in an ILA-repository checkpoint: that repository's own ViTGLSim variant is not "
                "supported; GLSim checkpoints from arkel23/GLSim are."
            )
        return ILA
    if "dynamic_anchor" in args or "anchor_size" in args:
        return GLSIM
    raise CheckpointError("the checkpoint's config has neither 'ila' (ILA) nor 'dynamic_anchor' (GLSim) settings.")


class _ArgReader:
    """``read(name)``: the arg; None takes the official model default; missing is refused."""

    def __init__(self, args: Mapping[str, Any], defaults: Mapping[str, Any]):
        self.args, self.defaults = args, defaults

    def __call__(self, name: str, default: Any = None) -> Any:
        if name not in self.args:
            raise CheckpointError(
                f"the checkpoint's config has no '{name}'; it was not written by the official train.py this "
                "project reproduces (ILA 9b2248c, GLSim 99cc474)."
            )
        value = self.args[name]
        if value is None:
            return self.defaults.get(name, default)
        return value


def _refuse(option: str, value: Any, why: str) -> None:
    raise UnsupportedError(f"{option}={value!r} is not supported: {why}.")


def _refuse_common(read: _ArgReader, args: Mapping[str, Any], patch: int) -> None:
    if read("classifier") != "cls":
        _refuse("classifier", read("classifier"), "only the class-token head ('cls') is reproduced")
    if read("pos_embedding_type") != "learned":
        _refuse("pos_embedding_type", read("pos_embedding_type"), "only learned position embeddings are reproduced")
    for flag, why in (
        ("prompt", "visual prompt tokens (register-like extra tokens) are not reproduced"),
        ("selector", "only plain ILA models are reproduced, not TransFG/FFVT/CAL/SIL selectors"),
        ("custom_mean_std", "per-dataset normalisation is not reproduced; ImageNet mean/std only"),
        ("deit_recipe", "the DeiT test transform (short-side resize) is not reproduced"),
    ):
        if args.get(flag):
            _refuse(flag, args[flag], why)
    stride = args.get("patch_stride")
    if stride not in (None, patch):
        _refuse("patch_stride", stride, f"only non-overlapping patches (stride = patch size {patch}) are reproduced")
    size, dataset = args.get("image_size"), args.get("dataset_name")
    if (dataset in ("cifar10", "cifar100", "svhn") and size == 32) or (dataset == "tinyin" and size == 64):
        _refuse("dataset_name", dataset, f"its {size}px test transform (short-side resize) is not reproduced")


def _test_resize_size(args: Mapping[str, Any], image_size: int) -> int:
    """The official test transform's square resize (``int(1.34 * S)`` unless the run set another)."""
    if args.get("test_resize_directly"):
        return image_size  # Resize((S, S)) without a crop: a centre crop of S from S is the identity
    for name in ("test_resize_size", "resize_size"):
        if args.get(name):
            return int(args[name])
    return int(image_size * 1.34)  # the parsers' fallback for the image sizes this project deploys


def _optional_str(value: Any) -> str | None:
    return None if value in (None, False, "") else str(value)


def _ila_settings(read: _ArgReader) -> IlaSettings:
    ds_locs = read("ila_ds_locs") or []
    ila_locs = read("ila_locs") or []
    if read("ila") and ila_locs and ila_locs[0] == -1:  # the official "every block but the ds ones"
        ila_locs = [i for i in range(int(read("num_hidden_layers", 12))) if i not in ds_locs]
    adapter = _optional_str(read("adapter"))
    path = read("adapter_path")
    if adapter and (not isinstance(path, str) or (path not in ("convpass", "ours") and path in "convpass")):
        _refuse("adapter_path", path, "the official block cannot run it (use convpass, ours or pfeiffer)")
    ds_type = str(read("ila_ds_conv_type"))
    if read("ila") and read("ila_ds_conv") and "dws" not in ds_type and ds_type not in ("conv", "avg_pool"):
        _refuse("ila_ds_conv_type", ds_type, "the official ILAdapter builds no down-sampling residual for it")
    groups = int(read("ila_dws_conv_groups"))
    if groups < 0:
        _refuse("ila_dws_conv_groups", groups, "it must be >= 0")
    return IlaSettings(
        adapter=adapter, adapter_path=str(path), adapter_dim=int(read("adapter_dim")),
        adapter_kernel_size=int(read("adapter_kernel_size")), ila=bool(read("ila")),
        ila_locs=tuple(int(i) for i in ila_locs), ila_ds_locs=tuple(int(i) for i in ds_locs),
        ila_cls_conv=bool(read("ila_cls_conv")), ila_ds_conv=bool(read("ila_ds_conv")), ila_ds_conv_type=ds_type,
        ila_ds_kernel_size=int(read("ila_ds_kernel_size")), ila_norm1=_optional_str(read("ila_norm1")),
        ila_norm2=_optional_str(read("ila_norm2")), ila_norm3=_optional_str(read("ila_norm3")),
        ila_padding=bool(read("ila_padding")), ila_dilation=int(read("ila_dilation")), ila_dws_conv_groups=groups,
    )


def _glsim_settings(read: _ArgReader, vit: VitSpec) -> GlsimSettings:
    anchor_size, num_anchors = read("anchor_size"), read("num_anchors")
    if not read("dynamic_anchor"):
        if not anchor_size:
            _refuse("dynamic_anchor", False, "without crops this is a plain ViT of the GLSim repository, not GLSim")
        if isinstance(anchor_size, (list, tuple)) or num_anchors not in (1, [1]):
            _refuse("num_anchors", num_anchors, "ViTGLSim runs exactly one crop per image")
    for flag, why in (("test_flip", "test-time flip averaging is not reproduced"),
                      ("anchor_random", "random crops at inference are not a deployable function")):
        if read(flag):
            _refuse(flag, read(flag), why)
    if read("sim_metric") != "cos":
        _refuse("sim_metric", read("sim_metric"), "only cosine similarity is reproduced")
    if read("reducer") != "cls":
        _refuse("reducer", read("reducer"), "only the 'cls' reducer (one token per view) is reproduced")
    representation = int(read("representation_size", vit.hidden_size))
    return GlsimSettings(
        dynamic_top=int(read("dynamic_top")), sim_metric="cos", reducer="cls", representation_size=representation,
        aggregator=bool(read("aggregator")), aggregator_num_hidden_layers=int(read("aggregator_num_hidden_layers")),
        aggregator_norm=bool(read("aggregator_norm")), anchor_class_token=bool(read("anchor_class_token")),
    )

"""Training ILA and GLSim (the fgir_vit family): model names, the official init and freezing, official checkpoints.

Model names are ``ila_<size>`` and ``glsim_<size>`` with an fgir_vit size (``vit_t16``,
``vit_s16``, ``vit_b16``, ...). ILA takes the official README recipe (``--adapter adapter
--ila --ila_locs``: convpass-path adapters in every block, down-sampling adapters after blocks
3 and 7, classifier cls), GLSim its ``glsim.yaml`` (dynamic_top 8, cls reducer, one aggregator
block with its norm, anchor_class_token).

Checkpoints are what the official ``Trainer.save_model`` writes: ``{'config': Namespace,
'epoch': epochs done, 'model': state dict under 'model.', 'accuracy': last test top-1 (%),
'optimizer'}``, plus ``class_names`` and, for ``--resume``, ``lr_scheduler`` and the RNG
states, which the official code never reads.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn

from clca_deploy.errors import CheckpointError, ConfigError
from clca_deploy.model.fgir.checkpoint import MODEL_PREFIX, build_model, config_from_args
from clca_deploy.model.fgir.config import GLSIM, ILA, VIT_SIZES, FgirConfig, GlsimSettings, IlaSettings, VitSpec
from clca_deploy.model.fgir.ila import ILAdapter
from clca_deploy.train.backbone_map import timm_to_fgir
from clca_deploy.train.checkpoint import write_torch_file
from clca_deploy.train.config import TrainConfig
from clca_deploy.train.fgir_args import official_namespace

FAMILIES = (ILA, GLSIM)
DEFAULT_IMG_SIZE = 224  # the official parsers' image_size
# The official freeze_backbone: a parameter trains iff its name contains one of these
# (ILA adds 'ila', and 'class_token' through its default --unfreeze_cls).
_TRAINABLE_WHEN_FROZEN = ("head", "aggregator", "adapter", "dfsm", "feature_center", "prompt")
_ILA_ALSO_TRAINABLE = ("ila", "class_token")
NO_DECAY = frozenset({"class_token", "anchor_class_token", "positional_embedding.pos_embedding"})


def is_fgir_name(model: str) -> bool:
    """Whether a model name asks for ILA or GLSim (``ila_…`` / ``glsim_…``) rather than a CLCA model."""
    return model.split("_", 1)[0] in FAMILIES


def model_config(model: str, img_size: int | None, num_classes: int) -> FgirConfig:
    """The FgirConfig for ``ila_<size>`` / ``glsim_<size>`` with the official recipe's settings."""
    family, _, size = model.partition("_")
    if family not in FAMILIES or size not in VIT_SIZES:
        raise ConfigError(
            f"unknown model '{model}': ILA and GLSim models are ila_<size> or glsim_<size> with size one of "
            f"{', '.join(VIT_SIZES)} (e.g. ila_vit_t16)."
        )
    patch, hidden, intermediate, heads, layers = VIT_SIZES[size]
    vit = VitSpec(name=size, patch_size=patch, hidden_size=hidden, intermediate_size=intermediate,
                  num_heads=heads, num_layers=layers)
    image_size = img_size or DEFAULT_IMG_SIZE
    return FgirConfig(
        family=family, model_name=size, image_size=image_size, num_classes=num_classes, vit=vit,
        resize_size=int(image_size * 1.34),  # the official parsers' resize_size and test_resize_size
        ila=IlaSettings() if family == ILA else None,
        glsim=GlsimSettings(representation_size=hidden) if family == GLSIM else None,
    )


def trainable_when_frozen(name: str, family: str) -> bool:
    """The official ``freeze_backbone`` rule for one parameter name (a substring test, as there)."""
    keywords = _TRAINABLE_WHEN_FROZEN + (_ILA_ALSO_TRAINABLE if family == ILA else ())
    return any(keyword in name for keyword in keywords)


def freeze_backbone(model: nn.Module) -> tuple[int, int]:
    """Freeze what the official code freezes; (trainable, total) parameter counts."""
    trainable = total = 0
    for name, param in model.named_parameters():
        param.requires_grad = trainable_when_frozen(name, model.config.family)
        total += param.numel()
        trainable += param.numel() if param.requires_grad else 0
    return trainable, total


@torch.no_grad()
def official_init(model: nn.Module, generator: torch.Generator) -> None:
    """The official initialisation: Xavier-uniform Linears with N(0, 1e-6) biases (the ViT's
    ``init_weights`` runs last, over the adapters too), position rows N(0, 0.02), a zero class
    token, ILAdapter convs Xavier-uniform and ``ds_conv`` N(1, 0.001) (``dws_near_ones_init``),
    and for GLSim a zero head. Patch embedding and norms keep PyTorch's defaults, as there."""
    for module in model.modules():
        if isinstance(module, ILAdapter):
            convs = [m for m in module.adapter_conv.modules() if isinstance(m, nn.Conv2d)]
            for conv in [convs[0], convs[-1]] + ([module.adapter_cls] if hasattr(module, "adapter_cls") else []):
                nn.init.xavier_uniform_(conv.weight, generator=generator)
            ds_conv = getattr(module, "ds_conv", None)
            if isinstance(ds_conv, nn.Conv2d):
                if module.geometry.ds_conv == "dws" and "near_ones" in model.config.ila.ila_ds_conv_type:
                    ds_conv.weight.normal_(1.0, 0.001, generator=generator)
                elif module.geometry.ds_conv == "dws" and "ones" in model.config.ila.ila_ds_conv_type:
                    ds_conv.weight.fill_(1.0)
                else:
                    nn.init.xavier_uniform_(ds_conv.weight, generator=generator)
    for module in model.modules():
        if isinstance(module, nn.Linear):
            nn.init.xavier_uniform_(module.weight, generator=generator)
            if module.bias is not None:
                module.bias.normal_(0.0, 1e-6, generator=generator)
    model.positional_embedding.pos_embedding.normal_(0.0, 0.02, generator=generator)
    model.class_token.zero_()
    if model.config.family == GLSIM:
        model.head.weight.zero_()
        model.head.bias.zero_()
        if hasattr(model, "anchor_class_token"):
            model.anchor_class_token.normal_(generator=generator)  # torch.randn, never used


def init_from(model: nn.Module, source: nn.Module, log: Callable[[str], None]) -> None:
    """Start from another model's weights: a CLCA model's backbone mapped to fgir names, or an
    ILA/GLSim model's tensors of the same name and shape. The rest keeps its official init."""
    own = model.state_dict()
    if hasattr(source, "cls_token"):  # a ClcaModel (timm layout)
        spec = source.config.backbone
        vit = model.config.vit
        if (spec.embed_dim, spec.depth, spec.num_heads, spec.patch_size) != (
            vit.hidden_size, vit.num_layers, vit.num_heads, vit.patch_size
        ):
            raise ConfigError(
                f"the --init model {source.config.model} ({spec.embed_dim}-d, {spec.depth} blocks, {spec.num_heads} "
                f"heads, patch {spec.patch_size}) does not fit {vit.name}; pick the fgir_vit size that matches it."
            )
        extra = source.config.num_clr if spec.pos_embed_covers_cls else 0
        mapped, left_out = timm_to_fgir(source.state_dict(), depth=spec.depth, grid=model.config.grid_size,
                                        extra_tokens=extra)
        what = f"CLCA {source.config.model} backbone"
    else:
        theirs = source.state_dict()
        mapped = {k: v for k, v in theirs.items() if k in own and own[k].shape == v.shape}
        left_out = sorted(set(theirs) - set(mapped))
        what = f"{source.config.family.upper()} {source.config.model_name}"
    if hasattr(model, "anchor_class_token") and "class_token" in mapped:
        mapped["anchor_class_token"] = mapped["class_token"].clone()  # the official load_anchor_weights
    if not mapped:
        raise ConfigError("the --init checkpoint shares no weights with this model; check --model and --img-size.")
    model.load_state_dict(mapped, strict=False)
    fresh = sorted(set(own) - set(mapped))
    path = source.source.path if getattr(source, "source", None) else "checkpoint"
    log(f"init     {len(mapped)} tensors from the {what} in {path}; {len(fresh)} new"
        + (f" ({', '.join(fresh[:4])}{' ...' if len(fresh) > 4 else ''})" if fresh else "")
        + (f"; not used: {len(left_out)}" if left_out else ""))


def save_checkpoint(
    path: str | Path, model: nn.Module, *, epochs_done: int, accuracy: float | None, namespace: argparse.Namespace,
    optimizer: torch.optim.Optimizer | None, extra: Mapping[str, Any] | None = None,
) -> Path:
    """The official ``save_model`` dict, written atomically, plus class names and resume state."""
    payload = {
        "config": namespace,
        "epoch": epochs_done,
        "model": {MODEL_PREFIX + k: v.detach().clone().cpu() for k, v in model.state_dict().items()},
        "accuracy": float(accuracy) if accuracy is not None else 0.0,
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "class_names": list(model.class_names) if model.class_names else None,
        **(extra or {}),
    }
    return write_torch_file(path, payload)


class FgirFamily:
    """The ILA / GLSim side of a training run (see ``clca_deploy.train.family``)."""

    no_decay = NO_DECAY

    def __init__(self, config: TrainConfig, init: Path | None, resume: bool = False,
                 init_train_args: Mapping[str, Any] | None = None):
        if config.pretrained:
            raise ConfigError(
                "--pretrained is for CLCA models (timm weights); ILA and GLSim start from --init CKPT (a CLCA or "
                "ILA/GLSim checkpoint) or from scratch."
            )
        if config.freeze_backbone and init is None and not resume:
            raise ConfigError(
                "--freeze-backbone needs trained backbone weights: give --init CKPT (e.g. a CLCA checkpoint); "
                "a frozen random backbone learns nothing."
            )
        self.config, self.init, self.resume = config, init, resume
        self.init_train_args = dict(init_train_args or {})

    def build(self, class_names: Sequence[str]) -> nn.Module:
        model = build_model(model_config(self.config.model, self.config.img_size, len(class_names)))
        model.class_names = tuple(class_names)
        return model

    def train_resize_size(self, model: nn.Module) -> int:
        """The official square_resize_random_crop: Resize((R, R)) then RandomCrop(S), R = int(1.34 S)."""
        return model.config.resize_size

    def initialise(self, model: nn.Module, generator: torch.Generator, log: Callable[[str], None]) -> None:
        official_init(model, generator)
        if self.init is not None and not self.resume:  # a resumed run's weights come from its checkpoint
            from clca_deploy.model import load_checkpoint

            init_from(model, load_checkpoint(self.init, **self.init_train_args), log)
        if self.config.freeze_backbone:
            trainable, total = freeze_backbone(model)
            log(f"freeze   backbone frozen as the official --freeze_backbone: {trainable / 1e6:.3f} M of "
                f"{total / 1e6:.2f} M parameters train")

    def save(self, path: Path, model: nn.Module, *, epoch: int, accuracy: float | None, training: Mapping[str, Any],
             run: Mapping[str, Any], optimizer, scheduler_state: Mapping[str, Any], extra: Mapping[str, Any]) -> None:
        namespace = official_namespace(model.config, freeze_backbone=self.config.freeze_backbone,
                                       training=training, run=run)
        save_checkpoint(path, model, epochs_done=epoch + 1, accuracy=accuracy, namespace=namespace,
                        optimizer=optimizer, extra={"lr_scheduler": dict(scheduler_state), **extra})

    def check_resumable(self, state: Mapping[str, Any], model: nn.Module) -> None:
        config = state.get("config")
        if not isinstance(config, argparse.Namespace) or "model" not in state:
            raise CheckpointError("cannot resume: the checkpoint is not an ILA/GLSim checkpoint written by this tool.")
        theirs = config_from_args(vars(config))
        if theirs != model.config or bool(getattr(config, "freeze_backbone", False)) != self.config.freeze_backbone:
            raise ConfigError(
                f"cannot resume: the run's settings differ (checkpoint {theirs.family} {theirs.model_name} at "
                f"{theirs.image_size}px, freeze_backbone={getattr(config, 'freeze_backbone', None)}; now "
                f"{model.config.family} {model.config.model_name} at {model.config.image_size}px, "
                f"freeze_backbone={self.config.freeze_backbone})."
            )

    def resume_weights(self, state: Mapping[str, Any], model: nn.Module) -> dict[str, torch.Tensor]:
        return {k[len(MODEL_PREFIX):]: v for k, v in state["model"].items()}

    def next_epoch(self, state: Mapping[str, Any]) -> int:
        return int(state["epoch"])  # the official 'epoch' counts the epochs done

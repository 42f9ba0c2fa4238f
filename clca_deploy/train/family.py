"""What differs between model families in a training run: the model, its init, its checkpoint.

The loop (``clca_deploy.train.loop``) is the same for every family; a family object gives it
``build``, ``train_resize_size``, ``initialise``, ``no_decay`` (parameter names without weight
decay), ``save``, and for ``--resume`` ``check_resumable``, ``resume_weights`` and ``next_epoch``.
``family_for`` picks one by model name: ``ila_…`` / ``glsim_…`` train the fgir_vit family
(``clca_deploy.train.fgir``), every other name a CLCA model.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn

from clca_deploy.errors import ConfigError
from clca_deploy.model.clca import ClcaModel
from clca_deploy.model.config import PLAIN_METHOD, ClcaConfig, split_model_name
from clca_deploy.train.checkpoint import save_training_checkpoint
from clca_deploy.train.config import TrainConfig
from clca_deploy.train.fgir import FgirFamily, is_fgir_name
from clca_deploy.train.init import init_fresh, load_pretrained_backbone


def family_for(config: TrainConfig, init: Path | None = None, resume: bool = False,
               init_train_args: Mapping[str, Any] | None = None):
    """The family object for ``config.model`` (``resume``: the weights will come from the run's checkpoint;
    ``init_train_args``: train.py args for an ``init`` checkpoint without them)."""
    if is_fgir_name(config.model):
        return FgirFamily(config, init, resume, init_train_args)
    return ClcaFamily(config, init, init_train_args)


def param_groups(model: nn.Module, weight_decay: float, no_decay_names: frozenset[str]) -> list[dict]:
    """timm's convention: no weight decay on biases, norms and the token/position embeddings; frozen ones left out."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim <= 1 or name in no_decay_names else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def clca_model_config(config: TrainConfig, num_classes: int) -> ClcaConfig:
    method, timm_name, _ = split_model_name(config.model)
    img_size = config.img_size or int(timm_name.rsplit("_", 1)[-1])
    plain = method == PLAIN_METHOD
    return ClcaConfig(
        model=config.model,
        img_size=img_size,
        num_classes=num_classes,
        keep_rate=(1.0,) if plain else (config.keep_rate,),
        reduction_loc=config.reduction_loc,
        clc=config.clca,
        num_clr=config.num_clr if config.clca else 0,
        ifa_head=config.clca,
    )


class ClcaFamily:
    """CLCA models, checkpoints in the official CLCA ``train.py`` format."""

    no_decay = frozenset({"pos_embed", "cls_token", "clr"})

    def __init__(self, config: TrainConfig, init: Path | None, init_train_args: Mapping[str, Any] | None = None):
        if config.freeze_backbone:
            raise ConfigError("--freeze-backbone is the ILA recipe; use it with an ila_… model (e.g. ila_vit_t16).")
        self.config, self.init, self.init_train_args = config, init, dict(init_train_args or {})

    def build(self, class_names: Sequence[str]) -> ClcaModel:
        model = ClcaModel(clca_model_config(self.config, len(class_names)))
        model.class_names = tuple(class_names)
        return model

    def train_resize_size(self, model: ClcaModel) -> int:
        return model.config.preprocess_settings()["resize_size"]

    def initialise(self, model: ClcaModel, generator: torch.Generator, log: Callable[[str], None]) -> None:
        if self.init is not None:
            from clca_deploy.model import load_checkpoint

            source = load_checkpoint(self.init, **self.init_train_args)
            if not isinstance(source, ClcaModel):
                raise ConfigError(f"--init {self.init} is an ILA/GLSim checkpoint; a CLCA model starts from a CLCA one.")
            _load_compatible(model, source, log)
        elif self.config.pretrained:
            fresh = load_pretrained_backbone(model)
            log(f"init     timm pretrained backbone; new: {', '.join(k for k in fresh if not k.startswith('blocks'))}")
        else:
            init_fresh(model, generator)

    def save(self, path: Path, model: ClcaModel, *, epoch: int, accuracy: float | None, training: Mapping[str, Any],
             run: Mapping[str, Any], optimizer, scheduler_state: Mapping[str, Any], extra: Mapping[str, Any]) -> None:
        save_training_checkpoint(path, model, epoch=epoch, training_args=training, optimizer=optimizer,
                                 scheduler_state=scheduler_state, extra=extra)

    def check_resumable(self, state: Mapping[str, Any], model: ClcaModel) -> None:
        args = state.get("args")
        args = vars(args) if isinstance(args, argparse.Namespace) else dict(args or {})
        mine = model.config
        checks = {"model": mine.model, "input_size": mine.img_size, "num_classes": mine.num_classes,
                  "keep_rate": list(mine.keep_rate)}
        differing = [f"{k}: checkpoint {args.get(k)!r}, now {v!r}" for k, v in checks.items() if args.get(k) != v]
        if differing:
            raise ConfigError(f"cannot resume: the run's settings differ ({'; '.join(differing)}).")

    def resume_weights(self, state: Mapping[str, Any], model: ClcaModel) -> dict:
        expected = model.state_dict()
        return {k: v for k, v in state["model"].items() if k in expected}

    def next_epoch(self, state: Mapping[str, Any]) -> int:
        return int(state["epoch"]) + 1  # CLCA's 'epoch' is the last finished one, 0-based


def _load_compatible(model: ClcaModel, source: ClcaModel, log: Callable[[str], None]) -> None:
    """Fine-tuning from a CLCA checkpoint: every tensor whose name and shape match is copied
    (a head for another number of classes stays new)."""
    own = model.state_dict()
    theirs = source.state_dict()
    taken = {k: v for k, v in theirs.items() if k in own and own[k].shape == v.shape}
    if not taken:
        raise ConfigError("the --init checkpoint shares no weights with this model; check --model and --img-size.")
    model.load_state_dict(taken, strict=False)
    fresh = sorted(set(own) - set(taken))
    log(f"init     {len(taken)} tensors from {source.source.path if source.source else 'checkpoint'}"
        + (f"; new: {', '.join(fresh[:6])}{' ...' if len(fresh) > 6 else ''}" if fresh else ""))

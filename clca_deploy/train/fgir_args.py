"""The ``config`` Namespace of an ILA / GLSim checkpoint, with every field the official train.py writes.

The official ``Trainer.save_model`` stores the whole ``args`` Namespace (after ``build_model``
wrote the final model settings back into it). The templates below are the official parsers'
values for the README commands (ILA 9b2248c: ``--freeze_backbone --classifier cls --adapter
adapter --ila --ila_locs``; GLSim 99cc474: ``--cfg_method configs/methods/glsim.yaml``) for
the fields a run does not change; ``official_namespace`` then writes the model's settings and
what this run actually did (optimizer, schedule, data, augmentation) under the official names.
A GLSim Namespace has no ``ila`` field: its presence is what marks an ILA-repository config.
"""

from __future__ import annotations

import argparse
from typing import Any, Mapping

from clca_deploy.model.fgir.config import GLSIM, FgirConfig

_COMMON = {
    "debugging": False, "serial": 1, "log_freq": 100, "save_freq": 200, "save_images": 10000,
    "train_trainval": True, "test_only": False, "test_only_bs1": False, "test_multiple": 5, "vis_errors": False,
    "vis_errors_save": False, "eval_freq": 200, "transfer_learning": False, "cal_single_crop": False,
    "dist_eval": False, "custom_mean_std": False, "pin_memory": True, "shuffle_test": False,
    "dataset_root_path": None, "folder_train": "data", "folder_val": "data", "folder_test": "data",
    "df_train": "train.csv", "df_trainval": "train_val.csv", "df_val": "val.csv", "df_test": "test.csv",
    "df_classid_classname": "classid_classname.csv", "base_lr": None, "opt_eps": 1e-08, "opt_betas": None,
    "momentum": 0.9, "gradient_accumulation_steps": 1, "sched": "cosine", "t_in_epochs": False, "lr_noise": None,
    "lr_noise_pct": 0.67, "lr_noise_std": 1.0, "decay_epochs": 30, "cooldown_epochs": 5, "patience_epochs": 10,
    "decay_rate": 0.1, "test_resize_directly": False, "random_resized_crop": False,
    "short_side_resize_random_crop": False, "square_center_crop": False, "affine": False, "jitter_prob": 0.0,
    "jitter_bcs": 0.4, "jitter_hue": 0.1, "blur": 0.0, "greyscale": 0.0, "solarize_prob": 0.0, "solarize": 128,
    "cm": False, "beta": 1.0, "mu": False, "alpha": 1.0, "mix_prob": 0.5, "re": 0.0, "re_sh": 0.4, "re_r1": 0.3,
    "ra": 0, "sd": 0.0, "focal_gamma": 0.0, "focal_alpha": 0.25, "classifier_aux": None, "loss_aux_weight": 0.1,
    "attention_probs_dropout_prob": 0.0, "hidden_act": "gelu", "cfg": None, "world_size": 1, "rank": 0,
    "local_rank": 0, "distributed": False,
}
_ILA = {
    "per_class_acc_results": "per_class_acc.csv", "ind_preds_results": "ind_preds.csv", "offline": False,
    "top_k": 2, "cpu_workers": 4, "ffcv": False, "train_resize_directly": False, "auto_aug": False,
    "rand_aug": False, "re_mult": 0, "class_proj_size": 64, "supcon": False, "norm_ind": False,
    "attention": "vanilla", "selector": None, "selector_num_tokens": 0, "crop_mode": "crop", "ifa_num_layers": None,
    "ifa_dws_conv_groups": 4, "ifa_norm": "bn", "attention_crop": False, "attention_pool_size": 1,
    "crop_attention_th": 0.5, "crop_th_max": True, "prompt": None, "prompt_len": 100, "ila_sd": 0.0,
    "unfreeze_cls": True, "unfreeze_positional_embedding": False, "unfreeze_mhsa_proj": False,
    "unfreeze_encoder_norm": False, "unfreeze_encoder_last_block": False,
}
_GLSIM = {
    "test_offline": False, "patchifier_dropout": True, "backbone_ours": False, "head_norm": False,
    "head_act": False, "head_dropout_all": False, "head_dropout_prob": 0, "anchor_pool_avg": True,
    "anchor_pool_stride": None, "anchor_conv_stem": False, "anchor_conv_stride": None, "anchor_resize_size": False,
    "shared_patchifier": False, "aggregator_type": "transformer", "select_top_k": False, "token_drop": 0.0,
    "inference_crops": True, "cpu_workers": 8, "deit_recipe": False, "aa": False, "randaug": False,
}


def model_fields(config: FgirConfig, freeze_backbone: bool) -> dict[str, Any]:
    """The model's settings as ``build_model`` writes them back into the official args."""
    vit = config.vit
    fields = {
        "model_name": vit.name, "image_size": config.image_size, "num_classes": config.num_classes,
        "classifier": "cls", "pos_embedding_type": "learned", "hidden_size": vit.hidden_size,
        "intermediate_size": vit.intermediate_size, "num_attention_heads": vit.num_heads,
        "num_hidden_layers": vit.num_layers, "encoder_norm": vit.encoder_norm, "layer_norm_eps": vit.layer_norm_eps,
        "hidden_dropout_prob": 0.0,  # this trainer runs without dropout (the models have none)
        "freeze_backbone": freeze_backbone,
    }
    if config.family == GLSIM:
        glsim = config.glsim
        return fields | {
            "test_flip": False, "anchor_size": vit.patch_size, "num_anchors": 1, "dynamic_anchor": True,
            "dynamic_top": glsim.dynamic_top, "sim_metric": glsim.sim_metric,
            "representation_size": glsim.representation_size, "anchor_random": False,
            "anchor_class_token": glsim.anchor_class_token, "reducer": glsim.reducer, "aggregator": glsim.aggregator,
            "aggregator_num_hidden_layers": glsim.aggregator_num_hidden_layers,
            "aggregator_norm": glsim.aggregator_norm, "adapter": None, "cfg_method": "configs/methods/glsim.yaml",
            "seq_len_post_reducer": 2,  # the cls reducer keeps one token per view
        }
    ila = config.ila
    return fields | {
        "patch_stride": vit.patch_size, "dynamic_anchor": False, "dynamic_top": 8, "anchor_random": False,
        "sim_metric": "cos", "anchor_class_token": False, "reducer": None, "representation_size": vit.hidden_size,
        "aggregator": False, "aggregator_num_hidden_layers": 1, "adapter": ila.adapter, "adapter_dim": ila.adapter_dim,
        "adapter_kernel_size": ila.adapter_kernel_size, "adapter_path": ila.adapter_path, "ila": ila.ila,
        "ila_locs": list(ila.ila_locs), "ila_ds_locs": list(ila.ila_ds_locs), "ila_cls_conv": ila.ila_cls_conv,
        "ila_ds_conv": ila.ila_ds_conv, "ila_ds_conv_type": ila.ila_ds_conv_type,
        "ila_ds_kernel_size": ila.ila_ds_kernel_size, "ila_norm1": ila.ila_norm1, "ila_norm2": ila.ila_norm2,
        "ila_norm3": ila.ila_norm3, "ila_padding": ila.ila_padding, "ila_dilation": ila.ila_dilation,
        "ila_dws_conv_groups": ila.ila_dws_conv_groups, "cfg_method": None,
        "seq_len_post_reducer": 1 + config.num_patches,  # the official config's seq_len, before any adapter
    }


def run_fields(training: Mapping[str, Any], run: Mapping[str, Any]) -> dict[str, Any]:
    """What this run did, under the official names (``training``/``run``: the loop's records)."""
    augment = training.get("augment", "weak")
    smoothing = float(training.get("ls", 0.0))
    return {
        "results_dir": run.get("results_dir"), "run_name": run.get("run_name"), "entity": None,
        "seed": training["seed"], "epochs": training["epochs"], "pretrained": False, "ckpt_path": None,
        "batch_size": training["batch_size"], "effective_batch_size": training["batch_size"],
        "dataset_name": training["dataset_name"], "opt": training["opt"], "lr": training["lr"],
        "weight_decay": training["weight_decay"], "clip_grad": None, "fp16": run.get("precision") == "fp16",
        "warmup_lr": training["warmup_lr"], "min_lr": training["min_lr"], "warmup_epochs": training["warmup_epochs"],
        "warmup_steps": training["warmup_epochs"] * int(run.get("steps_per_epoch", 0)),
        "square_resize_random_crop": True, "horizontal_flip": True, "vertical_flip": augment == "strong",
        "trivial_aug": augment in ("medium", "strong"), "ls": smoothing > 0, "smoothing": smoothing,
        "device": run.get("device", "cpu"), "num_images_train": run.get("train_images", 0),
        "num_images_val": run.get("test_images", 0), "num_images_test": run.get("test_images", 0),
    }


def official_namespace(
    config: FgirConfig, *, freeze_backbone: bool, training: Mapping[str, Any], run: Mapping[str, Any]
) -> argparse.Namespace:
    """Every field of the official Namespace: template, then this run, then the model (which wins)."""
    family = config.family
    fields = {**_COMMON, **(_GLSIM if family == GLSIM else _ILA)}
    fields["project_name"] = "GLSim" if family == GLSIM else "ILA"
    fields |= run_fields(training, run)
    fields |= {"resize_size": config.resize_size, "test_resize_size": config.resize_size}
    fields |= model_fields(config, freeze_backbone)
    return argparse.Namespace(**fields)

"""CLCA in PyTorch on timm's ViT building blocks, matching the official code."""

from clca_deploy.extras import require_torch_stack

# Every command that reaches the model (info/export on a checkpoint, train, sweep) says which extra
# to install, instead of a ModuleNotFoundError traceback, on a runtime-only install.
require_torch_stack("reading a checkpoint (info, export, train, sweep)")

from clca_deploy.model.backbone import BackboneSpec, parse_backbone
from clca_deploy.model.checkpoint import CheckpointInfo, load_checkpoint, model_from_state_dict, read_checkpoint
from clca_deploy.model.clca import ClcaModel
from clca_deploy.model.config import ClcaConfig
from clca_deploy.model.schedule import BlockTokens, token_schedule

__all__ = [
    "BackboneSpec",
    "BlockTokens",
    "CheckpointInfo",
    "ClcaConfig",
    "ClcaModel",
    "load_checkpoint",
    "model_from_state_dict",
    "parse_backbone",
    "read_checkpoint",
    "token_schedule",
]

"""Training and fine-tuning CLCA models on leaf images, writing official train.py checkpoints."""

from clca_deploy.train.checkpoint import official_args, official_state_dict, save_training_checkpoint
from clca_deploy.train.config import TrainConfig
from clca_deploy.train.loop import TrainResult, train

__all__ = [
    "TrainConfig",
    "TrainResult",
    "official_args",
    "official_state_dict",
    "save_training_checkpoint",
    "train",
]

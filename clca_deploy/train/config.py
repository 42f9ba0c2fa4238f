"""TrainConfig: every setting of a training run, with the official train.py recipe as defaults."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from clca_deploy.errors import ConfigError

AUGMENTATIONS = ("weak", "medium", "strong")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
# Learning rates when the run does not name one: the official fine-tuning rate, and a higher
# one for training from scratch, which a randomly initialised ViT needs to get anywhere in
# the few epochs a CPU affords.
FINETUNE_LR = 1e-4
SCRATCH_LR = 1e-3


@dataclass(frozen=True)
class TrainConfig:
    """A training run. Field names follow the official ``train.py`` arguments where one exists.

    Exactly one of ``epochs`` and ``minutes`` is set: with ``minutes`` the number of epochs is
    fixed after the first epoch from its measured duration, so the schedule is still a plain
    cosine over a known length (and a resumed run continues the same schedule).
    """

    model: str = "evit_vit_tiny_patch16_224"
    keep_rate: float = 0.1
    img_size: int | None = None  # default: the size in the model name
    epochs: int | None = None
    minutes: float | None = None
    batch_size: int = 32
    lr: float | None = None  # default: FINETUNE_LR with pretrained weights, else SCRATCH_LR
    min_lr: float = 1e-5
    warmup_lr: float = 1e-6
    warmup_epochs: int = 2
    weight_decay: float = 0.05
    label_smoothing: float = 0.1
    augment: str = "weak"
    precision: str = "auto"
    seed: int = 1
    pretrained: bool = False
    freeze_backbone: bool = False  # ILA's recipe: train only adapters, head and class token (needs an init)
    # The CLCA settings of the official README recipe; ``clca=False`` trains the plain method.
    clca: bool = True
    num_clr: int = 1
    reduction_loc: tuple[int, ...] = (3, 6, 9)
    evaluations: int = 10  # evaluations on the test split spread over the run (the last epoch always)
    device: str = "auto"

    def __post_init__(self) -> None:
        if (self.epochs is None) == (self.minutes is None):
            raise ConfigError("give either epochs or minutes (a time budget), not both and not neither.")
        if self.epochs is not None and (not isinstance(self.epochs, int) or self.epochs < 1):
            raise ConfigError(f"epochs must be a positive integer, got {self.epochs!r}.")
        if self.minutes is not None and not (self.minutes > 0 and math.isfinite(self.minutes)):
            raise ConfigError(f"minutes must be a positive number, got {self.minutes!r}.")
        if not 0.0 < self.keep_rate <= 1.0:
            raise ConfigError(f"keep rate {self.keep_rate} is outside (0, 1]; use e.g. 0.1 to keep 10% of tokens.")
        if self.batch_size < 2:
            raise ConfigError(f"batch size must be at least 2 (the CLA head has BatchNorm), got {self.batch_size}.")
        if self.lr is not None and not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"learning rate must be a positive number, got {self.lr}.")
        if self.warmup_epochs < 0 or self.evaluations < 1:
            raise ConfigError("warmup_epochs must be >= 0 and evaluations >= 1.")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError(f"label smoothing must be in [0, 1), got {self.label_smoothing}.")
        if self.augment not in AUGMENTATIONS:
            raise ConfigError(f"unknown augmentation '{self.augment}'; use one of {', '.join(AUGMENTATIONS)}.")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"unknown precision '{self.precision}'; use one of {', '.join(PRECISIONS)}.")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"unknown device '{self.device}'; use auto, cpu or cuda.")

    @property
    def base_lr(self) -> float:
        if self.lr is not None:
            return self.lr
        return FINETUNE_LR if self.pretrained else SCRATCH_LR

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["reduction_loc"] = list(self.reduction_loc)
        data["base_lr"] = self.base_lr
        return data

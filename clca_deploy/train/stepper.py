"""One epoch of optimisation steps: learning-rate schedule, augmentation, mixed precision, update."""

from __future__ import annotations

import torch
from torch import nn

from clca_deploy.data import PreprocessConfig
from clca_deploy.errors import ClcaDeployError
from clca_deploy.train.config import TrainConfig
from clca_deploy.train.data import ResizedSplit, TrainAugment, normalise
from clca_deploy.train.precision import autocast_dtype
from clca_deploy.train.schedule import learning_rate


class Stepper:
    """One epoch of optimisation steps: schedule, augmentation, mixed precision, the update."""

    def __init__(self, model, optimizer, config: TrainConfig, split: ResizedSplit, preprocess: PreprocessConfig,
                 device: torch.device, precision: str, generator: torch.Generator):
        self.model, self.optimizer, self.config, self.split = model, optimizer, config, split
        self.preprocess, self.device, self.generator = preprocess, device, generator
        self.augment = TrainAugment(preprocess.img_size, config.augment, generator)
        self.criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
        self.cast = autocast_dtype(precision)
        self.scaler = torch.amp.GradScaler("cuda") if precision == "fp16" else None
        self.steps_per_epoch = len(split) // config.batch_size

    def run_epoch(self, epoch: int, step: int, epochs: int | None, bar) -> tuple[float, float, int]:
        """(mean loss, last learning rate, next step)."""
        config, size = self.config, self.config.batch_size
        # Before the epoch count is known (time budget), only warm-up steps run, which need no total.
        total = (epochs or max(1, config.warmup_epochs)) * self.steps_per_epoch
        warmup = config.warmup_epochs * self.steps_per_epoch
        order = torch.randperm(len(self.split), generator=self.generator)
        loss_sum, seen, lr = 0.0, 0, config.base_lr
        for batch_index in range(self.steps_per_epoch):
            lr = learning_rate(step, total, warmup, config.base_lr, config.warmup_lr, config.min_lr)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            index = order[batch_index * size : (batch_index + 1) * size]
            images = normalise(self.augment(self.split.images[index]).to(self.device), self.preprocess)
            labels = self.split.labels[index].to(self.device)
            loss = self._update(images, labels, epoch)
            step += 1
            loss_sum += loss * len(index)
            seen += len(index)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss_sum / seen:.3f}", lr=f"{lr:.1e}")
        if bar is not None:
            bar.close()
        return loss_sum / seen, lr, step

    def _update(self, images: torch.Tensor, labels: torch.Tensor, epoch: int) -> float:
        with torch.autocast(self.device.type, dtype=self.cast or torch.float32, enabled=self.cast is not None):
            loss = self.criterion(self.model(images), labels)
        if not torch.isfinite(loss):
            raise ClcaDeployError(f"the loss became {loss.item()} in epoch {epoch + 1}; lower the learning rate (--lr).")
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        return float(loss.detach())

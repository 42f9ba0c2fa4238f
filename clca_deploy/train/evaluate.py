"""Top-1 on the test split during training, with the official eval preprocessing (held in memory)."""

from __future__ import annotations

import torch
from torch import nn

from clca_deploy.data import ImageDataset, PreprocessConfig


def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, device: torch.device, batch: int = 48) -> float:
    """Top-1 (%) in fp32 eval mode, as the official evaluation computes it (without its AMP)."""
    was_training = model.training
    model.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(labels), batch):
            logits = model(images[start : start + batch].to(device))
            correct += int((logits.argmax(1).cpu() == labels[start : start + batch]).sum())
    model.train(was_training)
    return 100.0 * correct / len(labels)


def eval_tensors(dataset: ImageDataset, preprocess: PreprocessConfig) -> tuple[torch.Tensor, torch.Tensor, list]:
    from clca_deploy.data import iter_batches

    reader = iter_batches(dataset, preprocess, batch_size=64)
    images, labels = [], []
    for batch in reader:
        images.append(torch.from_numpy(batch.images))
        labels.append(torch.from_numpy(batch.labels))
    return torch.cat(images), torch.cat(labels), list(reader.skipped)

"""Training data held in memory as square-resized uint8 images, and the train augmentations.

Both official transforms start with the same square bicubic resize to ``int(S / 0.875)``;
doing it once when the split is read leaves only crops and flips per epoch, so a CPU run
spends its time in the model rather than in JPEG decoding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from clca_deploy.data import ImageDataset, ImageReadError, PreprocessConfig, SkippedImage, load_image
from clca_deploy.data.preprocess import INTERPOLATIONS
from clca_deploy.errors import ClcaDeployError

# Above this the split is not preloaded; a streaming loader would be needed (not written yet).
MAX_PRELOAD_BYTES = 8 << 30


@dataclass(frozen=True, eq=False)
class ResizedSplit:
    """uint8 images [N, 3, R, R] after the square resize, their labels, and the files left out."""

    images: torch.Tensor
    labels: torch.Tensor
    skipped: tuple[SkippedImage, ...]

    def __len__(self) -> int:
        return len(self.labels)


def read_resized_split(dataset: ImageDataset, resize_size: int, what: str = "training") -> ResizedSplit:
    """Decode and square-resize every labelled image once; unreadable files are skipped and listed."""
    if not dataset.labelled:
        raise ClcaDeployError(
            f"{dataset.root} has no class labels; {what} needs an ImageFolder split (<dir>/<class>/<image>) "
            "or an official CSV split."
        )
    needed = len(dataset) * 3 * resize_size * resize_size
    if needed > MAX_PRELOAD_BYTES:
        raise ClcaDeployError(
            f"{len(dataset)} images at {resize_size}px need {needed / 2**30:.1f} GiB in memory, more than the "
            f"{MAX_PRELOAD_BYTES >> 30} GiB this trainer preloads; train on a subset or with the official train.py."
        )
    images = np.empty((len(dataset), 3, resize_size, resize_size), dtype=np.uint8)
    labels, skipped = [], []
    resample = INTERPOLATIONS["bicubic"]
    for record in dataset.records:
        try:
            image = load_image(record.path)
        except ImageReadError as exc:
            skipped.append(SkippedImage(record.path, exc.reason))
            continue
        resized = image.resize((resize_size, resize_size), resample=resample)
        images[len(labels)] = np.asarray(resized, dtype=np.uint8).transpose(2, 0, 1)
        labels.append(record.label)
    if not labels:
        raise ClcaDeployError(f"no image of {dataset.root} could be read ({len(skipped)} skipped).")
    return ResizedSplit(torch.from_numpy(images[: len(labels)]), torch.tensor(labels, dtype=torch.int64), tuple(skipped))


def normalise(images: torch.Tensor, preprocess: PreprocessConfig) -> torch.Tensor:
    """uint8 [B, 3, S, S] -> float32 normalised as the official ToTensor + Normalize."""
    mean = torch.tensor(preprocess.mean, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(preprocess.std, device=images.device).view(1, 3, 1, 1)
    return (images.float() / 255.0 - mean) / std


class TrainAugment:
    """The official train transforms on a batch of pre-resized uint8 images.

    weak:   RandomCrop(S) + horizontal flip (official ``weakaugs``);
    medium: weak + TrivialAugmentWide (official ``medaugs``);
    strong: medium + vertical flip and a random right-angle rotation, for scans whose
            orientation carries no class information (leaves on a flatbed).
    """

    def __init__(self, img_size: int, kind: str, generator: torch.Generator):
        self.img_size = img_size
        self.kind = kind
        self.generator = generator
        self._trivial = None
        if kind in ("medium", "strong"):
            from torchvision.transforms import TrivialAugmentWide

            self._trivial = TrivialAugmentWide()

    def _randint(self, high: int, size: int) -> torch.Tensor:
        return torch.randint(0, high, (size,), generator=self.generator)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        batch, _, resized, _ = images.shape
        crop = self.img_size
        tops, lefts = self._randint(resized - crop + 1, batch), self._randint(resized - crop + 1, batch)
        flips = self._randint(2, batch)
        out = torch.empty((batch, 3, crop, crop), dtype=torch.uint8)
        for i in range(batch):
            image = images[i, :, tops[i] : tops[i] + crop, lefts[i] : lefts[i] + crop]
            if flips[i]:
                image = image.flip(-1)
            if self.kind == "strong":
                if self._randint(2, 1)[0]:
                    image = image.flip(-2)
                image = torch.rot90(image, int(self._randint(4, 1)[0]), dims=(-2, -1))
            if self._trivial is not None:
                # TrivialAugmentWide draws from torch's global generator, seeded by the trainer.
                image = self._trivial(image)
            out[i] = image
        return out

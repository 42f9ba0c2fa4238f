"""Parity of an exported ONNX file with the PyTorch model it came from, run in onnxruntime on CPU."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from clca_deploy.errors import ClcaDeployError


class ExportVerificationError(ClcaDeployError):
    """The exported graph does not compute what the PyTorch model computes."""


# Token selection (top-k over attention scores) is discontinuous: where two scores nearly
# tie, any rounding difference, a runtime's or an input's, can swap a token and move the
# logits far more than fp32 noise. Each image's allowance therefore adds the model's own
# sensitivity to an input change of this size (the golden fixtures' perturbation_stability
# convention). A real export bug moves logits on stable images too, where the allowance
# stays at the tolerance.
PERTURBATION = 1e-5
PERTURBATION_DRAWS = 2


@dataclass(frozen=True)
class ParityResult:
    """How an ONNX file's logits compare with PyTorch's on the same images."""

    images: str  # "synthetic" or the data folder
    num_images: int
    batch_sizes: tuple[int, ...]
    max_abs_error: float
    mean_abs_error: float
    top1_agreement: float  # percent of images whose top-1 class matches PyTorch (as in bench reports)
    tolerance: float
    max_instability: float  # PyTorch's own logit change under a 1e-5 input perturbation
    images_beyond_allowance: int  # images whose error exceeds tolerance + their instability

    @property
    def passed(self) -> bool:
        return self.images_beyond_allowance == 0

    def to_dict(self) -> dict:
        return {**asdict(self), "passed": self.passed}


def synthetic_images(count: int, img_size: int, seed: int = 0) -> np.ndarray:
    """Deterministic normalised images: smooth random colour fields plus pixel noise."""
    import torch  # the export extra; this module is imported by `export` only after that is checked

    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(count, 3, 8, 8, generator=generator)
    smooth = torch.nn.functional.interpolate(coarse, size=(img_size, img_size), mode="bilinear", align_corners=False)
    pixels = (smooth + 0.1 * torch.rand(count, 3, img_size, img_size, generator=generator)).clamp(0, 1)
    from clca_deploy.data import IMAGENET_MEAN, IMAGENET_STD

    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return ((pixels - mean) / std).numpy().astype(np.float32)


def onnx_session(path: str | Path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_in_batches(session, images: np.ndarray, batch: int) -> np.ndarray:
    """Run ``images`` through an onnxruntime session in batches of ``batch``; a fixed-batch export needs
    full batches, so the images are padded with copies of the last one, whose logits are dropped."""
    name = session.get_inputs()[0].name
    padded = np.concatenate([images, np.repeat(images[-1:], -len(images) % batch, axis=0)])
    logits = [session.run(None, {name: padded[start : start + batch]})[0] for start in range(0, len(padded), batch)]
    return np.concatenate(logits)[: len(images)]


def check_parity(
    path: str | Path, model, images: np.ndarray, batch_sizes: tuple[int, ...],
    tolerance: float, source: str,
) -> ParityResult:
    reference, instability = reference_and_instability(model, images)
    session = onnx_session(path)
    errors, agree = [], []
    for batch in batch_sizes:
        logits = run_in_batches(session, images, batch)
        errors.append(np.abs(logits - reference))
        agree.append(logits.argmax(1) == reference.argmax(1))
    errors_all = np.stack(errors)  # [runs, images, classes]
    per_image = errors_all.max(axis=(0, 2))
    return ParityResult(
        images=source,
        num_images=len(images),
        batch_sizes=tuple(batch_sizes),
        max_abs_error=float(errors_all.max()),
        mean_abs_error=float(errors_all.mean()),
        top1_agreement=100.0 * float(np.concatenate(agree).mean()),
        tolerance=tolerance,
        max_instability=float(instability.max()),
        images_beyond_allowance=int((per_image > tolerance + instability).sum()),
    )


def reference_and_instability(model, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """PyTorch logits, and per image the largest logit change under small input perturbations."""
    import torch

    generator = torch.Generator().manual_seed(1234)
    inputs = torch.from_numpy(images)
    with torch.no_grad():
        reference = model(inputs)
        instability = torch.zeros(len(images))
        for _ in range(PERTURBATION_DRAWS):
            noisy = inputs + PERTURBATION * torch.randn(inputs.shape, generator=generator)
            instability = torch.maximum(instability, (model(noisy) - reference).abs().amax(dim=1))
    return reference.numpy(), instability.numpy()

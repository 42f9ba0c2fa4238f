"""The PyTorch reference backend: a checkpoint run by ``ClcaModel`` in eval mode."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from clca_deploy.errors import ClcaDeployError, UnsupportedError
from clca_deploy.extras import has_module
from clca_deploy.runtime.base import InputSpec, ModelDescription, check_batch


class TorchBackend:
    name = "torch"

    def __init__(
        self, path: str | Path, device: str = "cpu", keep_rate: float | None = None,
        settings_file: str | Path | None = None, **settings: Any,
    ):
        """``settings_file``: JSON of train.py args for a bare state dict; ``settings`` override it."""
        from clca_deploy.extras import install_line

        if not all(has_module(name) for name in ("torch", "timm")):
            raise UnsupportedError(
                f"running a checkpoint needs PyTorch: {install_line('torch')}; "
                "or use the FP32 ONNX from `clca-deploy export` (it was checked against PyTorch when exported)."
            )
        import torch

        from clca_deploy.model import load_checkpoint
        from clca_deploy.model.checkpoint import read_settings_file
        from clca_deploy.model.deploy import with_keep_rate

        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ClcaDeployError(f"device {device} requested but no CUDA GPU is available; use --device cpu.")
        if settings_file is not None:
            settings = read_settings_file(settings_file) | settings
        model = load_checkpoint(path, **settings)
        if keep_rate is not None:
            model = with_keep_rate(model, keep_rate)
        self.model = model.to(device)
        self.device = torch.device(device)
        config = model.config
        self.input_spec = InputSpec(name="images", img_size=config.img_size)
        self.description = ModelDescription(
            model=config.model,
            keep_rate=config.keep_rate,
            num_classes=config.num_classes,
            preprocess=config.preprocess_settings(),
            class_names=model.class_names,
            precision="fp32",
        )
        self.providers = (f"torch:{self.device}",)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        import torch

        batch = check_batch(batch, self.input_spec)
        with torch.inference_mode():
            # .cpu() synchronises with the device, so timing covers the whole forward.
            return self.model(torch.from_numpy(batch).to(self.device)).float().cpu().numpy()

    def __enter__(self) -> "TorchBackend":
        return self

    def __exit__(self, *exc: object) -> None:
        self.model = None

"""The PyTorch reference backend: a checkpoint run by the model code in eval mode."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clca_deploy.errors import ClcaDeployError, UnsupportedError
from clca_deploy.extras import has_module, install_command, install_line
from clca_deploy.metadata import check_regular_file
from clca_deploy.runtime.base import CHECKPOINT, BackendBase, InputSpec, ModelDescription, RuntimeSpec, check_batch
from clca_deploy.runtime.options import as_path, cli_option
from clca_deploy.system import checks
from clca_deploy.system.checks import Check, Context

NEEDED_FOR = "needed only for export, train and checkpoints (info, sweep, a PyTorch reference)"


@dataclass(frozen=True)
class TorchOptions:
    """PyTorch's settings: the device, a keep rate other than the checkpoint's, the train.py args of a bare state dict."""

    train_args: Path | None = cli_option(
        None, "--config", "JSON of train.py args for a .pth without them (bare state dict); applies to every .pth run here."
    )
    device: str = "cpu"  # a torch device string, "cuda:1"
    keep_rate: float | None = None  # run at this keep rate instead of the checkpoint's

    def __post_init__(self) -> None:
        as_path(self, "train_args")
        if self.train_args is None:
            return
        if not self.train_args.exists():
            raise ClcaDeployError(
                f"--config {self.train_args} not found; give a JSON file of the checkpoint's train.py args."
            )
        check_regular_file(self.train_args, "--config file")  # a FIFO or a device is named, not read


class TorchBackend(BackendBase):
    """A checkpoint (official train.py, a bare state dict with --config, or safetensors) on PyTorch: the reference."""

    name = "torch"

    def __init__(self, path: str | Path, options: TorchOptions = TorchOptions()):
        if not all(has_module(name) for name in ("torch", "timm")):
            raise UnsupportedError(
                f"running a checkpoint needs PyTorch: {install_line('torch')}; "
                "or use the FP32 ONNX from `clca-deploy export` (it was checked against PyTorch when exported)."
            )
        import torch

        from clca_deploy.model import load_checkpoint
        from clca_deploy.model.checkpoint import read_train_args
        from clca_deploy.model.deploy import with_keep_rate

        if options.device.startswith("cuda") and not torch.cuda.is_available():
            raise ClcaDeployError(f"device {options.device} requested but no CUDA GPU is available; use --device cpu.")
        settings = read_train_args(options.train_args) if options.train_args is not None else {}
        model = load_checkpoint(path, **settings)
        if options.keep_rate is not None:
            model = with_keep_rate(model, options.keep_rate)
        self.model = model.to(options.device)
        self.device = torch.device(options.device)
        self.device_index = (self.device.index or 0) if self.device.type == "cuda" else None
        config = model.config
        self.input_spec = InputSpec(name="images", img_size=config.img_size)
        self.description = ModelDescription(
            model=config.model, keep_rate=config.keep_rate, num_classes=config.num_classes,
            preprocess=config.preprocess_settings(), class_names=model.class_names, precision="fp32",
        )
        self.providers = (f"torch:{self.device}",)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        import torch

        batch = check_batch(batch, self.input_spec)
        with torch.inference_mode():
            # .cpu() synchronises with the device, so timing covers the whole forward.
            return self.model(torch.from_numpy(batch).to(self.device)).float().cpu().numpy()

    def close(self) -> None:
        self.model = None


def probe(ctx: Context) -> Check:
    """`doctor`'s torch row: installed (only the export side needs it), and whether it sees the GPU."""
    version = checks.dist_version("torch")
    if version is None:
        return Check("torch", "missing", f"not installed: {NEEDED_FOR}", install_command("export"))
    try:
        import torch  # only here, and only when installed: it takes a second or two

        cuda = torch.cuda.is_available()
        cuda_build = torch.version.cuda
    except Exception as exc:
        return Check("torch", "error", f"{version} does not import: {exc}", install_command("export"))
    if cuda:
        return Check("torch", "ok", f"{version}, sees CUDA (built for CUDA {cuda_build})")
    if ctx.gpus:
        what = f"a CUDA {cuda_build} build that does not start here" if cuda_build else "a CPU build"
        return Check("torch", "note", f"{version}, {what}: export works, training runs on the CPU")
    build = f"CUDA {cuda_build} build, no GPU here" if cuda_build else "CPU build"
    return Check("torch", "ok", f"{version} ({build}); {NEEDED_FOR}")


RUNTIME = RuntimeSpec(
    name="torch",
    backend=TorchBackend,
    options=TorchOptions,
    suffixes=(".pth", ".pt", ".bin", ".safetensors"),
    file_format=CHECKPOINT,
    summary="checkpoints, the reference",
    requires=("torch", "timm"),
    probes=(("torch", probe),),
    distributions=("torch", "timm"),
)

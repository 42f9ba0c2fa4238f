"""The ViT-B/16 at 448 px (EViT + CLCA, random weights) on PyTorch GPU FP32 / FP16, PyTorch CPU and onnxruntime.

Every runtime's logits are compared with PyTorch FP32 on the CPU on the same leaf images (top-1 agreement,
logit error); latency at each batch size through bench's harness, with board power over a time-based window
on the GPU. Random weights are enough: latency does not depend on them, and agreement still shows a runtime
that computes something else.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.gpu_check.work import Work, agreement, measure, open_ort_gpu, row

CHECKPOINT = "ViT-B/16 448 checkpoint"
REFERENCE = "torch CPU fp32"
quiet = lambda _: None  # noqa: E731


def _args(work: Work) -> dict[str, Any]:
    if work.settings.vit_args is not None:
        return dict(work.settings.vit_args)
    from benchmarks.export_latency import SETTINGS  # the model of the export latency table, one definition

    return dict(SETTINGS)


def checkpoint(work: Work) -> dict[str, Any]:
    """A random-weight checkpoint in the official format, and the leaf images preprocessed for it."""
    import argparse

    import torch

    from clca_deploy.model import ClcaConfig, ClcaModel

    args = _args(work)
    config, _ = ClcaConfig.from_args(args)
    torch.manual_seed(0)
    model = ClcaModel(config)
    path = work.folder / "vit.pth"
    torch.save({"model": model.state_dict(), "args": argparse.Namespace(**args), "epoch": 0}, path)
    work.products["vit"] = path
    work.products["vit preprocess"] = config.preprocess_settings()
    images = work.images(config.preprocess_settings())
    return {"model": args["model"], "img_size": config.img_size, "num_classes": config.num_classes,
            "parameters": sum(p.numel() for p in model.parameters()), "images": len(images)}


def _images(work: Work) -> np.ndarray:
    return work.images(work.product("vit preprocess"))


def reference(work: Work, keep: float) -> np.ndarray:
    """PyTorch FP32 logits on the CPU at ``keep``: what every other runtime is compared with (made once)."""
    from clca_deploy.runtime import open_backend

    key = ("reference", keep)
    if key not in work.products:
        with open_backend(work.product("vit"), "torch", device="cpu", keep_rate=keep) as backend:
            work.products[key] = backend(_images(work))
    return work.products[key]


def autocast(run, device: str):
    """``run`` under PyTorch autocast: FP16 matmuls on the GPU (bf16 on the CPU stand-in of tests)."""
    import torch

    kind = torch.device(device).type
    dtype = torch.float16 if kind == "cuda" else torch.bfloat16

    def call(batch: np.ndarray) -> np.ndarray:
        with torch.autocast(device_type=kind, dtype=dtype):
            return run(batch)

    return call


def torch_gpu(work: Work, keep: float) -> dict[str, Any]:
    """PyTorch eager on GPU N, FP32 and FP16 autocast, against PyTorch FP32 on the CPU."""
    import torch

    from clca_deploy.runtime import open_backend

    images, expected = _images(work), reference(work, keep)
    device, rows = work.torch_device, []
    with open_backend(work.product("vit"), "torch", device=device, keep_rate=keep) as backend:
        for precision, run in (("fp32", backend), ("fp16 autocast", autocast(backend, device))):
            rows.append(row(f"torch {device} {precision} keep {keep:g}", runtime="torch", device=device,
                            precision=precision, keep=keep, agreement=agreement(run(images), expected, REFERENCE),
                            latency=measure(work, run, images, on_gpu=True)))
    return {"rows": rows, "tf32_matmul": bool(torch.backends.cuda.matmul.allow_tf32)}


def torch_cpu(work: Work, keep: float) -> dict[str, Any]:
    """PyTorch FP32 on the CPU: the reference itself, timed briefly."""
    from clca_deploy.runtime import open_backend

    images = _images(work)
    with open_backend(work.product("vit"), "torch", device="cpu", keep_rate=keep) as backend:
        work.products.setdefault(("reference", keep), backend(images))
        latency = measure(work, backend, images, on_gpu=False)
    return {"rows": [row(f"{REFERENCE} keep {keep:g} (reference)", runtime="torch", device="cpu", precision="fp32",
                         keep=keep, agreement=None, latency=latency)]}


def export(work: Work, keep: float) -> dict[str, Any]:
    """`clca-deploy export` of the checkpoint at ``keep`` (parity-checked against PyTorch)."""
    from clca_deploy.export import ExportConfig, export_onnx

    path = work.folder / f"vit_keep{keep:g}.onnx"
    result = export_onnx(work.product("vit"), path, ExportConfig(keep_rate=keep, verify_images=2), log=quiet)
    work.products[("vit onnx", keep)] = Path(result.path)
    return {"onnx": result.path, "megabytes": Path(result.path).stat().st_size / 1e6, "seconds": result.seconds,
            "parity": result.parity.to_dict() if result.parity else None}


def onnxruntime_cpu(work: Work, keep: float) -> dict[str, Any]:
    """onnxruntime FP32 on the CPU, timed briefly, against PyTorch FP32 on the CPU."""
    from clca_deploy.runtime import open_backend

    images = _images(work)
    with open_backend(work.product(("vit onnx", keep)), "onnxruntime", provider="cpu") as backend:
        rows = [row(f"onnxruntime CPU fp32 keep {keep:g}", runtime="onnxruntime", device="cpu", precision="fp32",
                    keep=keep, agreement=agreement(backend(images), reference(work, keep), REFERENCE),
                    latency=measure(work, backend, images, on_gpu=False))]
    return {"rows": rows}


def onnxruntime_gpu(work: Work, keep: float) -> dict[str, Any]:
    """onnxruntime's CUDA provider on GPU N (verified in the session), against PyTorch FP32 on the CPU."""
    images = _images(work)
    with open_ort_gpu(work.product(("vit onnx", keep)), work.device) as backend:
        rows = [row(f"onnxruntime cuda:{work.device} fp32 keep {keep:g}", runtime="onnxruntime",
                    device=f"cuda:{work.device}", precision="fp32", keep=keep, providers=list(backend.providers),
                    agreement=agreement(backend(images), reference(work, keep), REFERENCE),
                    latency=measure(work, backend, images, on_gpu=True))]
    return {"rows": rows}

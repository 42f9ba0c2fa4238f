"""The fake engine's "model" and the small ONNX file the tests build engines from.

The fake engine computes logits = images.mean(axis=(2, 3)) @ weights(num_classes), so a test checks any
backend output with numpy (expected_logits) instead of a real network.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def weights(num_classes: int) -> np.ndarray:
    """The fake engine's "model": logits = images.mean(axis=(2, 3)) @ weights(num_classes)."""
    return ((np.arange(3 * num_classes, dtype=np.float32).reshape(3, num_classes) - 20) / 10).astype(np.float32)


def expected_logits(images: np.ndarray, num_classes: int) -> np.ndarray:
    return images.astype(np.float32).mean(axis=(2, 3)) @ weights(num_classes)


def tiny_onnx(
    path, precision: str = "fp32", batch: int | None = None, img_size: int = 32, num_classes: int = 15,
    class_names: list[str] | None = None,
):
    """A small ONNX file with clca-deploy metadata (the fake parser reads only its I/O and precision)."""
    import onnx
    from onnx import TensorProto, helper

    dims = [batch or "batch", 3, img_size, img_size]
    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["images"], ["pooled"]), helper.make_node("Flatten", ["pooled"], ["flat"]),
         helper.make_node("MatMul", ["flat", "w"], ["logits"])],
        "tiny",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch or "batch", num_classes])],
        [onnx.numpy_helper.from_array(weights(num_classes), "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    props = {
        "clca_deploy.format": "1", "clca_deploy.version": "0.1.0", "model": "evit_deit_tiny_patch16_224",
        "method": "evit", "backbone": "deit_tiny", "keep_rate": "[0.5, 0.5, 0.5]", "trained_keep_rate": "[0.5]",
        "reduction_loc": "[3, 6, 9]", "token_schedule": "[[197, 197]]", "img_size": str(img_size),
        "resize_size": str(img_size + 4), "interpolation": "bicubic", "mean": "[0.5, 0.5, 0.5]", "std": "[0.5, 0.5, 0.5]",
        "num_classes": str(num_classes), "clca_config": "{}", "precision": precision,
    }
    if class_names is not None:
        props["class_names"] = json.dumps(class_names)
    for key, value in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))
    return Path(path)

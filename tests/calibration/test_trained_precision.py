"""INT8 and FP16 files agree with FP32 on a small trained model, and one wrong Q/DQ scale breaks that bound.

The golden fixtures hold random weights: their classes and tokens are near-tied, so agreement
means little there. Here a ViT-Tiny learns five leaf classes for a few seconds (48 px, 9 patch
tokens), goes through the product's export, INT8 calibration (16 leaves) and FP16 conversion,
and the three files classify 60 test leaves. The model keeps every token (keep rate 1): a
token-dropping model may drop another token when a score moves by a rounding error, a discrete
flip that says nothing about the scales this test is about.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from tests.conftest import LEAVES_DIR, require_shared

CLASSES = ("Acer", "Fagus_silvatica", "Quercus", "Salix_alba_Sericea", "Tilia")
MIN_ARGMAX_AGREEMENT = 0.95
# Largest |logit - FP32 logit| over all test images and classes, as a fraction of the mean FP32
# logit range (max - min over the classes of an image). Measured on this fixture: INT8 0.006-0.007,
# FP16 0.0001-0.0004. One weight scale made 4x too large: 0.33 for the patch embedding, 0.22-0.24
# for other layers, 0.037 for a mid-network MLP weight (which the residual stream dilutes).
MAX_LOGIT_ERROR = {"int8": 0.025, "fp16": 0.005}


@dataclass(frozen=True)
class TrainedModel:
    fp32: Path
    int8: Path
    fp16: Path
    images: np.ndarray  # the test leaves, preprocessed as the model's metadata says
    labels: np.ndarray
    fp32_logits: np.ndarray


@dataclass(frozen=True)
class Agreement:
    argmax: float  # fraction of images with FP32's top-1 class
    logit_error: float  # max |logit - FP32 logit| / mean FP32 logit range

    def problems(self, precision: str) -> list[str]:
        found = []
        if self.argmax < MIN_ARGMAX_AGREEMENT:
            found.append(f"argmax agreement {self.argmax:.1%} < {MIN_ARGMAX_AGREEMENT:.0%}")
        if not self.logit_error <= MAX_LOGIT_ERROR[precision]:
            found.append(f"logit error {self.logit_error:.3f} of the logit range > {MAX_LOGIT_ERROR[precision]}")
        return found


def agreement(logits: np.ndarray, reference: np.ndarray) -> Agreement:
    logit_range = float((reference.max(axis=1) - reference.min(axis=1)).mean())
    return Agreement(
        argmax=float((logits.argmax(axis=1) == reference.argmax(axis=1)).mean()),
        logit_error=float(np.abs(logits - reference).max()) / logit_range,
    )


def logits_of(path: Path, images: np.ndarray) -> np.ndarray:
    from clca_deploy.runtime import open_backend

    with open_backend(path, threads=1) as backend:
        return backend(images)


def _five_class_leaves(root: Path) -> Path:
    leaves = require_shared(LEAVES_DIR)
    for split in ("train", "test"):
        (root / split).mkdir(parents=True)
        for name in CLASSES:
            os.symlink(leaves / split / name, root / split / name)
    return root


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> TrainedModel:
    """About 35 s on one idle core: training (~13 s) and the dynamo export (~15 s) dominate."""
    from clca_deploy.calibration import CalibrationConfig, quantize_int8, to_fp16
    from clca_deploy.data import PreprocessConfig, iter_batches, open_dataset
    from clca_deploy.export import ExportConfig, export_onnx
    from clca_deploy.metadata import read_onnx_metadata
    from clca_deploy.train import TrainConfig, train

    work = tmp_path_factory.mktemp("trained_precision")
    data = _five_class_leaves(work / "leaves")
    config = TrainConfig(model="vit_tiny_patch16_224", img_size=48, keep_rate=1.0, clca=False, epochs=8,
                         batch_size=16, warmup_epochs=1, label_smoothing=0.0, evaluations=1, seed=1)
    train(data, work / "model.pth", config, log=lambda _: None, progress=False)
    fp32 = Path(export_onnx(work / "model.pth", work / "model.onnx", ExportConfig(verify_images=2), log=lambda _: None).path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 16 calibration images are below the recommended minimum, on purpose
        int8 = quantize_int8(fp32, work / "model.int8.onnx", CalibrationConfig(data=data / "train", num_images=16, use_cache=False),
                             log=lambda _: None)
    fp16 = to_fp16(fp32, work / "model.fp16.onnx", log=lambda _: None)
    preprocess = PreprocessConfig.from_dict(read_onnx_metadata(fp32).preprocess)
    batches = list(iter_batches(open_dataset(data / "test"), preprocess, batch_size=64))
    images = np.concatenate([batch.images for batch in batches])
    labels = np.concatenate([batch.labels for batch in batches])
    return TrainedModel(fp32, Path(int8.path), Path(fp16.path), images, labels, logits_of(fp32, images))


def test_the_fixture_model_is_trained(trained):
    """Agreement on an untrained model would prove nothing: its logits are near-tied (range about 0.1)."""
    logits = trained.fp32_logits
    assert len(trained.images) == 12 * len(CLASSES)
    accuracy = float((logits.argmax(axis=1) == trained.labels).mean())
    assert accuracy >= 0.4, f"FP32 top-1 {accuracy:.1%} on 5 classes (chance 20%)"
    assert float((logits.max(axis=1) - logits.min(axis=1)).mean()) > 2.0


@pytest.mark.parametrize("precision", ["int8", "fp16"])
def test_reduced_precision_agrees_with_fp32(trained, precision):
    path = trained.int8 if precision == "int8" else trained.fp16
    measured = agreement(logits_of(path, trained.images), trained.fp32_logits)
    assert measured.problems(precision) == [], measured


def test_a_wrong_weight_scale_breaks_the_bound(trained, tmp_path):
    """The check above can fail: the patch embedding's weight scale multiplied by 4, all else equal."""
    model = onnx.load(str(trained.int8))
    initializers = {init.name: init for init in model.graph.initializer}
    consumers = {name: node for node in model.graph.node for name in node.input}
    weight_dq = next(node for node in model.graph.node if node.op_type == "DequantizeLinear"
                     and node.input[0] in initializers and consumers[node.output[0]].op_type == "Conv")
    scale = initializers[weight_dq.input[1]]
    scale.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(scale) * 4, scale.name))
    broken = tmp_path / "broken.int8.onnx"
    onnx.save(model, str(broken))

    honest = agreement(logits_of(trained.int8, trained.images), trained.fp32_logits)
    measured = agreement(logits_of(broken, trained.images), trained.fp32_logits)
    assert honest.problems("int8") == []
    assert any(problem.startswith("logit error") for problem in measured.problems("int8")), measured
    assert measured.logit_error > 3 * MAX_LOGIT_ERROR["int8"]  # not a near miss

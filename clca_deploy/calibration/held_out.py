"""Held-out calibration images: which ones, and how a candidate graph scores on them against FP32.

The held-out images are set aside from the calibration set before any range is measured, evenly
spread over it (the set itself is spread over the classes), so the search judges placements on
images their scales never saw. Graphs run on onnxruntime's CPU provider: the runtime every
install has, and the one whose Q/DQ arithmetic matches TensorRT's and OpenVINO's. Where the model
crops (GLSim), the crop step's patch selection is read too: a placement must keep the crop.
"""

from __future__ import annotations

import numpy as np

from clca_deploy.calibration.qdq import in_crop_step
from clca_deploy.calibration.search import HeldOutScore

EVALUATION_BATCH = 16


def held_out_positions(count: int, held_out: int) -> list[int]:
    """``held_out`` positions evenly spread over ``count`` images (the middle of each of as many equal runs)."""
    held_out = max(0, min(held_out, count))
    return [((2 * i + 1) * count) // (2 * held_out) for i in range(held_out)]


def split_held_out(images: np.ndarray, held_out: int) -> tuple[np.ndarray, np.ndarray]:
    """(calibration images, held-out images)."""
    positions = held_out_positions(len(images), held_out)
    mask = np.zeros(len(images), dtype=bool)
    mask[positions] = True
    return images[~mask], images[mask]


def crop_selection_tensor(model) -> str | None:
    """The patches GLSim's crop step selects (its TopK's indices), or None for a model that does not crop."""
    return next((node.output[1] for node in model.graph.node if node.op_type == "TopK" and in_crop_step(node)), None)


class HeldOutJudge:
    """Scores graphs on the held-out images against the FP32 graph's logits (and crops), computed once."""

    def __init__(self, fp32_model, images: np.ndarray, input_name: str, fixed_batch: int | None) -> None:
        self.images, self.input_name, self.fixed_batch = images, input_name, fixed_batch
        self.selection = crop_selection_tensor(fp32_model)
        self.reference, self.reference_crops = self.run(fp32_model)

    def run(self, model) -> tuple[np.ndarray, np.ndarray | None]:
        """Logits, and the sorted crop selection of each image where the model crops."""
        import onnx
        import onnxruntime as ort

        if self.selection is not None:  # a copy with the selection as a second output; ``model`` is left as it is
            copy = onnx.ModelProto()
            copy.CopyFrom(model)
            copy.graph.output.append(onnx.helper.make_tensor_value_info(self.selection, onnx.TensorProto.INT64, None))
            model = copy
        options = ort.SessionOptions()
        options.log_severity_level = 3  # the quantized graphs are valid; its notes on them are noise here
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        outputs = [[out[:count] for out in session.run(None, {self.input_name: batch})] for batch, count in self._batches()]
        logits = np.concatenate([out[0] for out in outputs]).astype(np.float64)
        if self.selection is None:
            return logits, None
        return logits, np.sort(np.concatenate([out[1] for out in outputs]), axis=1)

    def _batches(self):
        """(batch, how many of its rows are real images)."""
        step = self.fixed_batch or EVALUATION_BATCH
        for start in range(0, len(self.images), step):
            batch = self.images[start : start + step]
            count = len(batch)
            if self.fixed_batch and count < step:  # a fixed-batch graph takes whole batches: repeat the last image
                batch = np.concatenate([batch, np.repeat(batch[-1:], step - count, axis=0)])
            yield batch, count

    def score(self, model) -> HeldOutScore:
        logits, crops = self.run(model)
        error = np.abs(logits - self.reference)
        agree = float((logits.argmax(axis=1) == self.reference.argmax(axis=1)).mean() * 100)
        same_crop = None if crops is None else round(float((crops == self.reference_crops).all(axis=1).mean() * 100), 4)
        return HeldOutScore(round(agree, 4), float(error.mean()), float(error.max()), same_crop)

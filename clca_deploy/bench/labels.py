"""Which model output each evaluation image's label means, and when a comparison would be meaningless.

An ImageFolder label is the position of its folder among the sorted class folders. That equals the
model's class index only when the folders are exactly the model's classes: a test split missing one
class shifts every later label. Where the model carries class names (this tool's checkpoints and
exports do), labels are matched by name; where it has none (official checkpoints), by sorted folder
position, with a note whenever the counts differ.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ModelLabels:
    """Labels as model class indices (None: not scorable), and why, when something did not line up."""

    labels: np.ndarray | None
    failure: str | None = None  # the row cannot be scored: top-1 against these labels would be meaningless
    note: str | None = None  # scored, with something the reader should know


def _names(names: tuple[str, ...], limit: int = 4) -> str:
    shown = ", ".join(repr(name) for name in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def labels_for_model(
    labels: np.ndarray | None,
    data_classes: tuple[str, ...] | None,
    model_classes: tuple[str, ...] | None,
    num_classes: int,
) -> ModelLabels:
    """``labels`` (indices into ``data_classes``, or class ids of a CSV split) as the model's class indices."""
    if labels is None:
        return ModelLabels(None)
    if data_classes and model_classes:
        return _by_name(labels, data_classes, model_classes)
    if labels.size and int(labels.max()) >= num_classes:
        return ModelLabels(None, failure=(
            f"the data has labels up to {int(labels.max())} but the model has {num_classes} classes: "
            "they are not the model's classes"
        ))
    if data_classes and len(data_classes) != num_classes:
        return ModelLabels(labels, note=(
            f"scored by sorted folder position (the model has no class names): the data has "
            f"{len(data_classes)} class folders, the model {num_classes} classes, so positions may not match"
        ))
    return ModelLabels(labels)


def _by_name(labels: np.ndarray, data_classes: tuple[str, ...], model_classes: tuple[str, ...]) -> ModelLabels:
    index = {name: position for position, name in enumerate(model_classes)}
    if len(index) != len(model_classes):
        # A name maps to one output; with two outputs of one name, images of that class would be scored
        # against whichever came last. Exports are refused by their reader; a checkpoint may still carry them.
        twice = tuple(dict.fromkeys(name for position, name in enumerate(model_classes) if index[name] != position))
        return ModelLabels(None, failure=(
            f"the model names class(es) {_names(twice)} more than once, so its class names cannot say which "
            "output a folder's images belong to: give the model distinct class names"
        ))
    used = tuple(dict.fromkeys(data_classes[label] for label in np.unique(labels)))
    unknown = tuple(name for name in used if name not in index)
    if unknown:
        return ModelLabels(None, failure=(
            f"class folder(s) {_names(unknown)} are not among the model's {len(model_classes)} classes "
            f"({_names(model_classes)}): check --data, or rename the folders to the model's class names"
        ))
    mapping = np.array([index.get(name, -1) for name in data_classes], dtype=np.int64)
    missing = len(model_classes) - len(used)
    note = f"{missing} of the model's classes have no images in the data" if missing else None
    return ModelLabels(mapping[labels], note=note)


def reference_mismatch(model, reference) -> str | None:
    """Why agreement with the reference would be meaningless (other classes), or None.

    ``model`` and ``reference`` are ModelDescriptions."""
    if model.num_classes != reference.num_classes:
        return f"the model has {model.num_classes} classes, the reference {reference.num_classes}: not the same model"
    if model.class_names and reference.class_names and model.class_names != reference.class_names:
        if sorted(model.class_names) == sorted(reference.class_names):
            return "the model and the reference order their classes differently: not the same model"
        return "the model's class names differ from the reference's: not the same model"
    return None


def image_size_note(model, reference) -> str | None:
    """A note when the model reads another image size than the reference (the comparison is of other inputs)."""
    size = model.preprocess.get("img_size")
    reference_size = reference.preprocess.get("img_size")
    if size != reference_size:
        return f"the reference reads {reference_size} px images, this model {size} px"
    return None

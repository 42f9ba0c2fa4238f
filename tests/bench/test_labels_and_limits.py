"""bench scores by class name, refuses meaningless comparisons, and bounds batch sizes before any work."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from clca_deploy.bench.labels import image_size_note, labels_for_model, reference_mismatch
from clca_deploy.bench.limits import MAX_BATCH, available_memory_bytes, batch_too_large, bytes_per_image
from clca_deploy.bench.run import BenchConfig, rows_to_measure
from clca_deploy.errors import ClcaDeployError
from clca_deploy.runtime import ModelDescription

MODEL = ("ash", "beech", "birch", "oak")


def test_a_split_missing_a_class_is_scored_by_name():
    data = ("ash", "birch", "oak")  # no beech folder: folder positions 1, 2 are model classes 2, 3
    labels = np.array([0, 1, 2, 2])
    mapped = labels_for_model(labels, data, MODEL, 4)
    np.testing.assert_array_equal(mapped.labels, [0, 2, 3, 3])
    assert mapped.failure is None and "1 of the model's classes have no images" in mapped.note


def test_folders_that_are_not_the_models_classes_are_refused():
    mapped = labels_for_model(np.array([0, 1]), ("ash", "Beech"), MODEL, 4)
    assert mapped.labels is None and "'Beech'" in mapped.failure and "not among the model's 4 classes" in mapped.failure


def test_without_class_names_the_folder_position_is_used_with_a_note_on_a_count_mismatch():
    same = labels_for_model(np.array([0, 3]), ("a", "b", "c", "d"), None, 4)
    np.testing.assert_array_equal(same.labels, [0, 3])
    assert same.note is None and same.failure is None
    fewer = labels_for_model(np.array([0, 2]), ("a", "b", "c"), None, 4)
    assert "3 class folders, the model 4 classes" in fewer.note
    beyond = labels_for_model(np.array([0, 5]), None, None, 4)  # CSV ids past the model's classes
    assert beyond.labels is None and "labels up to 5" in beyond.failure
    assert labels_for_model(None, ("a",), MODEL, 4).labels is None  # unlabelled data: nothing to score


def _description(classes, names=None, img_size=224):
    return ModelDescription(model="m", keep_rate=(0.1,), num_classes=classes, preprocess={"img_size": img_size},
                            class_names=names)


def test_a_reference_of_other_classes_is_a_mismatch():
    assert reference_mismatch(_description(4, MODEL), _description(4, MODEL)) is None
    assert "4 classes, the reference 5" in reference_mismatch(_description(4), _description(5))
    shuffled = MODEL[::-1]
    assert "order their classes differently" in reference_mismatch(_description(4, MODEL), _description(4, shuffled))
    other = ("a", "b", "c", "d")
    assert "class names differ" in reference_mismatch(_description(4, MODEL), _description(4, other))
    assert image_size_note(_description(4, img_size=448), _description(4)) == (
        "the reference reads 224 px images, this model 448 px"
    )


def test_batch_bound_by_memory_and_a_hard_cap():
    assert batch_too_large(8, 224, available=8 * 2**30) is None
    assert f"above the largest this benchmark runs ({MAX_BATCH})" in batch_too_large(100000, 224, None)
    message = batch_too_large(2048, 448, available=16 * 2**30)
    needed = 2048 * bytes_per_image(448)
    assert needed > 16 * 2**30 and f"{needed / 2**30:.1f} GiB" in message
    assert f"at most about {16 * 2**30 // bytes_per_image(448)} fits" in message


def test_available_memory_is_read_from_meminfo(tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       32000000 kB\nMemAvailable:   1000 kB\n")
    assert available_memory_bytes(meminfo) == 1000 * 1024
    meminfo.write_text("MemTotal: 1 kB\n")
    assert available_memory_bytes(meminfo) is None
    assert available_memory_bytes(tmp_path / "absent") is None


def test_a_huge_batch_is_refused_before_any_work(tmp_path):
    with pytest.raises(ClcaDeployError, match="batch size 100000 is above 4096"):
        BenchConfig(models=(Path("m.onnx"),), data=tmp_path, batch_sizes=(1, 100000)).validate()


def test_each_model_runs_on_each_listed_runtime_that_opens_it():
    models = (Path("a.onnx"), Path("b.engine"), Path("c.pth"))
    assert rows_to_measure(models, None) == [(models[0], "onnxruntime"), (models[1], "tensorrt"), (models[2], "torch")]
    assert rows_to_measure(models, ("onnxruntime", "openvino")) == [
        (models[0], "onnxruntime"), (models[0], "openvino"), (models[1], None), (models[2], None),
    ]
    with pytest.raises(ClcaDeployError, match="cannot tell which runtime"):
        rows_to_measure((Path("a.tflite"),), None)

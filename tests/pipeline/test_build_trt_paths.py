"""build-trt's default output names: the precision appears once, whatever file it starts from."""

from pathlib import Path

import pytest

from clca_deploy.pipeline.build_trt import default_engine_path, model_stem


@pytest.mark.parametrize(
    "onnx, precision, engine",
    [
        ("runs/model.onnx", "fp32", "runs/model.fp32.engine"),
        ("runs/model.onnx", "int8", "runs/model.int8.engine"),
        ("runs/model.int8.onnx", "int8", "runs/model.int8.engine"),
        ("runs/model.fp16.onnx", "fp16", "runs/model.fp16.engine"),
        ("runs/leaf.k0.1.onnx", "fp16", "runs/leaf.k0.1.fp16.engine"),
    ],
)
def test_default_engine_path(onnx, precision, engine):
    assert default_engine_path(Path(onnx), precision) == Path(engine)


def test_model_stem_strips_one_precision_suffix_only_at_the_end():
    assert model_stem(Path("int8.model.onnx")) == "int8.model"

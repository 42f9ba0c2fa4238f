"""FP16 and INT8 files of ILA and GLSim: GLSim's crop step stays fp32, the rest is converted."""

from __future__ import annotations

import collections

import numpy as np
import pytest

from clca_deploy.calibration import CalibrationConfig, check_qdq_conventions, quantize_int8, to_fp16
from clca_deploy.export import ExportConfig, export_onnx
from tests.model.fgir_fixtures import load_fgir_golden


def test_crop_module_name_matches_the_model():
    """calibration spells the crop module's name out (no torch); it must be the model's."""
    import re

    from clca_deploy.calibration.qdq import CROP_MODULE
    from clca_deploy.model.fgir.crop import CROP_SCOPE, StaticCrop

    assert f"{StaticCrop.__module__}.{StaticCrop.__qualname__}" == CROP_MODULE
    assert re.search(CROP_SCOPE, f"/cropper: {CROP_MODULE}/grid_sampler: aten.grid_sampler.default")


@pytest.fixture(scope="module")
def glsim_onnx(tmp_path_factory):
    checkpoint, _, io = load_fgir_golden("glsim_t16_224")
    folder = tmp_path_factory.mktemp("glsim")
    path = export_onnx(checkpoint, folder / "glsim.onnx", ExportConfig(), log=lambda _: None).path
    return folder, path, io


def _types(model) -> dict[str, int]:
    """Element type of every tensor the graph declares (inputs, initializers, value_info after inference)."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type for v in list(inferred.graph.value_info) + list(inferred.graph.input)}
    types.update({init.name: init.data_type for init in model.graph.initializer})
    return types


def test_glsim_fp16_keeps_the_crop_step_fp32_and_converts_the_encoders(glsim_onnx, leaves_dir):
    import onnx

    folder, path, _ = glsim_onnx
    to_fp16(path, folder / "glsim.fp16.onnx", log=lambda _: None)
    model = onnx.load(str(folder / "glsim.fp16.onnx"))
    types = _types(model)
    grid = next(node for node in model.graph.node if node.op_type == "GridSample")
    assert [types[name] for name in grid.input] == [onnx.TensorProto.FLOAT] * 2  # image and grid in fp32
    topk = next(node for node in model.graph.node if node.op_type == "TopK")
    assert types[topk.input[0]] == onnx.TensorProto.FLOAT
    # The encoders are converted: most weight matrices are fp16 (the score-path walk stays bounded).
    weights = [init for init in model.graph.initializer if len(init.dims) == 2]
    fp16 = sum(init.data_type == onnx.TensorProto.FLOAT16 for init in weights)
    assert fp16 > 0.9 * len(weights)


def test_glsim_int8_quantizes_the_crop_pass_and_keeps_the_deciding_global_pass_float(glsim_onnx, leaves_dir):
    import onnx

    folder, path, io = glsim_onnx
    config = CalibrationConfig(data=leaves_dir / "train", num_images=16, use_cache=False)
    result = quantize_int8(path, folder / "glsim.int8.onnx", config, log=lambda _: None)
    model = onnx.load(result.path)
    assert check_qdq_conventions(model) == []
    ops = collections.Counter(node.op_type for node in model.graph.node)
    # The crop pass and the aggregator are int8 (their weights are shared with the global pass:
    # transposes folded at export); the global pass, which decides the crop box, stays float.
    global_pass = [reason for reason in result.kept_float if "GLSim global pass" in reason]
    assert result.quantized_nodes > 60 and len(global_pass) > 60 and ops["GridSample"] == 1
    import onnxruntime as ort

    logits = ort.InferenceSession(result.path, providers=["CPUExecutionProvider"]).run(None, {"images": io["input"]})[0]
    assert np.isfinite(logits).all()


def _node(op, name, namespace, inputs):
    from onnx import helper

    node = helper.make_node(op, inputs, [f"{name}_out"], name=name)
    entry = node.metadata_props.add()
    entry.key, entry.value = "namespace", namespace
    return node


def test_int8_selection_keeps_ila_adapters_and_the_fgir_head_float():
    """Namespaces as the dynamo exporter writes them for fgir_vit's ILA model (encoder.ila_ds.N, head.head)."""
    import onnx
    from onnx import helper, numpy_helper

    from clca_deploy.calibration.qdq import select_int8_nodes

    weights = [numpy_helper.from_array(np.ones((4, 4), np.float32), f"w{i}") for i in range(4)]
    conv_weight = numpy_helper.from_array(np.ones((4, 1, 3, 3), np.float32), "cw")
    lin = ": torch.nn.modules.linear.Linear/linear: aten.linear.default"
    nodes = [
        _node("MatMul", "fc1", f": IlaModel/encoder: Encoder/encoder.blocks.0: Block/encoder.blocks.0.pwff.fc1{lin}", ["x", "w0"]),
        _node("MatMul", "down", f": IlaModel/encoder: Encoder/encoder.ila_ds.0: ILAdapter/encoder.ila_ds.0.adapter_down{lin}", ["x", "w1"]),
        _node("Conv", "ds", ": IlaModel/encoder: Encoder/encoder.ila_ds.1: ILAdapter/encoder.ila_ds.1.ds_conv: torch.nn.modules.conv.Conv2d/conv2d: aten.conv2d.default", ["x", "cw"]),
        _node("Gemm", "head", f": IlaModel/head: ClsHead/head.head{lin}", ["x", "w2"]),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, None)], [], weights + [conv_weight])
    quantize, kept = select_int8_nodes(helper.make_model(graph), ())
    assert quantize == ["fc1"]
    assert kept == ["down (encoder.ila_ds.0: ILA adapter)", "ds (encoder.ila_ds.1: ILA adapter)", "head (classifier head)"]

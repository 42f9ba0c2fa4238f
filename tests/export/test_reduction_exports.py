"""ONNX exports of ToMe, DPC-KNN, DynamicViT, SiT and PatchMerger: official logits in
onnxruntime, TensorRT op set, static shapes, metadata, INT8 node choice; ATS refused.

One dynamo export per golden fixture (about 20-35 s each on these tiny models), shared by
the tests below. EViT and Top-K are covered by test_onnx_export.py.
"""

from __future__ import annotations

import argparse

import numpy as np
import onnx
import pytest
import torch

from clca_deploy.calibration.qdq import reducer_scope, select_int8_nodes
from clca_deploy.errors import UnsupportedError
from clca_deploy.export import ExportConfig, export_onnx
from clca_deploy.metadata import read_onnx_metadata
from clca_deploy.export.ops import TENSORRT_ALLOWED_OPS, op_census
from clca_deploy.export.verify import onnx_session
from clca_deploy.model import load_checkpoint
from tests.conftest import GOLDEN_DIR, LEAVES_DIR, golden_names, load_golden, require_shared
from tests.model.test_golden import _supported, exact_logits, golden_tolerance, tolerance

METHODS = [n for n in golden_names() if n != "<missing>" and not _supported(load_golden(n)[1])] or ["<missing>"]


def export_config(name: str) -> ExportConfig:
    if name.startswith("dpcknn"):
        # The parity check on real leaves: on the synthetic smooth colour fields, many tokens are
        # near-identical and this deliberately peaky random-weight model sits on clustering
        # near-ties, where fp32 differences between runtimes flip a cluster as a 1e-5 input
        # change does (measured: up to 3.6 against PyTorch's own 2.4-3.5 under 8 perturbations).
        return ExportConfig(data=require_shared(LEAVES_DIR / "test"), verify_images=8)
    return ExportConfig()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    require_shared(GOLDEN_DIR)
    folder = tmp_path_factory.mktemp("reduction_onnx")
    results = {}
    for name in METHODS:
        path, _, _ = load_golden(name)
        results[name] = export_onnx(path, folder / f"{name}.onnx", export_config(name), log=lambda _: None)
    return results


@pytest.mark.parametrize("name", METHODS)
def test_onnx_matches_official_logits_at_batch_1_2_5(exported, name):
    path, meta, io = load_golden(name)
    session = onnx_session(exported[name].path)
    inputs, official = io["input"], io["logits"]
    bound = golden_tolerance(meta)
    exact = None
    if not name.startswith("dpcknn"):
        # The official fixture is itself a few 1e-4 from the exact function (DynamicViT: 5.1e-4
        # of a 7.4e-4 bound); the export must be as close to the exact function as the bound
        # asks, and then differs from the fixture by at most the bound plus the fixture's error.
        exact = exact_logits(load_checkpoint(path), inputs)
        bound += np.abs(official - exact).max()
    for batch in (1, 2, 5):
        images = np.concatenate([inputs] * 3)[:batch]
        logits = session.run(None, {"images": images})[0]
        expected = np.concatenate([official] * 3)[:batch]
        np.testing.assert_allclose(logits, expected, atol=bound, rtol=0)
        assert (logits.argmax(1) == expected.argmax(1)).all()
        if exact is not None:
            np.testing.assert_allclose(logits, np.concatenate([exact] * 3)[:batch], atol=tolerance(meta), rtol=0)


@pytest.mark.parametrize("name", METHODS)
def test_graph_uses_only_tensorrt_ops_and_is_static(exported, name):
    _, meta, _ = load_golden(name)
    model = onnx.load(exported[name].path)
    census = op_census(model)
    assert set(census) <= TENSORRT_ALLOWED_OPS, set(census) - TENSORRT_ALLOWED_OPS
    assert census["LayerNormalization"] >= 24 and "BatchNormalization" not in census
    assert model.opset_import[0].version == 18
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
    batch_dim = inferred.graph.input[0].type.tensor_type.shape.dim[0].dim_param
    token_counts = set()
    for value in list(inferred.graph.value_info) + list(inferred.graph.output):
        dims = value.type.tensor_type.shape.dim
        for position, dim in enumerate(dims):
            assert dim.HasField("dim_value") or dim.dim_param == batch_dim, (value.name, dims)
            if position == 1 and len(dims) == 3:
                token_counts.add(dim.dim_value)
    assert {n for pair in meta["tokens_in_out_per_block"] for n in pair} <= token_counts
    info = read_onnx_metadata(exported[name].path)
    assert [list(p) for p in info.token_schedule] == meta["tokens_in_out_per_block"]
    assert info.method == meta["model"].split("_")[0]


@pytest.mark.parametrize("name", METHODS)
def test_int8_selection_keeps_every_reducer_matmul_float(exported, name):
    model = onnx.load(exported[name].path)
    reducing = tuple(i for i, (n_in, n_out) in enumerate(read_onnx_metadata(exported[name].path).token_schedule) if n_in != n_out)
    quantize, kept = select_int8_nodes(model, reducing)
    by_name = {node.name: node for node in model.graph.node}
    assert not [n for n in quantize if reducer_scope(by_name[n]) is not None]
    reducer_matmuls = [n for n in model.graph.node if n.op_type in ("MatMul", "Gemm") and reducer_scope(n)]
    assert reducer_matmuls and all(any(k.startswith(n.name + " ") for k in kept) for n in reducer_matmuls)
    assert len(quantize) >= 12 * 4  # the blocks' weight GEMMs are still quantized


def test_ats_export_is_refused_before_anything_is_written(tmp_path):
    settings = dict(model="ats_vit_tiny_patch16_224", input_size=224, num_classes=3, keep_rate=[0.5])
    checkpoint = tmp_path / "ats.pth"
    torch.save({"model": {"cls_token": torch.zeros(1, 1, 192)}, "args": argparse.Namespace(**settings)}, checkpoint)
    with pytest.raises(UnsupportedError, match="no static-shape form"):
        export_onnx(checkpoint, tmp_path / "ats.onnx", ExportConfig(), log=lambda _: None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ats.pth"]

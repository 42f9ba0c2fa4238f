"""ONNX export: fidelity to the golden logits, static shapes, TensorRT op set, metadata, atomicity."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from clca_deploy.errors import ClcaDeployError
from clca_deploy.export import ExportConfig, ExportVerificationError, export_onnx
from clca_deploy.metadata import read_onnx_metadata
from clca_deploy.export.ops import TENSORRT_ALLOWED_OPS, op_census
from clca_deploy.export.verify import onnx_session
from tests.conftest import GOLDEN_DIR, LEAVES_DIR, golden_names, load_golden, require_shared
from tests.model.test_golden import _supported, tolerance

SUPPORTED = [n for n in golden_names() if n == "<missing>" or _supported(load_golden(n)[1])]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Each supported golden fixture exported once (dynamic batch), shared by the tests below."""
    require_shared(GOLDEN_DIR)
    folder = tmp_path_factory.mktemp("onnx")
    results = {}
    for name in SUPPORTED:
        path, _, _ = load_golden(name)
        results[name] = export_onnx(path, folder / f"{name}.onnx", ExportConfig(), log=lambda _: None)
    return results


@pytest.mark.parametrize("name", SUPPORTED)
def test_onnx_matches_official_logits_at_batch_1_2_5(exported, name):
    _, meta, io = load_golden(name)
    session = onnx_session(exported[name].path)
    inputs = io["input"]
    for batch in (1, 2, 5):
        images = np.concatenate([inputs] * 3)[:batch]
        expected = np.concatenate([io["logits"]] * 3)[:batch]
        logits = session.run(None, {"images": images})[0]
        np.testing.assert_allclose(logits, expected, atol=tolerance(meta), rtol=0)
        assert (logits.argmax(1) == expected.argmax(1)).all()


@pytest.mark.parametrize("name", SUPPORTED)
def test_graph_uses_only_tensorrt_ops_and_one_node_layernorm(exported, name):
    model = onnx.load(exported[name].path)
    census = op_census(model)
    assert set(census) <= TENSORRT_ALLOWED_OPS, set(census) - TENSORRT_ALLOWED_OPS
    assert census["LayerNormalization"] >= 24  # 2 per block, one node each
    assert "ReduceMean" not in census or census["ReduceMean"] < census["LayerNormalization"]
    assert "BatchNormalization" not in census  # folded into the CLA head's conv
    assert model.opset_import[0].version == 18


@pytest.mark.parametrize("name", SUPPORTED)
def test_token_counts_are_static_in_the_graph(exported, name):
    """After shape inference every tensor has fixed dims except the batch dimension."""
    _, meta, _ = load_golden(name)
    model = onnx.shape_inference.infer_shapes(onnx.load(exported[name].path), strict_mode=True, data_prop=True)
    batch_dim = model.graph.input[0].type.tensor_type.shape.dim[0].dim_param
    assert batch_dim  # dynamic batch
    token_counts = set()
    for value in list(model.graph.value_info) + list(model.graph.output):
        dims = value.type.tensor_type.shape.dim
        for position, dim in enumerate(dims):
            assert dim.HasField("dim_value") or dim.dim_param == batch_dim, (value.name, dims)
            if position == 1 and len(dims) == 3 and dim.HasField("dim_value"):
                token_counts.add(dim.dim_value)
    expected = {n for pair in meta["tokens_in_out_per_block"] for n in pair}
    assert expected <= token_counts


@pytest.mark.parametrize("name", SUPPORTED)
def test_metadata_is_enough_to_preprocess_and_name(exported, name):
    _, meta, _ = load_golden(name)
    info = read_onnx_metadata(exported[name].path)
    assert info.model == meta["model"] and info.method == meta["model"].split("_")[0]
    assert [list(p) for p in info.token_schedule] == meta["tokens_in_out_per_block"]
    assert info.keep_rate == (meta["keep_rate"],) == info.trained_keep_rate
    assert info.preprocess == {
        "img_size": 224, "resize_size": 256, "interpolation": "bicubic",
        "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
    }
    assert info.num_classes == 15 and len(info.source_sha256) == 64


def test_two_exports_are_byte_identical(exported, tmp_path):
    name = SUPPORTED[0]
    path, _, _ = load_golden(name)
    again = export_onnx(path, tmp_path / "again.onnx", ExportConfig(), log=lambda _: None)
    assert again.sha256 == exported[name].sha256
    assert (tmp_path / "again.onnx").read_bytes() == open(exported[name].path, "rb").read()


def test_other_keep_rate_fixed_batch_real_images_and_simplify(tmp_path):
    path, _, _ = load_golden("evit_tiny_clca_k0.1_224")
    data = require_shared(LEAVES_DIR / "test")
    config = ExportConfig(keep_rate=0.25, batch=2, data=data, verify_images=4, simplify=True)
    result = export_onnx(path, tmp_path / "k025.onnx", config, log=lambda _: None)
    assert any("differs from the trained [0.1]" in note for note in result.notes)
    assert result.parity.images == str(data) and result.parity.passed and result.simplified
    assert result.token_schedule[3] == (198, 52)  # ceil(0.25 * 197) + 2
    info = read_onnx_metadata(result.path)
    assert info.keep_rate == (0.25,) and info.trained_keep_rate == (0.1,)
    dims = onnx.load(result.path).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims] == [2, 3, 224, 224]


def test_failed_parity_leaves_nothing_behind(tmp_path, monkeypatch):
    """Simulate an exporter bug (the traced graph's classifier is off by 0.01): the export must fail."""
    import copy

    from clca_deploy.export import onnx as onnx_export

    real_trace = onnx_export._trace_to_onnx

    def buggy_trace(model, example, path, opset, dynamic_batch):
        broken = copy.deepcopy(model)
        with torch.no_grad():
            broken.ifa_head[0][-1].bias += 0.01
        real_trace(broken, example, path, opset, dynamic_batch)

    monkeypatch.setattr(onnx_export, "_trace_to_onnx", buggy_trace)
    path, _, _ = load_golden("topk_tiny_clca_k0.25_224")
    data = require_shared(LEAVES_DIR / "test")  # real images: the fixture's selection is stable there
    with pytest.raises(ExportVerificationError, match="nothing was written"):
        export_onnx(path, tmp_path / "m.onnx", ExportConfig(verify_images=2, data=data), log=lambda _: None)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "args,message",
    [
        (["--keep", "0"], "outside (0, 1]"),
        (["--keep", "1.5"], "outside (0, 1]"),
        (["--img-size", "230"], "multiple of the patch size"),
        (["--opset", "13"], "opset 13"),
    ],
)
def test_cli_bad_settings_exit_2_and_write_nothing(tmp_path, capsys, monkeypatch, args, message):
    path, _, _ = load_golden("evit_tiny_clca_k0.1_224")
    code = run_cli(monkeypatch, ["export", str(path), "-o", str(tmp_path / "m.onnx"), *args])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_cli_bad_paths(tmp_path, capsys, monkeypatch):
    path, _, _ = load_golden("evit_tiny_clca_k0.1_224")
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"\x80\x02not really")
    cases = [
        ([str(tmp_path / "missing.pth"), "-o", str(tmp_path / "a.onnx")], "not found"),
        ([str(corrupt), "-o", str(tmp_path / "b.onnx")], "not a valid checkpoint"),
        ([str(path), "-o", str(tmp_path / "no" / "such" / "c.onnx")], "does not exist"),
    ]
    for args, message in cases:
        assert run_cli(monkeypatch, ["export", *args]) == 2
        assert message in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corrupt.pth"]


def run_cli(monkeypatch, argv: list[str]) -> int:
    import sys

    from clca_deploy import cli

    monkeypatch.setattr(sys, "argv", ["clca-deploy", *argv])
    try:
        cli.main()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def test_not_clca_onnx_metadata_is_a_clear_error(tmp_path):
    graph = onnx.helper.make_graph([], "empty", [], [])
    onnx.save(onnx.helper.make_model(graph), tmp_path / "plain.onnx")
    with pytest.raises(ClcaDeployError, match="no clca-deploy metadata"):
        read_onnx_metadata(tmp_path / "plain.onnx")


def test_grid_sample_in_opset_20_form_is_caught():
    """TensorRT's parser reads opset 20's GridSample mode 'linear' as nearest: the export must refuse it."""
    import onnx
    from onnx import helper

    from clca_deploy.export.ops import misread_grid_samples

    def graph(mode):
        node = helper.make_node("GridSample", ["x", "grid"], ["y"], name="crop", mode=mode, align_corners=1)
        inputs = [helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None) for n in ("x", "grid")]
        return helper.make_model(helper.make_graph([node], "g", inputs, [helper.make_tensor_value_info("y", 1, None)]))

    assert misread_grid_samples(graph("linear")) == ["crop (mode 'linear')"]
    assert misread_grid_samples(graph("bilinear")) == []

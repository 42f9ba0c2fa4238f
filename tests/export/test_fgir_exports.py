"""ILA and GLSim through export: the inference form is the same function, the ONNX matches the official
code's float64 logits, TensorRT's allow-list holds, ILA's BatchNorms are folded, GLSim stays at opset <= 19."""

from __future__ import annotations

import collections

import numpy as np
import pytest
import torch

from clca_deploy.errors import ClcaDeployError
from clca_deploy.export import ExportConfig, export_onnx
from clca_deploy.metadata import read_onnx_metadata
from clca_deploy.model import load_checkpoint
from clca_deploy.model.deploy import for_inference, with_keep_rate
from tests.model.fgir_fixtures import fgir_names, load_fgir_golden

EXPORTED = ["ila_t16_readme_224", "glsim_t16_224"]  # allocs adds only the keep-count adapters: covered in float64 above


@pytest.mark.parametrize("name", fgir_names())
def test_inference_form_is_the_same_function_in_float64(name):
    """BatchNorms folded (ILA) and the static-shape crop (GLSim) change nothing but rounding
    (folded in float64 here, so the fp32 rounding of the folded weights does not hide a wrong fold)."""
    checkpoint, _, io = load_fgir_golden(name)
    deployed = for_inference(load_checkpoint(checkpoint).double())
    with torch.no_grad():
        logits = deployed(torch.from_numpy(io["input"]).double()).numpy()
    assert np.abs(logits - io["logits_fp64"]).max() < 1e-9
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in deployed.modules())


@pytest.fixture(scope="module", params=EXPORTED)
def fgir_onnx(request, tmp_path_factory):
    checkpoint, meta, io = load_fgir_golden(request.param)
    path = tmp_path_factory.mktemp("fgir") / f"{request.param}.onnx"
    export_onnx(checkpoint, path, ExportConfig(), log=lambda _: None)
    return request.param, path, meta, io


def test_onnx_matches_the_official_float64_logits(fgir_onnx):
    import onnxruntime as ort

    _, path, _, io = fgir_onnx
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    logits = session.run(None, {"images": io["input"]})[0]
    assert np.abs(logits - io["logits_fp64"]).max() < 1e-4
    assert logits.argmax(1).tolist() == io["logits_fp64"].argmax(1).tolist()


def test_onnx_graph_and_metadata(fgir_onnx):
    import onnx

    name, path, meta, _ = fgir_onnx
    model = onnx.load(str(path), load_external_data=False)
    ops = collections.Counter(node.op_type for node in model.graph.node)
    assert ops["BatchNormalization"] == 0
    info = read_onnx_metadata(path)
    family = "glsim" if name.startswith("glsim") else "ila"
    assert (info.family, info.method, info.img_size, info.num_classes) == (family, family, 224, 15)
    # The official test transform: square resize to int(1.34 * 224) = 300, not CLCA's 256.
    assert info.preprocess["resize_size"] == 300
    if family == "glsim":
        grid = [node for node in model.graph.node if node.op_type == "GridSample"]
        assert len(grid) == 1 and {a.name: a for a in grid[0].attribute}["mode"].s == b"bilinear"
        assert max(entry.version for entry in model.opset_import if entry.domain == "") <= 19
    else:
        schedule = [list(pair) for pair in info.token_schedule]
        assert schedule == meta["tokens_in_out_per_block"]


def test_glsim_refuses_opset_20_before_exporting(tmp_path):
    checkpoint, _, _ = load_fgir_golden("glsim_t16_224")
    with pytest.raises(ClcaDeployError, match="--opset 19"):
        export_onnx(checkpoint, tmp_path / "g.onnx", ExportConfig(opset=20), log=lambda _: None)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("config", [ExportConfig(keep_rate=0.5), ExportConfig(img_size=384)])
def test_keep_rate_and_size_options_are_refused_for_fgir(tmp_path, config):
    checkpoint, _, _ = load_fgir_golden("ila_t16_readme_224")
    with pytest.raises(ClcaDeployError, match="drop the option"):
        export_onnx(checkpoint, tmp_path / "i.onnx", config, log=lambda _: None)
    assert list(tmp_path.iterdir()) == []


def test_with_keep_rate_is_a_no_op_at_the_trained_rate():
    checkpoint, _, _ = load_fgir_golden("ila_t16_readme_224")
    model = load_checkpoint(checkpoint)
    assert with_keep_rate(model, 1.0) is model


def test_exported_fgir_files_run_behind_predict_and_triton_repo(fgir_onnx, leaves_dir, tmp_path):
    """The runtime side needs nothing family-specific: preprocessing and names come from the metadata."""
    from clca_deploy.runtime import open_backend, predict_images
    from clca_deploy.serving import TritonRepoConfig, write_triton_repository

    _, path, _, _ = fgir_onnx
    with open_backend(path) as backend:
        assert backend.description.preprocess["resize_size"] == 300
        run = predict_images(backend, [leaves_dir / "test" / "Acer"], top_k=3, progress=False)
    assert len(run.predictions) >= 1 and len(run.predictions[0].top) == 3
    repository = write_triton_repository(path, tmp_path / "repo", TritonRepoConfig(device="cpu"))
    assert (tmp_path / "repo" / f"{repository.model}_classifier" / "1" / "model.onnx").is_file()

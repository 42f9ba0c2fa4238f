"""GLSim's crop step: the batched static-shape crop equals the official per-image loop, and exports."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from clca_deploy.model.fgir.crop import (
    CROP_SCOPE,
    StaticCrop,
    boxes_from_indices,
    cls_patch_cosine,
    crop_grid,
    official_crops,
    static_crops,
)
from tests.conftest import SHARED, require_shared

PATCH = 16
GLSIM_DIR = SHARED / "fixtures" / "glsim_golden"
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def normalised_images(batch: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """Random images in [0, 1] with the ImageNet normalisation, float64, like GLSim's input."""
    pixels = torch.rand(batch, 3, size, size, generator=generator, dtype=torch.float64)
    return (pixels - MEAN.double()) / STD.double()


def tokens_with_similarity(similarity: torch.Tensor, generator: torch.Generator, dim: int = 24) -> torch.Tensor:
    """Tokens [B, 1 + N, dim] whose CLS-patch cosine similarities are ``similarity`` [B, N].

    CLS lies along e0; patch j is ``s_j e0 + sqrt(1 - s_j^2) u_j`` with u_j a random unit vector
    orthogonal to e0, each token scaled by a random positive norm. The top-k is whatever
    ``similarity`` says, so tests choose the selection (and the box) outright.
    """
    batch, count = similarity.shape
    other = torch.randn(batch, count, dim - 1, generator=generator, dtype=torch.float64)
    other = other / other.norm(dim=-1, keepdim=True)
    patches = torch.cat((similarity[..., None], torch.sqrt(1 - similarity[..., None] ** 2) * other), dim=-1)
    patches = patches * (0.5 + 2 * torch.rand(batch, count, 1, generator=generator, dtype=torch.float64))
    cls = torch.zeros(batch, 1, dim, dtype=torch.float64)
    cls[..., 0] = 0.5 + 2 * torch.rand(batch, 1, generator=generator, dtype=torch.float64)
    return torch.cat((cls, patches), dim=1)


def similarity_selecting(chosen: list[list[int]], count: int, generator: torch.Generator) -> torch.Tensor:
    """Similarities [B, N] whose top-len(chosen[b]) are exactly chosen[b], every gap >= 3e-3."""
    rows = []
    for picks in chosen:
        # distinct levels 1.8 / (N - 1) apart (>= 3e-3 for N <= 576); the chosen get the highest
        levels = torch.linspace(-0.9, 0.9, count, dtype=torch.float64)
        rest = [j for j in range(count) if j not in picks]
        order = torch.randperm(len(rest), generator=generator)
        sim = torch.empty(count, dtype=torch.float64)
        sim[torch.tensor([rest[i] for i in order.tolist()], dtype=torch.long)] = levels[: len(rest)]
        top = levels[len(rest):][torch.randperm(len(picks), generator=generator)]
        sim[torch.tensor(picks, dtype=torch.long)] = top
        rows.append(sim)
    return torch.stack(rows)


def expected_box(picks: list[int], side: int, size: int) -> tuple[int, int, int, int]:
    """The official box arithmetic, in plain Python."""
    rows, cols = [p // side for p in picks], [p % side for p in picks]
    x0, y0 = min(rows) * PATCH, min(cols) * PATCH
    x1 = min(max(max(rows) * PATCH, x0 + PATCH), size)
    y1 = min(max(max(cols) * PATCH, y0 + PATCH), size)
    return x0, x1, y0, y1


def special_selections(side: int, top_k: int) -> list[list[int]]:
    """Selections whose boxes touch the edges or are one patch high or wide."""
    last = side - 1
    corners = [0, last, last * side, last * side + last]
    candidates = [
        [last * side + last],  # the bottom-right patch: x1 = y1 = S, the only box reaching the far edge
        [0],  # the top-left patch
        corners,  # the largest box: [0, S - P] both ways
        [last * side + c for c in range(side)],  # the whole last row: one patch high, reaches S
        [r * side + last for r in range(side)],  # the whole last column
        [3 * side + c for c in range(side)],  # one inner row
        [r * side for r in range(side)],  # the first column
        [5 * side + 7, 6 * side + 8],  # adjacent rows and columns: x1 = x0 + P
        [side * side // 2 + j for j in range(0, side // 2, 2)],  # a scattered run within one row
    ]
    selections = []
    for picks in candidates:
        picks = list(dict.fromkeys(picks))
        if len(picks) >= top_k:
            selections.append(picks[:top_k])
        else:  # pad with the first free patches in raster order (expected_box accounts for them)
            extra = [p for p in range(side * side) if p not in picks][: top_k - len(picks)]
            selections.append(picks + extra)
    return selections


def check_equal(images, tokens, top_k, chosen, side, size):
    ref_crops, ref_boxes = official_crops(images, tokens, top_k, PATCH)
    crops, boxes = static_crops(images, tokens, top_k, PATCH)
    assert ref_boxes.tolist() == [list(expected_box(p, side, size)) for p in chosen]
    assert torch.equal(boxes, ref_boxes)
    assert crops.shape == ref_crops.shape == images.shape
    error = (crops - ref_crops).abs().max().item()
    assert error <= 1e-12, error
    return error


def test_cosine_is_bit_identical_to_torch():
    generator = torch.Generator().manual_seed(0)
    for dtype in (torch.float32, torch.float64):
        tokens = torch.randn(3, 197, 192, generator=generator).to(dtype)
        tokens[1, 0] = 0  # a zero CLS token and a tiny patch token take the eps branch
        tokens[2, 7] = 1e-10
        expected = F.cosine_similarity(tokens[:, :1], tokens[:, 1:], dim=-1)
        assert torch.equal(cls_patch_cosine(tokens), expected)


@pytest.mark.parametrize("size", [224, 384])
@pytest.mark.parametrize("top_k", [1, 8, 20])
def test_static_crops_equal_official_on_random_inputs(size, top_k):
    side = size // PATCH
    count = side * side
    worst = 0.0
    for seed in range(8):
        generator = torch.Generator().manual_seed(1000 * seed + size + top_k)
        for batch in (1, 2, 3, 4):
            chosen = [torch.randperm(count, generator=generator)[:top_k].tolist() for _ in range(batch)]
            images = normalised_images(batch, size, generator)
            tokens = tokens_with_similarity(similarity_selecting(chosen, count, generator), generator)
            worst = max(worst, check_equal(images, tokens, top_k, chosen, side, size))
    assert worst <= 1e-12


@pytest.mark.parametrize("size", [224, 384])
@pytest.mark.parametrize("top_k", [1, 8, 20])
def test_static_crops_equal_official_on_edge_and_single_patch_boxes(size, top_k):
    side = size // PATCH
    selections = special_selections(side, top_k)
    generator = torch.Generator().manual_seed(size * 31 + top_k)
    # all selections in one batch (so different boxes share a batch) and one at a time
    images = normalised_images(len(selections), size, generator)
    tokens = tokens_with_similarity(similarity_selecting(selections, side * side, generator), generator)
    check_equal(images, tokens, top_k, selections, side, size)
    for i, picks in enumerate(selections):
        check_equal(images[i : i + 1], tokens[i : i + 1], top_k, [picks], side, size)
    if top_k == 1:  # every box is a single patch, the last one included (x1 = y1 = S)
        assert all(expected_box(p, side, size)[1] - expected_box(p, side, size)[0] == PATCH for p in selections)


def test_single_pixel_box_matches_interpolate():
    """A 1-pixel-high crop: interpolate's align_corners scale is 0, so is the grid's step."""
    generator = torch.Generator().manual_seed(7)
    images = normalised_images(2, 224, generator)
    boxes = torch.tensor([[0.0, 1.0, 5.0, 6.0], [223.0, 224.0, 100.0, 224.0]], dtype=torch.float64)
    crops = F.grid_sample(images, crop_grid(boxes, 224, 224, 224), mode="bilinear", padding_mode="border", align_corners=True)
    for i, (x0, x1, y0, y1) in enumerate(boxes.long().tolist()):
        expected = F.interpolate(images[i : i + 1, :, x0:x1, y0:y1], size=(224, 224), mode="bilinear", align_corners=True)
        assert (crops[i : i + 1] - expected).abs().max().item() <= 1e-12


# --- the golden fixture of the official GLSim ----------------------------------------------------


@pytest.fixture(scope="module")
def glsim_fixture():
    meta_path = require_shared(GLSIM_DIR / "glsim_t16_224.json")
    meta = json.loads(meta_path.read_text())
    io = dict(np.load(GLSIM_DIR / meta["io"]))
    return meta, io


def test_fixture_boxes_from_its_topk_indices(glsim_fixture):
    meta, _ = glsim_fixture
    size = meta["settings"]["image_size"]
    index = torch.tensor(meta["topk_patch_indices"])
    boxes = boxes_from_indices(index, size // PATCH, PATCH, size, torch.float32)
    assert boxes.long().tolist() == meta["crop_boxes_x0_x1_y0_y1"]


def test_fixture_crops_from_its_boxes(glsim_fixture):
    """grid_sample with the fixture's boxes reproduces the official crops.

    fp64 equals the official interpolate in fp64 (1e-12). Against the fixture's fp32 crops the
    bound is the fixture's own rounding: the official fp32 crops are 2.0e-5 from the exact (fp64)
    crops, and an fp32 grid_sample lands 3.7e-5 from them (4.2e-5 from the fixture): the grid is
    correctly rounded (<= 3.3e-6 px), the rest is grid_sample's own unnormalisation in fp32 times
    the input's steepest edges (up to ~4.7 per pixel after normalisation). 1e-5 is not reachable in
    fp32 by any grid_sample, nor by interpolate in another association order.
    """
    meta, io = glsim_fixture
    images, expected = torch.from_numpy(io["input"]), torch.from_numpy(io["crops"])
    size = images.shape[-1]
    boxes = torch.tensor(meta["crop_boxes_x0_x1_y0_y1"])
    exact = torch.cat(
        [F.interpolate(images.double()[i : i + 1, :, x0:x1, y0:y1], size=(size, size), mode="bilinear", align_corners=True)
         for i, (x0, x1, y0, y1) in enumerate(boxes.tolist())]
    )
    crops = {}
    for dtype in (torch.float32, torch.float64):
        grid = crop_grid(boxes.to(dtype), size, size, size)
        crops[dtype] = F.grid_sample(images.to(dtype), grid, mode="bilinear", padding_mode="border", align_corners=True)
    assert (crops[torch.float64] - exact).abs().max().item() <= 1e-12
    assert (expected.double() - exact).abs().max().item() <= 2.5e-5  # the fixture's own fp32 rounding
    assert (crops[torch.float32].double() - exact).abs().max().item() <= 6e-5
    assert (crops[torch.float32] - expected).abs().max().item() <= 1e-4


def test_static_crops_on_fixture_input_with_its_selection(glsim_fixture):
    """End to end on the real leaf images: tokens whose top-8 is the fixture's gives its boxes."""
    meta, io = glsim_fixture
    images = torch.from_numpy(io["input"])
    size, top_k = images.shape[-1], meta["settings"]["dynamic_top"]
    side = size // PATCH
    generator = torch.Generator().manual_seed(3)
    tokens = tokens_with_similarity(similarity_selecting(meta["topk_patch_indices"], side * side, generator), generator)
    crops, boxes = static_crops(images, tokens.float(), top_k, PATCH)
    assert boxes.tolist() == meta["crop_boxes_x0_x1_y0_y1"]
    assert (crops - torch.from_numpy(io["crops"])).abs().max().item() <= 1e-4
    ref_crops, _ = official_crops(images.double(), tokens, top_k, PATCH)
    crops64, _ = static_crops(images.double(), tokens, top_k, PATCH)
    assert (crops64 - ref_crops).abs().max().item() <= 1e-12


# --- export -----------------------------------------------------------------------------------------


class _TinyGlsimCrop(nn.Module):
    """Tokens from a fixed random patch embedding, then the crop step under ``crop``."""

    def __init__(self, size: int = 224, dim: int = 32, top_k: int = 8) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(11)
        self.embed = nn.Conv2d(3, dim, PATCH, stride=PATCH)
        with torch.no_grad():
            self.embed.weight.copy_(torch.randn(self.embed.weight.shape, generator=generator) / math.sqrt(3 * PATCH * PATCH))
            self.embed.bias.copy_(0.1 * torch.randn(dim, generator=generator))
        self.cls = nn.Parameter(torch.randn(1, 1, dim, generator=generator))
        self.crop = StaticCrop(top_k, PATCH)

    def forward(self, images: torch.Tensor):
        tokens = self.embed(images).flatten(2).transpose(1, 2)
        tokens = torch.cat((self.cls.expand(images.shape[0], -1, -1), tokens), dim=1)
        return self.crop(images, tokens)


def _export(path, opset: int):
    import logging
    import warnings

    model = _TinyGlsimCrop().eval()
    example = torch.randn(2, 3, 224, 224)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
        torch.onnx.export(
            model, (example,), str(path), input_names=["images"], output_names=["crops", "boxes"],
            opset_version=opset, dynamo=True, dynamic_shapes={"images": {0: torch.export.Dim("batch", min=1, max=4096)}},
            external_data=False, optimize=True, verbose=False,
        )
    return model


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    pytest.importorskip("onnxscript")
    import onnx

    path = tmp_path_factory.mktemp("glsim_crop") / "crop.onnx"
    model = _export(path, 19)
    return model, path, onnx.load(str(path))


def _grid_sample_attributes(onnx_model) -> dict:
    import onnx

    (node,) = [n for n in onnx_model.graph.node if n.op_type == "GridSample"]
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def test_export_ops_are_static_and_tensorrt_supported(exported):
    from clca_deploy.export.ops import DATA_DEPENDENT_OPS, disallowed_ops, op_census

    _, _, onnx_model = exported
    census = op_census(onnx_model)
    assert census["GridSample"] == 1 and census["TopK"] == 1
    assert not set(census) & DATA_DEPENDENT_OPS
    assert "AffineGrid" not in census and "GatherND" not in census
    # GridSample (onnx-tensorrt docs/operators.md: FP32, FP16, 4D input) is the only op outside
    # the allow-list; once the list holds it this stays true.
    assert set(disallowed_ops(onnx_model)) <= {"GridSample"}
    assert _grid_sample_attributes(onnx_model) == {"mode": b"bilinear", "align_corners": 1, "padding_mode": b"border"}
    (topk,) = [n for n in onnx_model.graph.node if n.op_type == "TopK"]
    assert {a.name: a.i for a in topk.attribute}.get("largest", 1) == 1
    assert {a.name: a.i for a in topk.attribute}.get("sorted", 1) == 1  # TensorRT requires sorted=1


def test_export_crop_nodes_carry_the_crop_namespace(exported):
    from clca_deploy.calibration.qdq import module_namespace

    _, _, onnx_model = exported
    scope = re.compile(CROP_SCOPE)
    for node in onnx_model.graph.node:
        if node.op_type in ("TopK", "GridSample", "ReduceMin", "ReduceMax", "ReduceL2", "Gather"):
            found = scope.findall(module_namespace(node))
            assert found == ["crop"], (node.name, module_namespace(node))


@pytest.mark.parametrize("batch", [1, 3])
def test_onnxruntime_reproduces_static_crops(exported, batch):
    ort = pytest.importorskip("onnxruntime")
    model, path, _ = exported
    generator = torch.Generator().manual_seed(batch)
    images = normalised_images(batch, 224, generator).float()
    with torch.no_grad():
        crops, boxes = model(images)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    ort_crops, ort_boxes = session.run(None, {"images": images.numpy()})
    assert ort_crops.shape == (batch, 3, 224, 224)
    np.testing.assert_array_equal(ort_boxes, boxes.numpy())
    assert np.abs(ort_crops - crops.numpy()).max() <= 1e-5


def test_opset20_renames_grid_sample_mode_to_linear(tmp_path):
    """Why GLSim exports at opset <= 19: at 20 torch writes mode "linear", which the TensorRT 10
    ONNX parser does not recognise and silently imports as nearest (onnx-tensorrt PR #1060)."""
    pytest.importorskip("onnxscript")
    import onnx

    path = tmp_path / "crop20.onnx"
    _export(path, 20)
    assert _grid_sample_attributes(onnx.load(str(path)))["mode"] == b"linear"

"""GLSim's crop step (arkel23/GLSim, ``ViTGLSim.get_crops``), batched with static shapes.

The official code picks the ``top_k`` patches most similar to the CLS token (cosine similarity
after the final norm), takes the bounding box of their rows and columns and cuts
``images[i, :, x0:x1, y0:y1]`` out of the normalised input, one image at a time, before
resizing it back to (S, S) with ``F.upsample_bilinear`` (bilinear, align_corners=True). The
slice shapes depend on the data, so that loop cannot become a static graph.

``static_crops`` computes the same boxes with TopK, Gather and ReduceMin/Max, and does the crop
and the resize together as ONE ``grid_sample`` whose grid is built arithmetically from the boxes
(no AffineGrid: TensorRT's ONNX parser lacks it). Every shape is static except the batch.

Box convention (the official one): x indexes ROWS (dim -2), y COLUMNS (dim -1); ``x0 = min(row)
* P`` and ``x1 = min(max(max(row) * P, x0 + P), S)``: the end is the *start* of the last
selected row, so that row is cut off unless the box is one patch high.

The grid. With align_corners=True, interpolating a crop of height ``h = x1 - x0`` to S rows
samples crop row ``i * (h - 1) / (S - 1)`` for output row i (torch's scale is 0 when h == 1, and
so is this formula), i.e. image row ``r_i = x0 + i * (x1 - 1 - x0) / (S - 1)``. grid_sample with
align_corners=True maps -1 and +1 to the centres of the first and last pixel of the FULL input,
so the normalised coordinate is ``2 * r_i / (H - 1) - 1`` (``crop_grid`` evaluates it as one
integer ratio, so the fp32 grid is correctly rounded). Columns likewise with y0, y1 and W.
grid_sample's last axis is (x, y) = (column, row): the box's "y" goes first.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

COSINE_EPS = 1e-8  # F.cosine_similarity's default, which the official code uses


def cls_patch_cosine(tokens: torch.Tensor, eps: float = COSINE_EPS) -> torch.Tensor:
    """Cosine similarity of the CLS token with every patch token, [B, N], as torch computes it.

    torch's ``cosine_similarity`` (ATen Distance.cpp) clamps EACH norm at eps separately and
    divides each operand by its own norm before the product: ``sum((a / max(|a|, eps)) *
    (b / max(|b|, eps)))``, not ``a.b / max(|a| |b|, eps)``. Written out the same way (ReduceL2,
    Clip, Div, Mul, ReduceSum in ONNX) it is bit-identical to ``F.cosine_similarity`` in eager.
    """
    cls, patches = tokens[:, :1], tokens[:, 1:]
    cls = cls / torch.linalg.vector_norm(cls, dim=-1, keepdim=True).clamp_min(eps)
    patches = patches / torch.linalg.vector_norm(patches, dim=-1, keepdim=True).clamp_min(eps)
    return (cls * patches).sum(dim=-1)


def _grid_side(tokens: torch.Tensor) -> int:
    side = math.isqrt(tokens.shape[1] - 1)
    if side * side != tokens.shape[1] - 1:
        raise ValueError(f"expected a CLS token plus a square grid of patches, got {tokens.shape[1]} tokens")
    return side


@torch.no_grad()
def official_crops(images: torch.Tensor, tokens: torch.Tensor, top_k: int, patch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The official ``get_crops`` (cos metric), literally: a per-image loop with Python slicing.

    Returns the crops [B, C, S, S] and the boxes [B, 4] as (x0, x1, y0, y1), int64. A reference
    for tests; it cannot be exported to a static graph.
    """
    distances = F.cosine_similarity(tokens[:, :1, :], tokens[:, 1:, :], dim=-1)
    _, ind = distances.topk(top_k, dim=-1, largest=True)
    side = int(math.sqrt(tokens.shape[1] - 1))
    ind_x = torch.div(ind, side, rounding_mode="floor")
    ind_y = ind % side
    x_i, x_f = ind_x.amin(-1) * patch, ind_x.amax(-1) * patch
    y_i, y_f = ind_y.amin(-1) * patch, ind_y.amax(-1) * patch
    size = images.shape[-1]
    crops, boxes = [], []
    for i in range(ind.shape[0]):
        x_0 = max(int(x_i[i]), 0)
        y_0 = max(int(y_i[i]), 0)
        x_1 = min(max(int(x_f[i]), int(x_i[i]) + patch), size)
        y_1 = min(max(int(y_f[i]), int(y_i[i]) + patch), size)
        crop = images[i : i + 1, :, x_0:x_1, y_0:y_1]
        crops.append(F.interpolate(crop, size=(size, size), mode="bilinear", align_corners=True))
        boxes.append((x_0, x_1, y_0, y_1))
    return torch.cat(crops, dim=0), torch.tensor(boxes, dtype=torch.int64, device=images.device)


def boxes_from_indices(index: torch.Tensor, side: int, patch: int, size: int, dtype: torch.dtype) -> torch.Tensor:
    """The official box of each image's selected patches: [B, 4] (x0, x1, y0, y1) in pixels, float.

    ``index`` [B, K] holds flat patch indices on a ``side`` x ``side`` grid. Rows and columns come
    from constant lookup tables (one Gather each) rather than integer floor division, so the
    whole box path stays in float: its values are small integers, exact in fp32.
    """
    positions = torch.arange(side * side, device=index.device)
    row_of = torch.div(positions, side, rounding_mode="floor").to(dtype) * patch
    col_of = (positions % side).to(dtype) * patch
    # index_select on the flat index is one ONNX Gather; ``row_of[index]`` would export as
    # GatherND, which the allow-list does not hold.
    flat = index.reshape(-1)
    rows = row_of.index_select(0, flat).reshape(index.shape[0], -1)
    cols = col_of.index_select(0, flat).reshape(index.shape[0], -1)
    x0, y0 = rows.amin(dim=-1), cols.amin(dim=-1)
    # The official end: max(start of the last selected row, x0 + P), clamped to the image.
    x1 = torch.clamp(torch.maximum(rows.amax(dim=-1), x0 + patch), max=size)
    y1 = torch.clamp(torch.maximum(cols.amax(dim=-1), y0 + patch), max=size)
    return torch.stack((x0, x1, y0, y1), dim=-1)


def crop_boxes(tokens: torch.Tensor, top_k: int, patch: int, size: int) -> torch.Tensor:
    """The official boxes from the final-norm tokens [B, 1 + g*g, D]: [B, 4] (x0, x1, y0, y1), float."""
    _, index = cls_patch_cosine(tokens).topk(top_k, dim=-1, largest=True)  # [B, K]
    return boxes_from_indices(index, _grid_side(tokens), patch, size, tokens.dtype)


def crop_grid(boxes: torch.Tensor, height: int, width: int, size: int) -> torch.Tensor:
    """The grid_sample grid [B, size, size, 2] that cuts each box and resizes it to (size, size).

    ``boxes`` is [B, 4] (x0, x1, y0, y1) in pixels, float. Output row i samples image row
    ``r = x0 + i * (x1 - 1 - x0) / (S - 1)``, normalised over the full height with
    align_corners=True: ``2 * r / (H - 1) - 1``. Put over one denominator,

        g = (2 * (x0 * (S - 1) + i * (x1 - 1 - x0)) - (S - 1) * (H - 1)) / ((S - 1) * (H - 1)),

    numerator and denominator are integers, exact in fp32 (below 2**24 up to S = H = 2896), so
    the only rounding is the final division: the fp32 grid is correctly rounded (<= 3.3e-6 px at
    224), where the textbook ``x0 + scale * i`` then ``* 2 / (H - 1) - 1`` drifts to 3e-5 px.
    Columns likewise with y0, y1 and W; grid_sample's last axis is (column, row).
    """
    x0, x1, y0, y1 = (edge[:, None] for edge in boxes.unbind(dim=-1))  # [B, 1] each
    step = torch.arange(size, device=boxes.device, dtype=boxes.dtype)  # output pixel index i
    rows = (2 * (x0 * (size - 1) + step * (x1 - 1 - x0)) - (size - 1) * (height - 1)) / ((size - 1) * (height - 1))
    cols = (2 * (y0 * (size - 1) + step * (y1 - 1 - y0)) - (size - 1) * (width - 1)) / ((size - 1) * (width - 1))
    batch = boxes.shape[0]
    return torch.stack((cols[:, None, :].expand(batch, size, size), rows[:, :, None].expand(batch, size, size)), dim=-1)


def static_crops(images: torch.Tensor, tokens: torch.Tensor, top_k: int, patch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The official crops [B, C, S, S] and boxes [B, 4] (x0, x1, y0, y1, int64), batched and static.

    Traceable by ``torch.onnx.export(dynamo=True)`` with a dynamic batch: TopK, Gather,
    ReduceMin/Max, elementwise box and grid arithmetic, one GridSample (bilinear,
    align_corners=True). padding_mode "border" only matters where rounding puts a coordinate a
    hair outside [-1, 1] on the last row or column: it clamps there instead of blending in zero.
    Half-precision inputs are cropped in fp32: the grid's integer numerators pass fp16's 65504
    at S = 224, and an fp16 grid is off by up to 0.1 px.
    """
    size = images.shape[-1]
    work = torch.promote_types(images.dtype, torch.float32)  # a no-op (no Cast) for fp32 and fp64
    boxes = crop_boxes(tokens, top_k, patch, size).to(work)
    grid = crop_grid(boxes, images.shape[-2], images.shape[-1], size)
    crops = F.grid_sample(images.to(work), grid, mode="bilinear", padding_mode="border", align_corners=True)
    return crops.to(images.dtype), boxes.to(torch.int64)


class StaticCrop(nn.Module):
    """``static_crops`` as a module, so its exported nodes carry one findable namespace.

    The dynamo exporter records each node's module path in its ``namespace`` metadata prop; a
    model that holds this module as ``crop`` gets ``.../crop: clca_deploy.model.fgir.crop.StaticCrop/...``
    on every node of the step (see ``CROP_SCOPE``), which the FP16 and INT8 passes must keep FP32.
    """

    def __init__(self, top_k: int = 8, patch: int = 16) -> None:
        super().__init__()
        self.top_k, self.patch = top_k, patch

    def forward(self, images: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return static_crops(images, tokens, self.top_k, self.patch)

    def extra_repr(self) -> str:
        return f"top_k={self.top_k}, patch={self.patch}"


# Matches the namespace metadata prop of every exported node of a StaticCrop (any attribute name).
CROP_SCOPE = r"/([\w.]+): clca_deploy\.model\.fgir\.crop\.StaticCrop"

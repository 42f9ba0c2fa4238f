"""GLSim (``ViTGLSim`` of arkel23/GLSim): a global pass, a crop chosen by token similarity, a crop pass, an aggregator.

1. Global pass: the fgir_vit encoder and ``encoder_norm`` on the image.
2. Selection: cosine similarity (eps 1e-8) of the class token to every patch token, top ``dynamic_top``.
3. Box: rows and columns of the selected patches; ``x0 = min(row)*P``, ``x1 = min(max(max(row)*P, x0 + P), S)``,
   the same for y with columns. x indexes rows (dim -2). The end is the *start* of the last
   selected row, so the last row is left out unless the box is one patch tall.
4. Crop: ``images[i, :, x0:x1, y0:y1]`` of the normalised input, resized to S x S bilinearly
   with align_corners=True (the official ``F.upsample_bilinear``).
5. Crop pass: the same embedding, encoder and norm on the crops.
6. Reducer ``cls``: the class token of each view, [b, 2, D] (a Linear only if representation_size != hidden_size).
7. Aggregator: fgir_vit blocks over the 2 tokens, then ``aggregator_norm``; the head reads token 0.

``crop`` is the one step with data-dependent shapes. Here it is the official per-image
loop, the faithful reference; a batched static-shape version can replace the method for export.
``anchor_class_token`` is a parameter that the official forward never uses: it is loaded and ignored.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from clca_deploy.model.fgir.config import FgirConfig
from clca_deploy.model.fgir.crop import StaticCrop
from clca_deploy.model.fgir.vit import Block, Encoder, FgirVit, plain_blocks


def select_patches(tokens: torch.Tensor, top: int) -> torch.Tensor:
    """Indices [b, top] of the patches most cosine-similar to the class token (tokens are normed, CLS first)."""
    similarity = F.cosine_similarity(tokens[:, :1], tokens[:, 1:], dim=-1)
    return similarity.topk(top, dim=-1, largest=True).indices


def crop_boxes(indices: torch.Tensor, grid: int, patch: int, size: int) -> torch.Tensor:
    """[b, 4] int64 boxes (x0, x1, y0, y1) in pixels from patch indices, by the official rule."""
    rows = torch.div(indices, grid, rounding_mode="floor")
    cols = indices % grid
    x0 = rows.min(dim=-1).values * patch
    y0 = cols.min(dim=-1).values * patch
    x1 = torch.minimum(torch.maximum(rows.max(dim=-1).values * patch, x0 + patch), torch.tensor(size))
    y1 = torch.minimum(torch.maximum(cols.max(dim=-1).values * patch, y0 + patch), torch.tensor(size))
    return torch.stack([x0.clamp(min=0), x1, y0.clamp(min=0), y1], dim=-1)


def reference_crop(images: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Each image's box, resized back to the image size: the official per-image loop."""
    size = images.shape[-1]
    crops = []
    for image, (x0, x1, y0, y1) in zip(images, boxes.tolist()):
        crop = image[None, :, x0:x1, y0:y1]
        crops.append(F.interpolate(crop, size=(size, size), mode="bilinear", align_corners=True))
    return torch.cat(crops, dim=0)


class GlsimModel(FgirVit):
    """The official GLSim model: images [b, 3, S, S] -> logits [b, num_classes] (``forward``),
    or (logits, crops, boxes) (``forward_with_crops``; the official eval returns (logits, crops))."""

    def __init__(self, config: FgirConfig):
        super().__init__(config, Encoder(plain_blocks(config.vit)))
        spec, settings = config.vit, config.glsim
        representation = settings.representation_size
        if settings.anchor_class_token:
            self.anchor_class_token = nn.Parameter(torch.zeros(1, 1, spec.hidden_size))
        self.reducer = nn.Linear(spec.hidden_size, representation) if representation != spec.hidden_size else nn.Identity()
        if settings.aggregator:
            self.aggregator = Encoder([
                Block(representation, settings.aggregator_heads, representation * 4, spec.layer_norm_eps)
                for _ in range(settings.aggregator_num_hidden_layers)
            ])
            if settings.aggregator_norm:
                self.aggregator_norm = nn.LayerNorm(representation, eps=spec.layer_norm_eps)
        self.head = nn.Linear(representation, config.num_classes)
        self.cropper: StaticCrop | None = None  # set by for_inference(); holds no weights

    def for_inference(self) -> "GlsimModel":
        """A copy for export that crops with the batched static-shape form (one GridSample) instead of
        the per-image loop. Equal boxes; crops equal within float rounding (model/fgir/crop.py)."""
        deployed = copy.deepcopy(self).eval()
        deployed.cropper = StaticCrop(self.config.glsim.dynamic_top, self.config.vit.patch_size)
        return deployed

    def crop(self, images: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(crops [b, 3, S, S], boxes [b, 4] as x0, x1, y0, y1) from the global pass's normed tokens."""
        if self.cropper is not None:
            return self.cropper(images, tokens)
        config = self.config
        indices = select_patches(tokens, config.glsim.dynamic_top)
        boxes = crop_boxes(indices, config.grid_size, config.vit.patch_size, images.shape[-1])
        return reference_crop(images, boxes), boxes

    def aggregate(self, global_tokens: torch.Tensor, crop_tokens: torch.Tensor) -> torch.Tensor:
        """Logits from the two views' class tokens."""
        x = self.reducer(torch.stack([global_tokens[:, 0], crop_tokens[:, 0]], dim=1))
        aggregator = getattr(self, "aggregator", None)
        if aggregator is not None:
            x = aggregator(x)
            norm = getattr(self, "aggregator_norm", None)
            x = norm(x) if norm is not None else x
        return self.head(x[:, 0])

    def forward_with_crops(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        global_tokens = self.encode(images)
        crops, boxes = self.crop(images, global_tokens)
        return self.aggregate(global_tokens, self.encode(crops)), crops, boxes

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.forward_with_crops(images)[0]

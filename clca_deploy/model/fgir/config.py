"""FgirConfig: every setting that decides what an official ILA or GLSim model computes.

The settings keep the official argument names (``ila_locs``, ``dynamic_top``, ...); reading
them from an official checkpoint, and refusing the options this project does not reproduce,
is ``clca_deploy.model.fgir.checkpoint.config_from_args``. The token schedule is derived
here, and adapter geometries the official code cannot run are refused. No torch here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from clca_deploy.errors import ConfigError, UnsupportedError
from clca_deploy.model.config import check_model_size

ILA = "ila"
GLSIM = "glsim"
# The official ``MEANS['imagenet']`` / ``STDS['imagenet']`` (custom_mean_std is refused).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# The official ViTConfig table: name -> (patch, hidden, intermediate, heads, layers).
VIT_SIZES: dict[str, tuple[int, int, int, int, int]] = {
    **{f"vit_t{p}": (p, 192, 768, 3, 12) for p in (4, 8, 16, 32)},
    **{f"vit_s{p}": (p, 384, 1536, 6, 12) for p in (8, 16, 32)},
    **{f"vit_b{p}": (p, 768, 3072, 12, 12) for p in (8, 16, 32)},
    **{f"vit_l{p}": (p, 1024, 4096, 16, 24) for p in (16, 32)},
    "vit_h14": (14, 1280, 5120, 16, 32),
}
# ILAdapter norms: anything else means no norm in the official code (norm2: not even its GELU).
ADAPTER_NORMS = ("bn", "ln")


@dataclass(frozen=True)
class VitSpec:
    """The fgir_vit encoder's dimensions."""

    name: str
    patch_size: int
    hidden_size: int
    intermediate_size: int
    num_heads: int
    num_layers: int
    layer_norm_eps: float = 1e-12
    encoder_norm: bool = True

    @property
    def kind(self) -> str:
        return "fgir_vit"

    @property
    def embed_dim(self) -> int:
        return self.hidden_size


@dataclass(frozen=True)
class AdapterGeometry:
    """The convolutions of one ILAdapter, as the official module derives them from its options."""

    kernel_size: int
    padding: int
    dilation: int
    ds_conv: str | None  # "dws" | "conv" | "avg_pool" | None: the patch residual's down-sampling
    residual: bool  # the official module adds its input only when it pads or down-samples

    def grid_out(self, grid_in: int) -> int:
        return grid_in + 2 * self.padding - self.dilation * (self.kernel_size - 1)

    def residual_grid(self, grid_in: int) -> int:
        return grid_in + 2 * self.padding - (self.kernel_size - 1) if self.ds_conv else grid_in


@dataclass(frozen=True)
class IlaSettings:
    """``--adapter`` inside the blocks and the inter-layer adapters after them (official arg names)."""

    adapter: str | None = "adapter"
    adapter_path: str = "convpass"
    adapter_dim: int = 8
    adapter_kernel_size: int = 3
    ila: bool = True
    ila_locs: tuple[int, ...] = ()
    ila_ds_locs: tuple[int, ...] = (3, 7)
    ila_cls_conv: bool = True
    ila_ds_conv: bool = True
    ila_ds_conv_type: str = "dws_near_ones_init"
    ila_ds_kernel_size: int = 3
    ila_norm1: str | None = "bn"
    ila_norm2: str | None = "bn"
    ila_norm3: str | None = "bn"
    ila_padding: bool = False
    ila_dilation: int = 1
    ila_dws_conv_groups: int = 1

    @property
    def adapters_in_parallel(self) -> bool:
        """Adapters beside attention/MLP on the normed input (convpass, ours) or after them (pfeiffer)."""
        return self.adapter_path in ("convpass", "ours")

    @property
    def attention_adapter(self) -> bool:
        # The official test is `adapter_path in ('convpass')`: a substring test on a string.
        return bool(self.adapter) and self.adapter_path in "convpass"

    @property
    def ds_conv_kind(self) -> str | None:
        kind = self.ila_ds_conv_type
        if not self.ila_ds_conv:
            return None
        return "dws" if "dws" in kind else kind

    def adapter_plan(self, depth: int) -> tuple[tuple[str, int] | None, ...]:
        """Per block, the adapter that runs after it: ("ila", j), ("ila_ds", j) or None (official if/elif)."""
        plan, level, level_ds = [], 0, 0
        for i in range(depth):
            if self.ila and self.ila_locs and i in self.ila_locs:
                plan.append(("ila", level))
                level += 1
            elif self.ila and self.ila_ds_locs and i in self.ila_ds_locs:
                plan.append(("ila_ds", level_ds))
                level_ds += 1
            else:
                plan.append(None)
        return tuple(plan)

    def geometry(self, down_sampling: bool) -> AdapterGeometry:
        """The convolutions of an ``ila`` (False) or ``ila_ds`` (True) adapter."""
        kernel = self.ila_ds_kernel_size if down_sampling else self.adapter_kernel_size
        # With a class token but no separate 1x1 for it, the official code forces padding.
        pads = (self.ila_padding if down_sampling else True) or not self.ila_cls_conv
        padding = kernel // 2 + (self.ila_dilation - 1) if pads else 0
        ds_conv = self.ds_conv_kind if down_sampling else None
        return AdapterGeometry(kernel, padding, self.ila_dilation, ds_conv, bool(padding) or ds_conv is not None)

    def grid_after(self, down_sampling: bool, grid_in: int) -> int:
        """The patch grid after an adapter; refuses what the official code cannot run."""
        geometry = self.geometry(down_sampling)
        grid_out, kernel = geometry.grid_out(grid_in), geometry.kernel_size
        where = f"{'ila_ds_kernel_size' if down_sampling else 'adapter_kernel_size'}={kernel}"
        if grid_out < 1:
            raise UnsupportedError(f"{where} leaves no patches of a {grid_in}x{grid_in} grid; the official code fails too.")
        if geometry.residual and geometry.residual_grid(grid_in) != grid_out:
            raise UnsupportedError(
                f"ila_dilation={self.ila_dilation} with {where}: the adapter's grid ({grid_out}) differs from its "
                f"residual's ({geometry.residual_grid(grid_in)}), so the official ILAdapter fails."
            )
        if not self.ila_cls_conv and geometry.grid_out(1) != 1:
            raise UnsupportedError(f"ila_cls_conv=False with {where}: the class token's conv output is not 1x1.")
        return grid_out


@dataclass(frozen=True)
class GlsimSettings:
    """ViTGLSim's crop and aggregation settings (official arg names)."""

    dynamic_top: int = 8
    sim_metric: str = "cos"
    reducer: str = "cls"
    representation_size: int = 192
    aggregator: bool = True
    aggregator_num_hidden_layers: int = 1
    aggregator_norm: bool = True
    anchor_class_token: bool = True  # a parameter the forward never uses: loaded and ignored

    @property
    def aggregator_heads(self) -> int:
        return self.representation_size // 64


@dataclass(frozen=True)
class FgirBlockTokens:
    """Sequence lengths around one block: ``stage`` is "encoder" (ILA) or "global", "crop",
    "aggregator" (GLSim); ``tokens_out`` is after the ILA adapter that follows the block."""

    stage: str
    index: int
    tokens_in: int
    tokens_out: int
    adapter: str | None = None  # "ila[j]" or "ila_ds[j]"

    @property
    def tokens_next(self) -> int:
        return self.tokens_out

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "tokens_next": self.tokens_next}


@dataclass(frozen=True)
class FgirConfig:
    """An official ILA or GLSim model. ``model``, ``img_size``, ``num_classes``, ``method`` and
    ``backbone`` carry the names the rest of the pipeline reads from a ClcaConfig."""

    family: str
    model_name: str
    image_size: int
    num_classes: int
    vit: VitSpec
    resize_size: int
    ila: IlaSettings | None = None
    glsim: GlsimSettings | None = None

    def __post_init__(self) -> None:
        if self.family not in (ILA, GLSIM) or (self.ila is None) != (self.family == GLSIM):
            raise ConfigError(f"family {self.family!r} needs exactly its own settings (ila or glsim).")
        patch = self.vit.patch_size
        if self.image_size <= 0 or self.image_size % patch:
            raise UnsupportedError(
                f"image_size {self.image_size} is not a positive multiple of the patch size {patch}; only whole patch grids are supported."
            )
        check_model_size(self.image_size, self.num_classes)
        if self.resize_size < self.image_size:
            raise UnsupportedError(f"test_resize_size {self.resize_size} is below image_size {self.image_size}.")
        if self.glsim is not None and not 1 <= self.glsim.dynamic_top <= self.num_patches:
            raise UnsupportedError(f"dynamic_top={self.glsim.dynamic_top} must be in 1..{self.num_patches} (the patches).")
        self.token_schedule()  # refuses adapter geometries the official code cannot run

    # --- the names the pipeline reads from a ClcaConfig ---------------------------------
    @property
    def model(self) -> str:
        return self.model_name

    @property
    def img_size(self) -> int:
        return self.image_size

    @property
    def method(self) -> str:
        return self.family

    @property
    def backbone(self) -> VitSpec:
        return self.vit

    @property
    def keep_rate(self) -> tuple[float, ...]:
        """(1.0,): ILA and GLSim keep every token by keep rate (ILA's down-sampling is in the schedule)."""
        return (1.0,)

    @property
    def reduction_loc(self) -> tuple[int, ...]:
        """The blocks after which the token count falls: ILA's down-sampling adapters."""
        return tuple(self.ila.ila_ds_locs) if self.ila is not None else ()

    @property
    def grid_size(self) -> int:
        return self.image_size // self.vit.patch_size

    @property
    def num_patches(self) -> int:
        return self.grid_size**2

    def preprocess_settings(self) -> dict[str, Any]:
        """The official test transform, as ``PreprocessConfig.from_dict`` takes it."""
        return {"img_size": self.image_size, "resize_size": self.resize_size, "interpolation": "bicubic",
                "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}

    def token_schedule(self) -> tuple[FgirBlockTokens, ...]:
        """Every block's token counts, exactly as the official forward produces them."""
        depth = self.vit.num_layers
        if self.glsim is not None:
            full = 1 + self.num_patches
            steps = [FgirBlockTokens(stage, i, full, full) for stage in ("global", "crop") for i in range(depth)]
            if self.glsim.aggregator:
                views = 2  # the cls reducer keeps one token per view: global and crop
                steps += [FgirBlockTokens("aggregator", i, views, views) for i in range(self.glsim.aggregator_num_hidden_layers)]
            return tuple(steps)
        grid, steps = self.grid_size, []
        for i, where in enumerate(self.ila.adapter_plan(depth)):
            tokens_in = 1 + grid**2
            if where is not None:
                grid = self.ila.grid_after(where[0] == "ila_ds", grid)
            label = f"{where[0]}[{where[1]}]" if where else None
            steps.append(FgirBlockTokens("encoder", i, tokens_in, 1 + grid**2, label))
        return tuple(steps)

    def to_dict(self) -> dict[str, Any]:
        data = {"family": self.family, "model": self.model_name, "img_size": self.image_size,
                "num_classes": self.num_classes, "resize_size": self.resize_size, "backbone": asdict(self.vit)}
        if self.ila is not None:
            data["ila"] = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self.ila).items()}
        if self.glsim is not None:
            data["glsim"] = asdict(self.glsim)
        return data

"""ClcaConfig: every setting that decides what function a CLCA model computes."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Mapping

from clca_deploy.errors import ConfigError, UnsupportedError
from clca_deploy.metadata import MAX_CLASSES, MAX_IMG_SIZE, MIN_IMG_SIZE
from clca_deploy.model.backbone import BackboneSpec, parse_backbone
from clca_deploy.model.reduction import METHOD_PREFIXES, NO_STATIC_FORM, reducer_class

PLAIN_METHOD = "vit"
# vit.py hard-codes these locations: they decide where CLC recovers and which CLS feed CLA.
PLAIN_VIT_LOCATIONS = (3, 6, 9)

# What the official model code falls back to, via getattr(args, field, default), when a
# field is missing from a checkpoint's args. Used only for missing fields, and reported.
OFFICIAL_MODEL_DEFAULTS: dict[str, Any] = {
    "keep_rate": [0.9],
    "reduction_loc": [9],
    "clc": False,
    "num_clr": 0,
    "clc_include_gap": False,
    "clc_pool_cls": False,
    "clc_pool_clr": False,
    "clc_recover_at_last": False,
    "ifa_head": False,
    "ifa_dws_conv_groups": 2,
}
# DPC-KNN's own fields and the official fallbacks (getattr(args, 'k_neighbors', 5), ...).
DPCKNN_DEFAULTS: dict[str, Any] = {"k_neighbors": 5, "equal_weight": False}


def check_model_size(img_size: int, num_classes: int) -> None:
    """The bounds an export's metadata must meet (``metadata``), checked when a model is made: a settings
    file asking for a billion classes is refused here, not when torch tries to allocate them."""
    if not MIN_IMG_SIZE <= img_size <= MAX_IMG_SIZE:
        raise ConfigError(f"image size {img_size} is outside {MIN_IMG_SIZE}..{MAX_IMG_SIZE}.")
    if not 1 <= num_classes <= MAX_CLASSES:
        raise ConfigError(f"num_classes must be 1..{MAX_CLASSES}, got {num_classes}.")


def split_model_name(model_name: str) -> tuple[str, str, str | None]:
    """``evit_vit_base_patch16_clip_224.laion2b`` -> (``evit``, ``vit_base_patch16_clip_224``, ``laion2b``)."""
    base, _, tag = model_name.partition(".")
    prefix, _, rest = base.partition("_")
    if prefix in METHOD_PREFIXES and rest:
        return prefix, rest, tag or None
    return PLAIN_METHOD, base, tag or None


@dataclass(frozen=True)
class ClcaConfig:
    """A CLCA model: method + backbone (from the official model string), input size and CLCA flags.

    Field names and meanings follow the official ``train.py`` arguments.
    """

    model: str
    img_size: int
    num_classes: int
    keep_rate: tuple[float, ...] = (1.0,)
    reduction_loc: tuple[int, ...] = (3, 6, 9)
    clc: bool = False
    num_clr: int = 0
    clc_include_gap: bool = True
    clc_pool_cls: bool = False
    clc_pool_clr: bool = False
    clc_recover_at_last: bool = True
    ifa_head: bool = False
    ifa_dws_conv_groups: int = 2
    k_neighbors: int = 5  # DPC-KNN only: neighbours of its density estimate
    equal_weight: bool = False  # DPC-KNN only: plain cluster means, no learned token score
    backbone: BackboneSpec = field(init=False, repr=False, compare=False)
    method: str = field(init=False, compare=False)

    def __post_init__(self) -> None:
        method, timm_name, _ = split_model_name(self.model)
        object.__setattr__(self, "method", method)
        object.__setattr__(self, "backbone", parse_backbone(timm_name))
        object.__setattr__(self, "keep_rate", tuple(float(r) for r in self.keep_rate))
        locations = PLAIN_VIT_LOCATIONS if method == PLAIN_METHOD else self.reduction_loc
        object.__setattr__(self, "reduction_loc", tuple(int(i) for i in locations))
        self._validate()

    def _validate(self) -> None:
        spec = self.backbone
        if self.method in NO_STATIC_FORM:
            raise UnsupportedError(
                "ATS keeps a different number of tokens for every image (its sampling drops repeated "
                "tokens per image), so it has no static-shape form for ONNX/TensorRT; deploy a model "
                "trained with another method, or run ATS in its official PyTorch code."
            )
        if self.method != PLAIN_METHOD:
            reducer_class(self.method).check_keep_rates(self.keep_rate, len(self.reduction_loc))
        if self.img_size <= 0 or self.img_size % spec.patch_size:
            raise ConfigError(
                f"image size {self.img_size} is not a positive multiple of the patch size "
                f"{spec.patch_size}; pick e.g. {max(1, round(self.img_size / spec.patch_size)) * spec.patch_size}."
            )
        check_model_size(self.img_size, self.num_classes)
        for rate in self.keep_rate:
            if not (0.0 < rate <= 1.0) or math.isnan(rate):
                raise ConfigError(f"keep rate {rate} is outside (0, 1]; use e.g. 0.1 to keep 10% of tokens.")
        locs = self.reduction_loc
        if list(locs) != sorted(set(locs)) or any(not 0 <= i < spec.depth - 1 for i in locs):
            raise ConfigError(
                f"reduction locations {list(locs)} must be increasing block indices in "
                f"0..{spec.depth - 2} (0-based; the README uses 3 6 9)."
            )
        if self.method != PLAIN_METHOD and len(self.keep_rate) not in (1, len(locs)):
            raise ConfigError(
                f"{len(self.keep_rate)} keep rates for {len(locs)} reduction locations; "
                "give one rate, or one per location."
            )
        if self.num_clr < 0:
            raise ConfigError(f"num_clr must be >= 0, got {self.num_clr}.")
        if self.clc and not (self.num_clr or self.clc_include_gap):
            raise ConfigError("the cross-layer cache needs carriers: set num_clr > 0 or clc_include_gap.")
        if self.ifa_dws_conv_groups < 0:
            raise ConfigError(f"ifa_dws_conv_groups must be >= 0, got {self.ifa_dws_conv_groups}.")
        if self.k_neighbors < 1:
            raise ConfigError(f"k_neighbors must be >= 1, got {self.k_neighbors}.")

    # --- derived quantities -------------------------------------------------------------
    @property
    def grid_size(self) -> int:
        return self.img_size // self.backbone.patch_size

    @property
    def num_patches(self) -> int:
        return self.grid_size**2

    @property
    def rate_per_location(self) -> tuple[float, ...]:
        """The configured rate at each location, one rate repeated. This is EViT/Top-K's actual
        rate; the other methods derive their counts from it in their own ways (compounded
        kr^(j+1) of the patches, or relative to the current length): see each ``plan``."""
        if len(self.keep_rate) == 1:
            return self.keep_rate * len(self.reduction_loc)
        return self.keep_rate

    @property
    def recovery_layers(self) -> tuple[int, ...]:
        extra = (self.backbone.depth - 2,) if self.clc_recover_at_last else ()
        return self.reduction_loc + extra

    @property
    def cls_feature_layers(self) -> tuple[int, ...]:
        """Blocks whose CLS output feeds the CLA head: each reduction location and the last block."""
        last = self.backbone.depth - 1
        return tuple(i for i in range(self.backbone.depth) if i in self.reduction_loc or i == last)

    def with_keep_rate(self, keep_rate: float | tuple[float, ...]) -> "ClcaConfig":
        rates = (keep_rate,) if isinstance(keep_rate, (int, float)) else tuple(keep_rate)
        return replace(self, keep_rate=rates)

    @property
    def family(self) -> str:
        return "clca"

    def preprocess_settings(self) -> dict[str, Any]:
        """The official CLCA eval transform (resize int(S / 0.875), centre crop), as PreprocessConfig.from_dict takes it."""
        from clca_deploy.data import PreprocessConfig

        return PreprocessConfig.for_size(self.img_size).to_dict()

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("backbone")
        data["method"] = self.method
        data["backbone"] = self.backbone.name
        data["keep_rate"] = list(self.keep_rate)
        data["reduction_loc"] = list(self.reduction_loc)
        return data

    @classmethod
    def from_args(
        cls, args: Mapping[str, Any], overrides: Mapping[str, Any] | None = None
    ) -> tuple["ClcaConfig", tuple[str, ...]]:
        """Config from an official ``train.py`` args mapping; returns it with the fields that
        were missing and took the official model code's fallback."""
        args = {**args, **(overrides or {})}
        for required in ("model", "num_classes"):
            if args.get(required) is None:
                raise ConfigError(f"the checkpoint's args have no '{required}'; pass it explicitly.")
        defaulted = tuple(k for k in OFFICIAL_MODEL_DEFAULTS if k not in args)
        if split_model_name(str(args["model"]))[0] == "dpcknn":
            defaulted += tuple(k for k in DPCKNN_DEFAULTS if k not in args)
        merged = {**OFFICIAL_MODEL_DEFAULTS, **DPCKNN_DEFAULTS, **args}
        img_size = merged.get("input_size") or merged.get("img_size")
        if img_size is None:
            img_size = 224
            defaulted += ("input_size",)
        keep = merged["keep_rate"]
        keep = [keep] if isinstance(keep, (int, float)) else list(keep)
        if not keep:
            # train.py's default is an empty list, which only the plain ViT accepts.
            if split_model_name(str(merged["model"]))[0] != PLAIN_METHOD:
                raise ConfigError("the checkpoint's args have an empty keep_rate; pass the keep rate explicitly.")
            keep = [1.0]
        try:
            config = cls(
                model=str(merged["model"]),
                img_size=int(img_size),
                num_classes=int(merged["num_classes"]),
                keep_rate=tuple(float(r) for r in keep),
                reduction_loc=tuple(int(i) for i in merged["reduction_loc"]),
                clc=bool(merged["clc"]),
                num_clr=int(merged["num_clr"] or 0),
                clc_include_gap=bool(merged["clc_include_gap"]),
                clc_pool_cls=bool(merged["clc_pool_cls"]),
                clc_pool_clr=bool(merged["clc_pool_clr"]),
                clc_recover_at_last=bool(merged["clc_recover_at_last"]),
                ifa_head=bool(merged["ifa_head"]),
                ifa_dws_conv_groups=int(merged["ifa_dws_conv_groups"]),
                k_neighbors=int(merged["k_neighbors"]),
                equal_weight=bool(merged["equal_weight"]),
            )
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"the checkpoint's args cannot describe a model: {exc}") from exc
        return config, defaulted

"""The static token schedule: how many tokens every block sees, known before anything runs.

This is the single source of truth for sequence lengths. The model builds its reducers
and its cross-layer cache from it, the exporter writes it into the ONNX metadata, and
the MAC counter prices it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from clca_deploy.model.config import PLAIN_METHOD, ClcaConfig
from clca_deploy.model.reduction import BEFORE_BLOCK, ReductionSite, reducer_class


@dataclass(frozen=True)
class BlockTokens:
    """Sequence lengths around one block (CLS, CLR and cached tokens included)."""

    index: int
    tokens_arriving: int  # length handed to this block by the previous one
    tokens_in: int  # what attention sees (after a before-block reduction)
    tokens_out: int  # leaving the block (after an in-block reduction): what the MLP saw
    keep: int | None  # what a reduction here keeps (see TokenReducer.plan), None if none
    reinserted: int  # cached tokens appended after this block (a CLC recovery)
    cached: int  # carrier tokens cached after this block
    pool_end: int  # end (exclusive) of the GAP carrier's pooling window after this block
    collects_cls: bool  # this block's CLS output feeds the CLA head
    site: ReductionSite | None = None  # sizes of the reduction at this block's location, if any

    @property
    def tokens_next(self) -> int:
        return self.tokens_out + self.reinserted

    def to_dict(self) -> dict:
        data = asdict(self)
        data.pop("site")
        return {**data, "tokens_next": self.tokens_next}

    def pools_nothing(self, config: ClcaConfig) -> bool:
        """The GAP carrier cached after this block averages an empty window, which the
        official code does without complaint: the mean, and from then on the logits, are NaN."""
        start = 0 if config.clc_pool_cls else 1
        return bool(self.cached) and config.clc_include_gap and self.pool_end <= start


def initial_length(config: ClcaConfig) -> int:
    """CLS + patches + CLR registers."""
    return 1 + config.num_patches + config.num_clr


def token_schedule(config: ClcaConfig) -> tuple[BlockTokens, ...]:
    """Per-block token counts, exactly as the official code produces them."""
    depth = config.backbone.depth
    reducer = None if config.method == PLAIN_METHOD else reducer_class(config.method)
    carriers_per_layer = int(config.clc_include_gap) + config.num_clr
    recovery = config.recovery_layers
    tokens = initial_length(config)
    # The GAP carrier pools up to here; CLR registers stay out unless clc_pool_clr.
    pool_end = tokens - config.num_clr if config.num_clr and not config.clc_pool_clr else tokens
    pending = 0
    suffix = config.num_clr  # DPC-KNN never clusters these trailing tokens
    schedule = []
    for i in range(depth):
        arriving = tokens
        keep = site = None
        if reducer is not None and i in config.reduction_loc:
            site = ReductionSite(
                location_index=config.reduction_loc.index(i),
                num_locations=len(config.reduction_loc),
                keep_rates=config.keep_rate,
                num_patches=config.num_patches,
                initial_tokens=initial_length(config),
                tokens_in=tokens,
                suffix_tokens=suffix,
                clc=config.clc,
                k_neighbors=config.k_neighbors,
                equal_weight=config.equal_weight,
            )
            keep = reducer.plan(site)
        reduced = tokens if keep is None else reducer.output_length(keep, site)
        before = reducer is not None and reducer.stage == BEFORE_BLOCK
        tokens_in = reduced if before else tokens
        tokens_out = reduced
        reinserted = 0
        if config.clc and i in recovery:
            pool_end, reinserted, pending = tokens_out, pending, 0
            suffix += reinserted
        cached = 0
        if config.clc and i < recovery[-1]:
            cached = carriers_per_layer
            pending += cached
        schedule.append(
            BlockTokens(
                index=i,
                tokens_arriving=arriving,
                tokens_in=tokens_in,
                tokens_out=tokens_out,
                keep=keep,
                reinserted=reinserted,
                cached=cached,
                pool_end=pool_end,
                collects_cls=i in config.cls_feature_layers,
                site=site,
            )
        )
        tokens = tokens_out + reinserted
    return tuple(schedule)

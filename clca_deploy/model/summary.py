"""ModelSummary: what ``clca-deploy info`` reports about a checkpoint."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from clca_deploy.model.checkpoint import load_checkpoint
from clca_deploy.model.fgir.config import FgirConfig
from clca_deploy.model.fgir.flops import count_fgir_macs
from clca_deploy.model.flops import count_macs


@dataclass(frozen=True)
class ModelSummary:
    checkpoint: str
    format: str
    settings: dict[str, Any]
    defaulted: tuple[str, ...]
    overridden: tuple[str, ...]
    backbone_kind: str
    class_names: tuple[str, ...] | None
    schedule: tuple[dict[str, Any], ...]
    parameters: int
    gmacs: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize_checkpoint(path: str | Path, **settings: Any) -> ModelSummary:
    """Load a checkpoint and describe it: settings, token schedule, parameters, GMACs at batch 1."""
    model = load_checkpoint(path, **settings)
    config = model.config
    return ModelSummary(
        checkpoint=str(path),
        format=model.source.format,
        settings=config.to_dict(),
        defaulted=model.source.defaulted,
        overridden=model.source.overridden,
        backbone_kind=config.backbone.kind,
        class_names=model.class_names,
        schedule=tuple(step.to_dict() for step in model.token_schedule()),
        parameters=sum(p.numel() for p in model.parameters()),
        # ILA/GLSim settings carry "family" and their preprocessing's resize_size (int(1.34 * S)).
        gmacs=(count_fgir_macs(config) if isinstance(config, FgirConfig) else count_macs(config)).gmacs,
    )

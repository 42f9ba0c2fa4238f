"""Where the official ILA / GLSim golden fixtures live (../shared/fixtures/{ila,glsim}_golden)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from tests.conftest import SHARED, require_shared

FGIR_DIRS = {"ila": SHARED / "fixtures" / "ila_golden", "glsim": SHARED / "fixtures" / "glsim_golden"}


def fgir_names(family: str | None = None) -> list[str]:
    """Fixture names (``ila_t16_readme_224``, ``glsim_t16_224``, ...), or one placeholder that skips/fails."""
    names = []
    for fam, folder in FGIR_DIRS.items():
        if family in (None, fam) and folder.exists():
            names += sorted(p.stem for p in folder.glob("*.json"))
    return names or [f"<missing {family or 'fgir'} fixtures>"]


def fixture_dir(name: str) -> Path:
    return FGIR_DIRS["glsim" if name.startswith("glsim") else "ila"]


def load_fgir_golden(name: str) -> tuple[Path, dict, dict]:
    """(checkpoint path, json, io arrays) of one fixture."""
    folder = fixture_dir(name)
    require_shared(folder / f"{name}.json")
    meta = json.loads((folder / f"{name}.json").read_text())
    return folder / meta["checkpoint"], meta, dict(np.load(folder / meta["io"]))


def read_raw(path: Path) -> dict:
    """The checkpoint as the official train.py wrote it (our safe reader: Namespace allowed)."""
    from clca_deploy.model.checkpoint import read_pickled_checkpoint

    return read_pickled_checkpoint(path)


def save_edited(raw: dict, tmp_path: Path, name: str = "edited.pth", **config_changes) -> Path:
    """A copy of ``raw`` with some config fields changed, saved the way train.py saves."""
    config = argparse.Namespace(**{**vars(raw["config"]), **config_changes})
    path = tmp_path / name
    torch.save({**raw, "config": config}, path)
    return path

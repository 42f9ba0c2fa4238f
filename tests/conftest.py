"""Shared test setup: locations of ../shared fixtures and the gpu/trt auto-skip markers."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Parallel workers share the cores: one math thread each, or their thread pools fight
    # (two 2-thread torch processes on 2 cores run 20-50x slower). Set before torch loads.
    for _variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(_variable, "1")

# Test modules share expensive module fixtures (ONNX exports of 20-120 s), so the README runs
# them with --dist loadscope; more than 4 workers would mostly repeat the session-wide exports.
MAX_TEST_WORKERS = 4


@pytest.hookimpl(optionalhook=True)  # without pytest-xdist installed (a GPU server running -m trt) pytest must still start
def pytest_xdist_auto_num_workers(config) -> int:
    return max(1, min(os.cpu_count() or 1, MAX_TEST_WORKERS))


REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CLCA_SHARED_DIR", REPO_ROOT.parent / "shared"))
GOLDEN_DIR = SHARED / "fixtures" / "clca_golden"
LEAVES_DIR = SHARED / "data" / "leaves"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_shared(path: Path) -> Path:
    """Shared data is skipped with a reason on a developer machine without it, and fails in CI."""
    if not path.exists():
        message = f"{path} is missing (expected ../shared beside the checkout, or CLCA_SHARED_DIR)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


def golden_names() -> list[str]:
    if not GOLDEN_DIR.exists():
        return ["<missing>"]
    return sorted(p.stem for p in GOLDEN_DIR.glob("*.json"))


@pytest.fixture
def golden_dir() -> Path:
    return require_shared(GOLDEN_DIR)


@pytest.fixture
def leaves_dir() -> Path:
    return require_shared(LEAVES_DIR)


def load_golden(name: str) -> tuple[Path, dict, dict]:
    """(checkpoint path, settings json, io arrays) of one golden fixture."""
    import numpy as np

    require_shared(GOLDEN_DIR / f"{name}.json")
    meta = json.loads((GOLDEN_DIR / f"{name}.json").read_text())
    io = dict(np.load(GOLDEN_DIR / meta["io"]))
    return GOLDEN_DIR / meta["checkpoint"], meta, io


def pytest_collection_modifyitems(config, items):
    from clca_deploy.system.gpu import gpu_unavailable_reason
    from clca_deploy.tensorrt.toolkit import tensorrt_unavailable_reason

    gpu_reason = gpu_unavailable_reason(0)
    trt_reason = tensorrt_unavailable_reason(0)
    for item in items:
        if "gpu" in item.keywords and gpu_reason:
            item.add_marker(pytest.mark.skip(reason=gpu_reason))
        if "trt" in item.keywords and trt_reason:
            item.add_marker(pytest.mark.skip(reason=trt_reason))


@pytest.fixture(scope="session")
def plain_onnx(tmp_path_factory):
    """The plain EViT golden checkpoint (fp16 weights, calm attention) and its ONNX export, made once."""
    from clca_deploy.export import ExportConfig, export_onnx

    checkpoint, _, _ = load_golden("evit_deit_tiny_plain_k0.5_224")
    path = tmp_path_factory.mktemp("plain_onnx") / "plain.onnx"
    export_onnx(checkpoint, path, ExportConfig(), log=lambda _: None)
    return checkpoint, path

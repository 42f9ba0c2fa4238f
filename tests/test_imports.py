"""The runtime side imports no torch, and the stages do not import each other (lazy imports included)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

PACKAGE = REPO_ROOT / "clca_deploy"
# What a Jetson or a GPU server imports to run exported files (ARCHITECTURE: no torch there).
RUNTIME_MODULES = [
    "clca_deploy.cli", "clca_deploy.metadata", "clca_deploy.runtime", "clca_deploy.runtime.describe",
    "clca_deploy.runtime.onnxruntime_backend", "clca_deploy.runtime.tensorrt_backend", "clca_deploy.tensorrt.build",
    "clca_deploy.tensorrt.toolkit", "clca_deploy.pipeline.build_trt", "clca_deploy.calibration", "clca_deploy.serving",
    "clca_deploy.bench.run", "clca_deploy.system.doctor", "clca_deploy.data", "clca_deploy.export",
]
BLOCK_TORCH = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('torch', 'timm', 'torchvision', 'onnxscript'):
            raise ImportError('blocked: ' + name)
sys.meta_path.insert(0, Block())
"""


def test_runtime_modules_import_without_torch():
    script = BLOCK_TORCH + "".join(f"import {name}\n" for name in RUNTIME_MODULES)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr[-2000:]


def test_model_import_without_torch_names_the_extra():
    script = BLOCK_TORCH + "import clca_deploy.model\n"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO_ROOT)
    assert done.returncode != 0 and 'pip install "clca-deploy[export]"' in done.stderr


def _imports(path: Path) -> set[str]:
    """Every clca_deploy module a file imports, at the top or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("clca_deploy"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("clca_deploy"))
    return found


def _stage(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


# Stages that must not reach each other in either direction (ISSUE: export, calibration and
# runtime no longer import each other even lazily; TensorRT has one home below the runtime).
SEPARATE = [("export", "calibration"), ("export", "runtime"), ("calibration", "runtime"), ("export", "tensorrt"),
            ("calibration", "tensorrt")]


@pytest.mark.parametrize("first, second", SEPARATE)
def test_stages_do_not_import_each_other(first, second):
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        stage = _stage(".".join(path.relative_to(REPO_ROOT).with_suffix("").parts))
        for imported in _imports(path):
            if {stage, _stage(imported)} == {first, second}:
                offenders.append(f"{path.relative_to(REPO_ROOT)} imports {imported}")
    assert not offenders, offenders


def test_tensorrt_never_imports_torch():
    for path in (PACKAGE / "tensorrt").rglob("*.py"):
        source = path.read_text()
        assert "import torch" not in source and "from torch" not in source, path

"""The runtime side imports no torch; dependencies point down the floors and form no cycle (lazy imports included)."""

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
    "clca_deploy.bench.run", "clca_deploy.doctor.report", "clca_deploy.data", "clca_deploy.export",
    "clca_deploy.runtime.registry", "clca_deploy.bench.power.picker",
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


# The floors, top to bottom (ARCHITECTURE.md, docs/layout.md): a module imports only from its own floor
# or a lower one. Orchestrators and doctor sit above the stages; system holds machine facts only.
FLOORS = [
    {"__main__"},
    {"api", "cli", "cli_bench", "cli_cache", "cli_options", "cli_precision", "cli_tune", "cli_views", "cli_vocabulary"},
    {"pipeline", "doctor"},
    {"bench", "serving", "train", "export", "calibration"},
    {"runtime"},
    {"tensorrt", "model", "data"},
    {"system", "metadata", "extras", "artifacts", "temporaries", "errors", "terminal", "progress", "logs", "statistics", ""},
]


def _floor(module: str) -> int:
    stage = _stage(module)
    return next(level for level, names in enumerate(FLOORS) if stage in names)


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_graph() -> dict[str, set[str]]:
    """module -> the clca_deploy modules it imports (a name imported from a package counts as its submodule)."""
    modules = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        edges = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("clca_deploy"):
                for alias in node.names:
                    sub = f"{node.module}.{alias.name}"
                    edges.add(sub if sub in modules else node.module)
            elif isinstance(node, ast.Import):
                edges.update(alias.name for alias in node.names if alias.name.startswith("clca_deploy"))
        graph[name] = {edge for edge in edges if edge in modules and edge != name}
    return graph


def test_every_stage_has_a_floor():
    assert all(_floor(module) is not None for module in _import_graph())


def test_no_import_runs_up_the_floors():
    offenders = [
        f"{module} imports {imported}"
        for module, edges in _import_graph().items()
        for imported in edges
        if _floor(imported) < _floor(module)
    ]
    assert not offenders, offenders


def test_bench_does_not_import_export():
    graph = _import_graph()
    offenders = [f"{m} imports {i}" for m, edges in graph.items() for i in edges if _stage(m) == "bench" and _stage(i) == "export"]
    assert not offenders, offenders


def test_no_import_cycles():
    graph, state, cycles = _import_graph(), {}, []

    def visit(module: str, trail: list[str]) -> None:
        state[module] = "open"
        for imported in sorted(graph[module]):
            if state.get(imported) == "open":
                cycles.append(trail[trail.index(imported):] + [imported])
            elif imported not in state:
                visit(imported, trail + [imported])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, cycles


def test_the_extras_table_mirrors_pyproject():
    """extras.py names every extra pyproject.toml defines (but dev), and only those."""
    from clca_deploy.extras import EXTRAS, MODULE_EXTRAS

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    defined = set(tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    assert set(EXTRAS) == defined - {"dev"}
    assert set(MODULE_EXTRAS.values()) <= set(EXTRAS)

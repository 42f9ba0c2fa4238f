"""The package as pip builds and runs it: a wheel built without deprecation warnings, with its license,
type hints and metadata; `python -m clca_deploy`; shell completion."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest
from packaging.version import Version

from tests.conftest import REPO_ROOT

SCRIPTS = Path(sys.executable).parent


def _sources(folder: Path) -> Path:
    """What the build reads, copied: pip builds in the source folder, and tests write only to tmp."""
    source = folder / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO_ROOT / name, source / name)
    shutil.copytree(REPO_ROOT / "clca_deploy", source / "clca_deploy", ignore=shutil.ignore_patterns("__pycache__"))
    return source


def _build_options() -> list[str]:
    """Offline where this environment already has what pyproject.toml's build-system asks for."""
    from importlib.metadata import PackageNotFoundError, version


    try:
        if Version(version("setuptools")) >= Version("77"):
            return ["--no-build-isolation", "--check-build-dependencies"]
    except PackageNotFoundError:
        pass
    return []


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, str]:
    """(the wheel, pip's verbose build log) of this checkout."""
    folder = tmp_path_factory.mktemp("wheel")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", *_build_options(), "-w", str(folder / "dist"),
         str(_sources(folder))],
        capture_output=True, text=True, timeout=300,
    )
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-4000:]
    return next((folder / "dist").glob("clca_deploy-*.whl")), log


def test_the_wheel_builds_without_deprecation_warnings(built):
    _, log = built
    # What the old `license = { text = ... }` table printed: "SetuptoolsDeprecationWarning: `project.license` as a
    # TOML table is deprecated ... By 2027-Feb-18, you need to update your project".
    warned = [line for line in log.splitlines() if re.search(r"deprecat|SetuptoolsWarning", line, re.I)]
    assert warned == [], "\n".join(warned)


def test_the_wheel_holds_the_license_the_type_marker_and_every_module(built):
    wheel, _ = built
    names = set(zipfile.ZipFile(wheel).namelist())
    dist_info = next(name.split("/")[0] for name in names if name.endswith(".dist-info/METADATA"))
    assert {"clca_deploy/py.typed", "clca_deploy/__main__.py", "clca_deploy/cli_cache.py",
            f"{dist_info}/licenses/LICENSE"} <= names
    triton = {path.relative_to(REPO_ROOT).as_posix()
              for path in (REPO_ROOT / "clca_deploy" / "serving" / "triton_models").rglob("*.py")}
    assert triton and triton <= names
    license_text = zipfile.ZipFile(wheel).read(f"{dist_info}/licenses/LICENSE").decode()
    assert "Apache License" in license_text and "Version 2.0, January 2004" in license_text
    assert "END OF TERMS AND CONDITIONS" in license_text  # the full text, not a one-line notice


def test_the_wheel_metadata(built):
    wheel, _ = built
    with zipfile.ZipFile(wheel) as archive:
        name = next(name for name in archive.namelist() if name.endswith(".dist-info/METADATA"))
        metadata = Parser().parsestr(archive.read(name).decode())
    assert metadata["License-Expression"] == "Apache-2.0" and metadata.get_all("License-File") == ["LICENSE"]
    assert Version(metadata["Metadata-Version"]) >= Version("2.4")  # the first with License-Expression (PEP 639)
    classifiers = metadata.get_all("Classifier")
    assert "Typing :: Typed" in classifiers and not [c for c in classifiers if c.startswith("License ::")]
    assert any(url.startswith("CLCA (official code), https://github.com/arkel23/CLCA") for url in metadata.get_all("Project-URL"))


@pytest.mark.parametrize("form", ["wheel", "checkout"])
def test_the_install_line_forms_of_the_docs_install_this_package(built, form, tmp_path):
    """`pip install "./dist/clca_deploy-...whl[gpu]"` and `pip install ".[cpu]"` (docs/install.md), offline:
    pip takes the file or folder with its extras as clca-deploy (its dependencies are the matrix's business)."""
    wheel, _ = built
    target = f"{wheel}[gpu,plot]" if form == "wheel" else f"{_sources(tmp_path)}[cpu]"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--no-deps", "--no-index", "--ignore-installed",
         *_build_options(), target], capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0 and "Would install clca-deploy-0.1.0" in done.stdout, done.stdout + done.stderr


def test_python_m_clca_deploy_is_the_command_line():
    done = subprocess.run([sys.executable, "-m", "clca_deploy", "--help"], capture_output=True, text=True,
                          cwd=REPO_ROOT, env={**os.environ, "COLUMNS": "200"})
    assert done.returncode == 0, done.stderr
    assert "python -m clca_deploy [OPTIONS] COMMAND" in done.stdout and re.search(r"│ cache\s", done.stdout)
    version = subprocess.run([sys.executable, "-m", "clca_deploy", "--version"], capture_output=True, text=True)
    assert version.returncode == 0 and version.stdout.startswith("clca-deploy ")


def _console_script() -> Path:
    script = SCRIPTS / "clca-deploy"
    if not script.exists():
        pytest.skip(f"clca-deploy is not installed beside {sys.executable}")
    return script


def test_shell_completion_offers_commands_and_options():
    script = _console_script()
    # --show-completion prints the script for the shell it finds among its parent processes (typer asks
    # shellingham), so it runs under bash here: started from a detached job, pytest has no shell above it.
    # The trailing command keeps bash from exec-ing the script in its own place.
    shown = subprocess.run(["bash", "-c", '"$0" --show-completion; exit $?', str(script)], capture_output=True, text=True)
    assert shown.returncode == 0 and "_CLCA_DEPLOY_COMPLETE=complete_bash" in shown.stdout, shown.stderr
    for words, offered in (("clca-deploy cal", "calibrate"), ("clca-deploy cache --", "--trim")):
        environ = {**os.environ, "_CLCA_DEPLOY_COMPLETE": "complete_bash", "COMP_WORDS": words,
                   "COMP_CWORD": str(len(words.split()) - 1)}
        completed = subprocess.run([str(script)], capture_output=True, text=True, env=environ)
        assert offered in completed.stdout.split(), (words, completed.stdout, completed.stderr)

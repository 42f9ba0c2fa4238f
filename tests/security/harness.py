"""Running the CLI as a hostile or careless user would, and checking that it refused cleanly.

``run_cli`` starts ``python -m clca_deploy.cli`` in a child process under resource limits (address
space, CPU seconds, wall time), so a defect that would eat the machine fails the test instead.
``assert_refused`` checks the contract of a refusal: the documented exit code (2 for bad input), one
line on stderr, no Python traceback. ``Snapshot`` records a folder's files so a test can prove that no
input changed and nothing was written outside the allowed outputs.
"""

from __future__ import annotations

import hashlib
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import REPO_ROOT

DEFAULT_MEMORY_MB = 1536  # address space: enough for onnxruntime and onnx, far below "until the machine dies"
DEFAULT_CPU_S = 120
DEFAULT_WALL_S = 120


@dataclass(frozen=True)
class CliResult:
    """What one CLI run did."""

    returncode: int
    stdout: str
    stderr: str
    seconds: float


def _limits(memory_mb: int | None, cpu_s: int | None):
    def apply() -> None:
        if memory_mb is not None:
            resource.setrlimit(resource.RLIMIT_AS, (memory_mb << 20, memory_mb << 20))
        if cpu_s is not None:
            resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s))

    return apply


def run_cli(
    args: list, cwd: Path, memory_mb: int | None = DEFAULT_MEMORY_MB, cpu_s: int | None = DEFAULT_CPU_S,
    wall_s: float = DEFAULT_WALL_S, env: dict[str, str] | None = None, stdin: bytes | None = None,
) -> CliResult:
    """``clca-deploy ARGS`` in a child process with these limits (None: no limit); torch-side commands
    need ``memory_mb=None`` (PyTorch maps several GiB of address space)."""
    environment = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1", **(env or {})}
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "clca_deploy.cli", *map(str, args)], cwd=cwd, env=environment, input=stdin,
        capture_output=True, timeout=wall_s, preexec_fn=_limits(memory_mb, cpu_s),
    )
    return CliResult(
        done.returncode, done.stdout.decode(errors="replace"), done.stderr.decode(errors="replace"),
        time.perf_counter() - started,
    )


def assert_refused(result: CliResult, *fragments: str, code: int = 2) -> str:
    """Exit ``code``, one line on stderr holding every fragment, no traceback; returns that line."""
    assert result.returncode == code, (result.returncode, result.stderr[-3000:])
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass(frozen=True)
class Snapshot:
    """Every file under a folder (symlinks as their targets' text), to compare before and after a run."""

    root: Path
    files: dict[str, tuple[str, str]]  # relative path -> (kind, content digest or link target)

    @classmethod
    def of(cls, root: Path) -> "Snapshot":
        files: dict[str, tuple[str, str]] = {}
        for folder, dirs, names in os.walk(root):
            for name in [*names, *dirs]:
                path = Path(folder) / name
                relative = str(path.relative_to(root))
                if path.is_symlink():
                    files[relative] = ("link", os.readlink(path))
                elif path.is_file():
                    files[relative] = ("file", _digest(path))
                elif path.is_dir():
                    files[relative] = ("dir", "")
                else:
                    files[relative] = ("special", "")
        return cls(Path(root), files)

    def changes(self, allowed: tuple[str, ...] = ()) -> list[str]:
        """What differs now (added, removed or changed entries), except the ``allowed`` relative paths."""
        now = Snapshot.of(self.root).files
        changed = sorted(
            name for name in set(now) | set(self.files)
            if now.get(name) != self.files.get(name) and not any(name == a or name.startswith(a + "/") for a in allowed)
        )
        return changed

"""The server's private work folder, the clean-up of folders a killed server left, and private files."""

from __future__ import annotations

import fcntl
import os
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from clca_deploy.serving.workdir import (
    LOCK_FILE,
    is_stale,
    private_umask,
    private_workdir,
    remove_stale_workdirs,
    restrict_shared_memory,
)
from tests.serving.conftest import require_module


def dead_pid() -> int:
    """The PID of a process that has exited and been reaped (Linux hands PIDs out in order, so it is not reused at once)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def workdir(parent: Path, pid: int, suffix: str = "a1b2c3d4") -> Path:
    folder = parent / f"clca-serve-{pid}-{suffix}"
    (folder / "pytriton" / "tritonserver").mkdir(parents=True)
    (folder / "pytriton" / "tritonserver" / "lib.so").write_bytes(b"\0" * 1000)
    return folder


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_only_folders_of_dead_servers_of_this_user_are_removed(tmp_path):
    stale = workdir(tmp_path, dead_pid(), "stale")
    live = workdir(tmp_path, os.getpid(), "live")  # a running server's (this process is alive)
    legacy = tmp_path / "clca-serve-k2j4h6g8"  # an older version's name, without a PID: cannot tell
    legacy.mkdir()
    target = workdir(tmp_path / "elsewhere", dead_pid(), "target")
    link = tmp_path / f"clca-serve-{dead_pid()}-link"
    link.symlink_to(target)  # a link is never followed, let alone its target removed
    unrelated = tmp_path / "clca-serving-notes"
    unrelated.mkdir()

    assert remove_stale_workdirs(tmp_path) == [stale]
    assert not stale.exists()
    assert all(path.exists() for path in (live, legacy, link, target, unrelated))
    assert (target / "pytriton" / "tritonserver" / "lib.so").exists()


def test_a_held_lock_keeps_a_folder_whose_pid_looks_dead(tmp_path):
    """A live server in another PID namespace sharing /tmp: its PID means nothing here, its lock does."""
    folder = workdir(tmp_path, dead_pid())
    with open(folder / LOCK_FILE, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        assert not is_stale(folder) and remove_stale_workdirs(tmp_path) == []
    # The holder died (its lock went with it): now the folder is stale.
    assert is_stale(folder) and remove_stale_workdirs(tmp_path) == [folder]


@pytest.mark.skipif(os.getuid() != 0, reason="making a folder of another user needs root")
def test_another_users_folder_is_never_touched(tmp_path):
    folder = workdir(tmp_path, dead_pid())
    os.chown(folder, 54321, 54321)
    assert remove_stale_workdirs(tmp_path) == [] and folder.exists()


def test_private_workdir_is_private_named_locked_and_removed(tmp_path):
    with private_workdir(tmp_path) as folder:
        assert folder.parent == tmp_path and folder.name.startswith(f"clca-serve-{os.getpid()}-")
        assert mode(folder) == 0o700 and mode(folder / LOCK_FILE) == 0o600
        # Locked: even a checker that believed the PID dead leaves it alone.
        assert not is_stale(folder, alive=lambda pid: False)
        assert remove_stale_workdirs(tmp_path, alive=lambda pid: False) == []
    assert not folder.exists()


def test_private_umask_makes_new_files_private_and_is_restored(tmp_path):
    before = os.umask(0o022)
    try:
        with private_umask():
            (tmp_path / "log").write_text("x")
            (tmp_path / "folder").mkdir()
        (tmp_path / "after").write_text("x")
    finally:
        os.umask(before)
    assert mode(tmp_path / "log") == 0o600 and mode(tmp_path / "folder") == 0o700
    assert mode(tmp_path / "after") == 0o644


def test_shared_memory_regions_are_made_private(tmp_path):
    ours = [tmp_path / "pytrtion123-abc-1", tmp_path / "pytrtion123-abc-2"]
    other = tmp_path / "pytrtion456-def-1"  # another server's: not ours to change
    for path in ours + [other]:
        path.write_bytes(b"\0" * 64)
        path.chmod(0o644)  # what Boost.Interprocess sets
    assert restrict_shared_memory("pytrtion123-", tmp_path) == ours
    assert [mode(p) for p in ours] == [0o600, 0o600] and mode(other) == 0o644
    assert restrict_shared_memory("pytrtion123-", tmp_path) == []  # already private


def test_running_server_cleans_up_and_keeps_its_files_private(plain_onnx, tmp_path, monkeypatch):
    """A real server: stale folders go at start, a live one stays; its folder, log and /dev/shm regions are private."""
    require_module("pytriton")
    from clca_deploy.serving.server import ServeConfig, free_port, pytriton_shm_prefix, running_server

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    stale, live = workdir(tmp_path, dead_pid(), "stale"), workdir(tmp_path, os.getpid(), "live")
    lines: list[str] = []
    with running_server(plain_onnx[1], ServeConfig(port=free_port()), log=lines.append) as server:
        assert not stale.exists() and live.exists()
        assert any(line.startswith("removed") and str(stale) in line for line in lines)
        folder = Path(server.repository.path).parent
        assert folder.parent == tmp_path and folder.name.startswith(f"clca-serve-{os.getpid()}-")
        assert mode(folder) == 0o700 and mode(folder / "tritonserver.log") == 0o600
        regions = sorted(Path("/dev/shm").glob(f"{pytriton_shm_prefix()}*"))
        assert len(regions) >= 4  # one per model of the ensemble
        assert {oct(mode(region)) for region in regions} == {oct(0o600)}
    assert not folder.exists() and live.exists()

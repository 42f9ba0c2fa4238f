"""Temporaries a killed writer left beside its outputs are swept by the next write into that folder;
a live writer's temporary (locked), someone else's file, a link or a fresh file never is."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clca_deploy.artifacts import atomic_folder, atomic_output
from clca_deploy.temporaries import STALE_AFTER_S, sweep_stale_temporaries
from clca_deploy.cli import app
from tests.conftest import REPO_ROOT
from tests.test_outputs_safety import write_tiny_onnx

IS_ROOT = os.geteuid() == 0
LONG_AGO = time.time() - 2 * STALE_AFTER_S


def leftover(folder: Path, name: str, content: bytes = b"half a model", old: bool = True) -> Path:
    path = folder / name
    path.write_bytes(content)
    if old:
        os.utime(path, (LONG_AGO, LONG_AGO))
    return path


def old_folder(folder: Path, name: str) -> Path:
    path = folder / name
    path.mkdir()
    (path / "config.pbtxt").write_text("half a repository")
    os.utime(path, (LONG_AGO, LONG_AGO))
    return path


def test_stale_temporaries_of_this_tool_are_swept_and_nothing_else(tmp_path):
    swept = [
        leftover(tmp_path, ".model.onnx.clca-deploy-k3j2h1x_.tmp"),
        leftover(tmp_path, ".other.engine.clca-deploy-abcdefgh.tmp"),  # any output's, in this folder
        leftover(tmp_path, ".clca-deploy-probe.a1b2c3d4", b""),
        leftover(tmp_path, ".out.onnx.zz9_aa00.tmp"),  # an earlier version's, beside the output being written
        old_folder(tmp_path, ".repo.clca-deploy-qwertyui.partial"),
    ]
    kept = [
        leftover(tmp_path, ".model.onnx.clca-deploy-freshone.tmp", old=False),  # may be a writer about to lock it
        leftover(tmp_path, ".notes.txt.abcdefgh.tmp"),  # the old pattern beside another name: maybe another program's
        leftover(tmp_path, "model.onnx.clca-deploy-abcdefgh.tmp"),  # not hidden: not a name this tool gives
        leftover(tmp_path, ".model.onnx.clca-deploy-toolongname.tmp"),
        old_folder(tmp_path, ".gone.clca-deploy-abcdefgh.old"),  # holds the only copy of "gone" (killed mid-swap)
    ]
    removed = sweep_stale_temporaries(tmp_path, writing="out.onnx")
    assert sorted(removed) == sorted(swept)
    assert not any(os.path.lexists(path) for path in swept)
    assert all(path.exists() for path in kept)


def test_an_old_folder_is_swept_once_its_output_is_back(tmp_path):
    (tmp_path / "repo").mkdir()
    holder = old_folder(tmp_path, ".repo.clca-deploy-abcdefgh.old")
    assert sweep_stale_temporaries(tmp_path) == [holder]


def test_a_locked_temporary_survives_however_old(tmp_path):
    """A writer holds flock on its temporary for as long as it lives; an old mtime says nothing then."""
    locked = leftover(tmp_path, ".model.onnx.clca-deploy-lockedxx.tmp")
    folder = old_folder(tmp_path, ".repo.clca-deploy-lockedxx.partial")
    handles = [os.open(locked, os.O_RDONLY), os.open(folder, os.O_RDONLY | os.O_DIRECTORY)]
    try:
        for handle in handles:
            fcntl.flock(handle, fcntl.LOCK_EX)
        assert sweep_stale_temporaries(tmp_path) == []
        assert locked.read_bytes() == b"half a model" and (folder / "config.pbtxt").exists()
    finally:
        for handle in handles:
            os.close(handle)
    assert sorted(sweep_stale_temporaries(tmp_path)) == sorted([locked, folder])  # the lock died with its holder


def test_the_live_writers_own_temporary_is_never_swept(tmp_path):
    output = tmp_path / "out.onnx"
    with atomic_output(output) as tmp:
        tmp.write_bytes(b"being written")
        os.utime(tmp, (LONG_AGO, LONG_AGO))
        assert sweep_stale_temporaries(tmp_path, writing="out.onnx", stale_after=0) == []
        with atomic_output(tmp_path / "out.onnx.json") as sidecar:  # a nested write sweeps the same folder
            sidecar.write_text("{}")
        assert tmp.read_bytes() == b"being written"
    assert output.read_bytes() == b"being written"
    with atomic_folder(tmp_path / "repo") as staging:
        os.utime(staging, (LONG_AGO, LONG_AGO))
        assert sweep_stale_temporaries(tmp_path, stale_after=0) == []
        (staging / "a.txt").write_text("new")
    assert (tmp_path / "repo" / "a.txt").read_text() == "new"


@pytest.mark.parametrize("kind", ["symlink", "fifo", "folder-for-a-file", "file-for-a-folder"])
def test_what_is_not_a_temporary_of_ours_is_never_touched(tmp_path, kind):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    if kind == "symlink":
        path = tmp_path / ".model.onnx.clca-deploy-abcdefgh.tmp"
        path.symlink_to(victim)
    elif kind == "fifo":
        path = tmp_path / ".model.onnx.clca-deploy-abcdefgh.tmp"
        os.mkfifo(path)  # opened by a sweep, it would block: it must not even be opened
    elif kind == "folder-for-a-file":
        path = old_folder(tmp_path, ".model.onnx.clca-deploy-abcdefgh.tmp")
    else:
        path = leftover(tmp_path, ".repo.clca-deploy-abcdefgh.partial")
    os.utime(path, (LONG_AGO, LONG_AGO), follow_symlinks=False)
    assert sweep_stale_temporaries(tmp_path) == []
    assert os.path.lexists(path) and victim.read_text() == "precious"


@pytest.mark.skipif(not IS_ROOT, reason="making a file of another user needs root")
def test_another_users_temporary_is_never_swept(tmp_path):
    theirs = leftover(tmp_path, ".model.onnx.clca-deploy-abcdefgh.tmp")
    os.chown(theirs, 65534, 65534)
    assert sweep_stale_temporaries(tmp_path) == [] and theirs.exists()


def test_a_writer_killed_with_sigkill_leaves_a_temporary_the_next_write_sweeps(tmp_path):
    output = tmp_path / "model.fp16.onnx"
    output.write_bytes(b"the previous model")
    script = (
        "import sys, time\n"
        "from clca_deploy.artifacts import atomic_output\n"
        "writing = atomic_output(sys.argv[1])\n"
        "tmp = writing.__enter__()\n"
        "tmp.write_bytes(b'half a model')\n"
        "print(tmp, flush=True)\n"
        "time.sleep(120)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    writer = subprocess.Popen([sys.executable, "-c", script, str(output)], stdout=subprocess.PIPE, env=env)
    try:
        tmp = Path(writer.stdout.readline().decode().strip())
        os.utime(tmp, (LONG_AGO, LONG_AGO))
        assert sweep_stale_temporaries(tmp_path, stale_after=0) == [] and tmp.exists()  # alive: locked
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=30)
        writer.stdout.close()
    assert tmp.exists() and output.read_bytes() == b"the previous model"
    # The next write into the folder, by any command, removes it.
    model = write_tiny_onnx(tmp_path / "model.onnx")
    result = CliRunner().invoke(app, ["calibrate", str(model), "--fp16", "-o", str(output)])
    assert result.exit_code == 0, result.output
    assert not tmp.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.fp16.onnx", "model.onnx"]

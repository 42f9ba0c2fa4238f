"""Outputs that are not regular files are refused before any work, and `bench --out -` writes to stdout.

Each crafted case runs the real CLI in a child process under the harness's limits: a command that
opened a FIFO for writing would block until the wall-clock limit fails the test, one that replaced a
device link would change the snapshot. Never a real /dev node: FIFOs, sockets and links made in tmp_path,
and links to /dev/null, which are only read with lstat/stat.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from clca_deploy.artifacts import atomic_folder, atomic_output, check_output_path, refuse_unsafe_output
from clca_deploy.errors import ClcaDeployError
from tests.conftest import REPO_ROOT
from tests.security.harness import Snapshot, assert_refused, run_cli
from tests.test_outputs_safety import write_tiny_onnx
from tests.train.conftest import write_image_folder

CLASSES = ["class_00", "class_01", "class_02"]
QUICK_BENCH = ["--batch-sizes", "1", "--warmup", "0", "--iters", "2", "--no-power"]


@pytest.fixture
def work(tmp_path) -> Path:
    """A tiny FP32 model and six labelled images: enough for calibrate --fp16 and bench."""
    write_tiny_onnx(tmp_path / "model.onnx", class_names=CLASSES)
    write_image_folder(tmp_path / "images", classes=3, per_class=2, size=32)
    return tmp_path


def _socket(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    return sock


def make_special(root: Path, kind: str) -> tuple[Path, list]:
    """An output path in ``root`` that is ``kind``; and what must be kept open (a bound socket)."""
    keep: list = []
    path = root / f"out-{kind}"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "socket":
        keep.append(_socket(path))
    elif kind == "folder":
        path.mkdir()
    elif kind == "link-to-devnull":
        path.symlink_to("/dev/null")
    elif kind == "link-to-fifo":
        os.mkfifo(root / "a-fifo")
        path.symlink_to(root / "a-fifo")
    elif kind == "link-to-socket":
        keep.append(_socket(root / "a-socket"))
        path.symlink_to(root / "a-socket")
    elif kind == "link-to-folder":
        (root / "a-folder").mkdir()
        path.symlink_to(root / "a-folder")
    elif kind == "link-to-file":
        (root / "a-file.onnx").write_bytes(b"someone's precious file")
        path.symlink_to(root / "a-file.onnx")
    elif kind == "dangling-link":
        path.symlink_to(root / "nowhere")
    return path, keep


KINDS = {
    "fifo": "is a FIFO, not a regular file",
    "socket": "is a socket, not a regular file",
    "folder": "is a folder",
    "link-to-devnull": "is a symbolic link to /dev/null (a character device)",
    "link-to-fifo": "(a FIFO)",
    "link-to-socket": "(a socket)",
    "link-to-folder": "(a folder)",
    "link-to-file": "(a regular file)",
    "dangling-link": "the link is dangling",
}


def _kind_of(path: Path) -> int:
    return stat.S_IFMT(os.lstat(path).st_mode)


# ---------------------------------------------------------------------------------------------
# the checks themselves, in-process: every kind, for files and for folders


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_check_output_path_refuses_everything_but_a_regular_file(tmp_path, kind):
    path, keep = make_special(tmp_path, kind)
    before = Snapshot.of(tmp_path)
    with pytest.raises(ClcaDeployError) as error:
        check_output_path(path)
    message = str(error.value)
    assert KINDS[kind] in message and "\n" not in message, message
    assert before.changes() == []
    for sock in keep:
        sock.close()


@pytest.mark.parametrize("kind", ["fifo", "socket", "link-to-folder", "link-to-devnull", "dangling-link"])
def test_atomic_folder_replaces_only_a_real_folder(tmp_path, kind):
    path, keep = make_special(tmp_path, kind)
    before = Snapshot.of(tmp_path)
    with pytest.raises(ClcaDeployError, match="symbolic link|not a folder"):
        with atomic_folder(path) as staging:
            (staging / "config.pbtxt").write_text("new")
    assert before.changes() == []
    for sock in keep:
        sock.close()


def test_a_regular_file_and_a_missing_path_are_accepted(tmp_path):
    (tmp_path / "old.onnx").write_bytes(b"old")
    refuse_unsafe_output(tmp_path / "old.onnx")
    refuse_unsafe_output(tmp_path / "new.onnx")
    refuse_unsafe_output(tmp_path, folder=True)


@pytest.mark.parametrize("kind", ["fifo", "link-to-file"])
def test_an_output_made_special_during_the_write_is_still_not_replaced(tmp_path, kind):
    """The check at the start can be raced; the one just before the rename is the last word."""
    output = tmp_path / "out.onnx"
    with pytest.raises(ClcaDeployError, match="FIFO|symbolic link"):
        with atomic_output(output) as tmp:
            tmp.write_bytes(b"new model")
            made, _ = make_special(tmp_path, kind)
            made.rename(output)
    assert _kind_of(output) == (stat.S_IFIFO if kind == "fifo" else stat.S_IFLNK)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


# ---------------------------------------------------------------------------------------------
# the real commands, in a child process


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_calibrate_fp16_refuses_a_special_output_before_any_work(work, kind):
    output, keep = make_special(work, kind)
    mode = _kind_of(output)
    before = Snapshot.of(work)
    result = run_cli(["calibrate", "model.onnx", "--fp16", "-o", output.name], cwd=work, wall_s=60)
    assert_refused(result, KINDS[kind])
    assert before.changes() == [] and _kind_of(output) == mode
    for sock in keep:
        sock.close()


@pytest.mark.parametrize("kind", ["fifo", "socket", "link-to-devnull", "link-to-fifo", "folder", "link-to-file"])
@pytest.mark.parametrize("option", ["--out", "--plot"])
def test_bench_refuses_a_special_report_or_plot_before_measuring(work, kind, option):
    output, keep = make_special(work, kind)
    before = Snapshot.of(work)
    other = ["--plot", "b.png"] if option == "--out" else ["--out", "b.json"]
    args = ["bench", "--data", "images", "--model", "model.onnx", *QUICK_BENCH, option, output.name, *other]
    result = run_cli(args, cwd=work, wall_s=60)
    assert_refused(result, KINDS[kind])
    assert before.changes() == []
    for sock in keep:
        sock.close()


def test_a_dash_is_refused_where_a_command_writes_files_only(work):
    before = Snapshot.of(work)
    line = assert_refused(run_cli(["calibrate", "model.onnx", "--fp16", "-o", "-"], cwd=work, wall_s=60))
    assert "standard output" in line and str(work / "-") in line
    assert before.changes() == [] and not (work / "-").exists()


def test_triton_repo_never_replaces_a_link_to_a_repository(work):
    repo = work / "repo"
    first = run_cli(["triton-repo", "model.onnx", "-o", "repo"], cwd=work, wall_s=60)
    assert first.returncode == 0, first.stderr
    (work / "link").symlink_to(repo)
    before = Snapshot.of(work)
    result = run_cli(["triton-repo", "model.onnx", "-o", "link", "--overwrite"], cwd=work, wall_s=60)
    assert_refused(result, "is a symbolic link to", "(a folder)")
    assert before.changes() == []


def test_bench_out_dash_writes_the_json_to_stdout_and_the_table_to_stderr(work):
    before = Snapshot.of(work)
    result = run_cli(["bench", "--data", "images", "--model", "model.onnx", *QUICK_BENCH, "--out", "-"], cwd=work)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)  # nothing but the report on stdout
    assert [row["status"] for row in report["results"]] == ["ok"]
    assert "clca-deploy bench" in result.stderr and "p50" in result.stderr  # the table
    assert before.changes() == [] and not (work / "-").exists() and not (work / "-.png").exists()


def test_bench_out_dash_draws_a_plot_only_when_asked(work):
    before = Snapshot.of(work)
    args = ["bench", "--data", "images", "--model", "model.onnx", *QUICK_BENCH, "--out", "-", "--plot", "b.png"]
    result = run_cli(args, cwd=work)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout)["format"] == "clca_deploy.bench/1"
    assert "wrote b.png" in result.stderr
    assert before.changes(allowed=("b.png",)) == [] and (work / "b.png").read_bytes()[:4] == b"\x89PNG"


def test_bench_out_dash_into_a_closed_pipe_keeps_the_results(work):
    """The reader of the pipe quit: one error line saying where the report went, no second traceback."""
    temp = work / "tmp"
    temp.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1", "TMPDIR": str(temp)}
    args = ["bench", "--data", "images", "--model", "model.onnx", *QUICK_BENCH, "--out", "-"]
    child = subprocess.Popen(
        [sys.executable, "-m", "clca_deploy.cli", *args], cwd=work, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    child.stdout.close()  # the reader is gone before the first byte
    stderr = child.stderr.read().decode(errors="replace")
    assert child.wait(timeout=120) == 2, stderr
    assert "Traceback" not in stderr and "Exception ignored" not in stderr, stderr
    last = stderr.strip().splitlines()[-1]
    assert "could not write the report to standard output" in last, last
    (rescued,) = temp.glob("clca-deploy-bench-*.json")
    assert str(rescued) in last
    assert [row["status"] for row in json.loads(rescued.read_text())["results"]] == ["ok"]


def test_bench_refuses_a_plot_that_would_overwrite_its_report(work):
    before = Snapshot.of(work)
    args = ["bench", "--data", "images", "--model", "model.onnx", *QUICK_BENCH, "--out", "report.png"]
    assert_refused(run_cli(args, cwd=work, wall_s=60), "the plot would be written over the report")
    assert before.changes() == []

"""A full disk (or quota, read-only file system, denied write) is one line; nothing written is lost.

The disk is filled without root: in-process, every file opened for writing under a chosen folder gets
a ``write`` that fails as a full disk's does (``OSError(ENOSPC)``), while the real commands run through
typer's CliRunner; and in a child process, the kernel itself refuses the writes (RLIMIT_FSIZE: EFBIG).
"""

from __future__ import annotations

import builtins
import errno
import io
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from clca_deploy import artifacts
from clca_deploy.artifacts import WriteFailed, atomic_folder, atomic_output, write_json
from clca_deploy.cli import app
from clca_deploy.errors import ClcaDeployError
from tests.conftest import REPO_ROOT
from tests.security.harness import CliResult, Snapshot, assert_refused
from tests.test_outputs_safety import write_tiny_onnx
from tests.train.conftest import write_image_folder

runner = CliRunner()
QUICK_BENCH = ["--batch-sizes", "1", "--warmup", "0", "--iters", "2", "--no-power"]
OLD = b'{"an old report": "kept byte for byte"}\n'


class _FullFile:
    """A file object whose writes fail as on a full disk; everything else is the real file's."""

    def __init__(self, real, code: int) -> None:
        self._real, self._code = real, code

    def write(self, data):
        raise OSError(self._code, os.strerror(self._code))

    def writelines(self, lines):
        raise OSError(self._code, os.strerror(self._code))

    def __getattr__(self, name):
        return getattr(self._real, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self._real.close()


def fill_disk(monkeypatch, *folders: Path, code: int = errno.ENOSPC) -> None:
    """From now on, files opened for writing under ``folders`` (by name or by descriptor) fail to write."""
    real_open = io.open
    roots = [os.path.realpath(folder) for folder in folders]

    def where(file) -> str | None:
        if isinstance(file, int):
            try:
                return os.readlink(f"/proc/self/fd/{file}")
            except OSError:
                return None
        return os.path.realpath(os.fsdecode(file)) if isinstance(file, (str, bytes, os.PathLike)) else None

    def full_open(file, mode="r", *args, **kwargs):
        handle = real_open(file, mode, *args, **kwargs)
        path = where(file)
        if any(flag in mode for flag in "wax+") and path and any(path.startswith(root + os.sep) for root in roots):
            return _FullFile(handle, code)
        return handle

    monkeypatch.setattr(builtins, "open", full_open)
    monkeypatch.setattr(io, "open", full_open)


def one_line(result) -> str:
    """The CliRunner run ended in a ClcaDeployError of one line; returns it."""
    assert isinstance(result.exception, ClcaDeployError), (result.exit_code, result.output[-3000:], result.exception)
    message = str(result.exception)
    assert "\n" not in message, message
    return message


@pytest.fixture
def work(tmp_path, monkeypatch) -> Path:
    write_tiny_onnx(tmp_path / "model.onnx", class_names=["class_00", "class_01", "class_02"])
    write_image_folder(tmp_path / "images", classes=3, per_class=2, size=32)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "bench.json").write_bytes(OLD)
    (tmp_path / "full" / "bench.png").write_bytes(b"an old plot")
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))  # where rescued reports go
    return tmp_path


# ---------------------------------------------------------------------------------------------
# atomic_output itself


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG, errno.EIO, errno.EACCES])
def test_a_failed_write_is_one_line_naming_the_folder_and_keeps_the_old_file(tmp_path, code):
    output = tmp_path / "out.onnx"
    output.write_bytes(b"old model")
    with pytest.raises(WriteFailed) as error:
        with atomic_output(output) as tmp:
            with open(tmp, "wb") as handle:
                handle.write(b"half a model")
                raise OSError(code, os.strerror(code))  # what write() raises on a full disk
    message = str(error.value)
    assert "\n" not in message and f"could not write {output}" in message and f" {tmp_path};" in message, message
    assert "what was there before is kept as it was" in message
    assert output.read_bytes() == b"old model" and [p.name for p in tmp_path.iterdir()] == ["out.onnx"]
    assert error.value.folder == tmp_path


def test_a_full_disk_found_only_at_fsync_keeps_the_old_file(tmp_path, monkeypatch):
    output = tmp_path / "out.onnx"
    output.write_bytes(b"old model")

    def full(_handle):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(artifacts.os, "fsync", full)
    with pytest.raises(WriteFailed, match="no space left on the device holding"):
        with atomic_output(output) as tmp:
            tmp.write_bytes(b"new model")
    assert output.read_bytes() == b"old model" and [p.name for p in tmp_path.iterdir()] == ["out.onnx"]


def test_a_full_disk_elsewhere_names_that_folder(tmp_path):
    """A library writing its scratch file elsewhere hit the full disk: the line names where."""
    output = tmp_path / "out.onnx"
    with pytest.raises(WriteFailed) as error:
        with atomic_output(output):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/var/scratch/ort.quant.x/augmented.onnx")
    assert "holding /var/scratch/ort.quant.x;" in str(error.value) and "nothing was written" in str(error.value)


def test_a_permission_error_on_an_input_is_not_called_a_write_failure(tmp_path):
    with pytest.raises(PermissionError):
        with atomic_output(tmp_path / "out.onnx"):
            raise PermissionError(errno.EACCES, "Permission denied", "/data/input.onnx")


def test_an_unrelated_os_error_passes_through(tmp_path):
    with pytest.raises(FileNotFoundError):
        with atomic_output(tmp_path / "out.onnx"):
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", "/data/missing.onnx")


def test_atomic_folder_on_a_full_disk_keeps_the_old_folder(tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "config.pbtxt").write_text("old")
    before = Snapshot.of(tmp_path)
    fill_disk(monkeypatch, tmp_path)
    with pytest.raises(WriteFailed, match=f"could not write {repo}: no space left"):
        with atomic_folder(repo) as staging:
            (staging / "config.pbtxt").write_text("new")
    assert before.changes() == []


def test_write_json_on_a_full_disk(tmp_path, monkeypatch):
    (tmp_path / "summary.json").write_bytes(OLD)
    fill_disk(monkeypatch, tmp_path, code=errno.EDQUOT)
    with pytest.raises(WriteFailed, match="disk quota is exceeded"):
        write_json(tmp_path / "summary.json", {"new": True})
    assert (tmp_path / "summary.json").read_bytes() == OLD


# ---------------------------------------------------------------------------------------------
# real commands


def test_bench_on_a_full_disk_saves_its_results_in_the_temp_folder(work, monkeypatch):
    fill_disk(monkeypatch, work / "full")
    args = ["bench", "--data", work / "images", "--model", work / "model.onnx", *QUICK_BENCH, "--out", work / "full" / "bench.json"]
    result = runner.invoke(app, [str(a) for a in args])
    line = one_line(result)
    assert f"could not write {work / 'full' / 'bench.json'}: no space left on the device holding {work / 'full'};" in line
    (rescued,) = (work / "tmp").glob("clca-deploy-bench-*.json")
    assert f"The results were saved in {rescued} instead." in line
    assert "No plot either" in line and "bench.png" in line  # the default plot goes to the same full folder
    report = json.loads(rescued.read_text())
    assert [row["status"] for row in report["results"]] == ["ok"] and report["data"]["num_readable"] == 6
    assert (work / "full" / "bench.json").read_bytes() == OLD
    assert (work / "full" / "bench.png").read_bytes() == b"an old plot"
    assert sorted(p.name for p in (work / "full").iterdir()) == ["bench.json", "bench.png"]  # no temporaries
    assert "clca-deploy bench" in result.stdout  # the table was still printed


def test_bench_on_a_full_disk_and_a_full_temp_folder_prints_the_json(work, monkeypatch):
    fill_disk(monkeypatch, work / "full", work / "tmp")
    args = ["bench", "--data", work / "images", "--model", work / "model.onnx", *QUICK_BENCH,
            "--out", work / "full" / "bench.json", "--plot", work / "b.png"]
    result = runner.invoke(app, [str(a) for a in args])
    line = one_line(result)
    assert "The temp folder could not take them either (No space left on device): their JSON is on standard output." in line
    assert "No plot either" not in line and (work / "b.png").is_file()  # the plot's folder had room
    report, _ = json.JSONDecoder().raw_decode(result.stdout[result.stdout.index("{"):])
    assert [row["status"] for row in report["results"]] == ["ok"]
    assert (work / "full" / "bench.json").read_bytes() == OLD and list((work / "tmp").iterdir()) == []


@pytest.mark.parametrize("command", ["fp16", "json"])
def test_other_writing_commands_on_a_full_disk_are_one_line(work, monkeypatch, command):
    before = Snapshot.of(work / "full")
    fill_disk(monkeypatch, work / "full")
    if command == "fp16":
        args = ["calibrate", work / "model.onnx", "--fp16", "-o", work / "full" / "bench.json"]
    else:  # bench writes its JSON fine elsewhere; only the plot's folder is full
        args = ["bench", "--data", work / "images", "--model", work / "model.onnx", *QUICK_BENCH,
                "--out", work / "b.json", "--plot", work / "full" / "bench.png"]
    result = runner.invoke(app, [str(a) for a in args])
    if command == "fp16":
        assert "could not write" in one_line(result)
    else:
        assert result.exit_code == 0 and "no plot: could not write" in result.output and (work / "b.json").is_file()
    assert before.changes() == []


# ---------------------------------------------------------------------------------------------
# the kernel refuses the writes: a child process with a tiny file size limit


def _run_with_file_size_limit(args: list, cwd: Path, limit: int, env: dict) -> CliResult:
    # SIGXFSZ ignored: the write fails with EFBIG instead of killing the process, as a full disk fails it.
    code = (
        "import resource, signal, sys\n"
        f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "from clca_deploy.cli import main\n"
        f"sys.argv = ['clca-deploy', *{[str(a) for a in args]!r}]\n"
        "main()\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, timeout=120)
    return CliResult(done.returncode, done.stdout.decode(errors="replace"), done.stderr.decode(errors="replace"), 0.0)


@pytest.mark.skipif(not hasattr(signal, "SIGXFSZ"), reason="no RLIMIT_FSIZE signal on this platform")
def test_bench_when_the_kernel_refuses_the_write(work):
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1", "TMPDIR": str(work / "tmp")}
    args = ["bench", "--data", "images", "--model", "model.onnx", *QUICK_BENCH, "--out", "full/bench.json", "--plot", "full/b.png"]
    before = Snapshot.of(work / "full")
    result = _run_with_file_size_limit(args, work, 256, env)  # any report is larger than 256 bytes
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert result.returncode == 2 and "Traceback" not in result.stderr and len(lines) == 1, result.stderr[-3000:]
    assert "file is too large" in lines[0] and "their JSON is on standard output" in lines[0]
    report, _ = json.JSONDecoder().raw_decode(result.stdout[result.stdout.index("{"):])
    assert [row["status"] for row in report["results"]] == ["ok"]
    assert before.changes() == [] and list((work / "tmp").glob("clca-deploy-bench-*")) == []  # no half a rescue


@pytest.mark.skipif(not hasattr(signal, "SIGXFSZ"), reason="no RLIMIT_FSIZE signal on this platform")
def test_calibrate_when_the_kernel_refuses_the_write(work):
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    (work / "full" / "model.fp16.onnx").write_bytes(b"an old fp16 model")
    before = Snapshot.of(work / "full")
    result = _run_with_file_size_limit(["calibrate", "model.onnx", "--fp16", "-o", "full/model.fp16.onnx"], work, 256, env)
    assert_refused(result, "could not write full/model.fp16.onnx", "file is too large", "kept as it was")
    assert before.changes() == []


def _statvfs(real, free_blocks: int):
    def fake(folder):
        info = real(folder)
        values = list(info)
        values[3] = values[4] = free_blocks  # f_bfree, f_bavail
        return os.statvfs_result(values)

    return fake


@pytest.mark.parametrize("free_blocks", [0, 10**6])
def test_a_writer_in_cpp_failing_on_a_full_disk_is_one_line_too(tmp_path, monkeypatch, free_blocks):
    """torch.save and onnxruntime report a failed write as RuntimeError, without errno: the folder's free
    space decides. With room left, the error is not a disk's and passes through unchanged."""
    output = tmp_path / "weights.pth"
    output.write_bytes(b"old weights")
    monkeypatch.setattr(artifacts.os, "statvfs", _statvfs(os.statvfs, free_blocks))
    expected = WriteFailed if free_blocks == 0 else RuntimeError
    with pytest.raises(expected) as error:
        with atomic_output(output):
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 832 vs 726")
    if free_blocks == 0:
        assert "no space left on the device holding" in str(error.value) and "\n" not in str(error.value)
    assert output.read_bytes() == b"old weights" and [p.name for p in tmp_path.iterdir()] == ["weights.pth"]


def test_a_tool_error_is_never_called_a_full_disk(tmp_path, monkeypatch):
    monkeypatch.setattr(artifacts.os, "statvfs", _statvfs(os.statvfs, 0))
    with pytest.raises(ClcaDeployError, match="parity check failed"):
        with atomic_output(tmp_path / "model.onnx"):
            raise ClcaDeployError("parity check failed")

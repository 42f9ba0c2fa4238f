"""Issue 23, calibration: no library writes beside the user's model, the calibration cache is untrusted
and optional, malformed model files are one line, and nothing is left in the temporary folder.

Command-line cases run ``clca-deploy calibrate`` in a child process under the harness's limits; the cache
cases run ``quantize_int8`` in-process (fast, and ``pytest.warns`` sees the warning class) and compare the
result with a calibration that never saw a cache.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import shutil
import subprocess
import tempfile
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from clca_deploy.calibration import CalibrationConfig, quantize_int8
from clca_deploy.calibration.cache import CalibrationCacheWarning
from clca_deploy.calibration.workspace import PREFIX, sweep_stale
from clca_deploy.errors import ClcaDeployError
from tests.security.harness import Snapshot, assert_refused, run_cli
from tests.test_outputs_safety import write_tiny_onnx
from tests.train.conftest import write_image_folder

IS_ROOT = os.geteuid() == 0
NUM_IMAGES = 6


def _quiet(message: str) -> None:
    pass


@pytest.fixture
def work(tmp_path) -> Path:
    """tmp_path/models/model.onnx, tmp_path/images (6 images), empty out/, cache/ and tmp/ (TMPDIR)."""
    (tmp_path / "models").mkdir()
    write_tiny_onnx(tmp_path / "models" / "model.onnx")
    write_image_folder(tmp_path / "images", classes=3, per_class=2, size=32)
    for name in ("out", "cache", "tmp"):
        (tmp_path / name).mkdir()
    return tmp_path


def _env(work: Path) -> dict[str, str]:
    return {"CLCA_DEPLOY_CACHE": str(work / "cache"), "TMPDIR": str(work / "tmp")}


def _calibrate(work: Path, model: Path, output: Path, *extra, **kwargs):
    args = ["calibrate", model, "--data", work / "images", "--num-images", NUM_IMAGES, "-o", output, *extra]
    return run_cli(args, cwd=work, **{"env": _env(work), **kwargs})


def _left_in_tmp(work: Path) -> list[str]:
    """What a run left in its TMPDIR, less onnxruntime's telemetry session file (``.ses``, written when
    onnxruntime is imported, by every command that loads it: not a calibration temporary)."""
    return sorted(p.name for p in (work / "tmp").iterdir() if p.name != ".ses")


def _ok(result) -> None:
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]


@contextlib.contextmanager
def _read_only(folder: Path):
    """``folder`` made read-only for real: chmod, and for root (who ignores modes) the immutable flag.
    Skips the test where neither can be enforced, since it would then prove nothing."""
    folder.chmod(0o555)
    immutable = IS_ROOT and shutil.which("chattr") is not None and subprocess.run(
        ["chattr", "+i", str(folder)], capture_output=True
    ).returncode == 0
    try:
        try:
            (folder / ".probe").write_text("x")
        except OSError:
            pass
        else:
            pytest.skip("cannot make a folder read-only here (root without chattr +i)")
        yield folder
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
        folder.chmod(0o755)


# ---------------------------------------------------------------------------------------------
# item 2: nothing is written beside the user's model


@pytest.mark.parametrize("planted", ["file", "symlink"])
def test_a_planted_inferred_file_or_symlink_survives(work, planted):
    victim = work / "victim.txt"
    victim.write_text("the user's data\n")
    beside = work / "models" / "model-inferred.onnx"  # the name onnxruntime's quantizer used to write and delete
    if planted == "file":
        beside.write_text("a user's file that happens to have this name\n")
    else:
        beside.symlink_to(victim)
    before = Snapshot.of(work)
    _ok(_calibrate(work, work / "models" / "model.onnx", work / "out" / "model.int8.onnx"))
    assert before.changes(allowed=("out", "cache", "tmp/.ses")) == []
    assert (work / "out" / "model.int8.onnx").is_file()
    assert _left_in_tmp(work) == []  # the private scratch folder, and onnxruntime's ort.quant.* in it, are gone


def test_a_read_only_model_folder_calibrates_and_converts(work):
    with _read_only(work / "models"):
        before = Snapshot.of(work / "models")
        _ok(_calibrate(work, work / "models" / "model.onnx", work / "out" / "model.int8.onnx"))
        _ok(run_cli(["calibrate", work / "models" / "model.onnx", "--fp16", "-o", work / "out" / "m.fp16.onnx"],
                    cwd=work, env=_env(work)))
        assert before.changes() == []
    assert (work / "out" / "model.int8.onnx").is_file() and (work / "out" / "m.fp16.onnx").is_file()


def test_two_calibrations_of_one_model_at_once(work):
    outputs = [work / "out" / f"run{i}.int8.onnx" for i in range(2)]
    with ThreadPoolExecutor(2) as pool:  # two child processes, same model, same cache folder
        results = list(pool.map(lambda out: _calibrate(work, work / "models" / "model.onnx", out), outputs))
    for result in results:
        _ok(result)
    assert outputs[0].read_bytes() == outputs[1].read_bytes()
    assert sorted(p.name for p in (work / "models").iterdir()) == ["model.onnx"]
    assert _left_in_tmp(work) == []


# ---------------------------------------------------------------------------------------------
# item 15: scratch folders a killed run left behind are swept; nothing else is


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def _scratch(root: Path, pid: int, age_s: float, now: float) -> Path:
    folder = root / f"{PREFIX}{pid}.x{age_s:.0f}"
    (folder / "ort.quant.abc").mkdir(parents=True)
    (folder / "ort.quant.abc" / "augmented_model.onnx").write_bytes(b"x" * 100)
    os.utime(folder, (now - age_s, now - age_s))
    return folder


def test_sweep_removes_only_this_users_old_folders_of_dead_runs(tmp_path):
    now, day = 2_000_000_000.0, 24 * 3600
    dead = _dead_pid()
    stale = _scratch(tmp_path, dead, 2 * day, now)
    young = _scratch(tmp_path, dead, 60, now)
    running = _scratch(tmp_path, os.getppid(), 2 * day, now)  # a live process: still calibrating
    target = tmp_path / "not-scratch"
    target.mkdir()
    (target / "keep").write_text("x")
    link = tmp_path / f"{PREFIX}{dead}.link"
    link.symlink_to(target)
    os.utime(link, (now - 2 * day, now - 2 * day), follow_symlinks=False)
    others = []
    if IS_ROOT:  # only root can make a folder of another user here
        others.append(_scratch(tmp_path, _dead_pid(), 2 * day, now))
        os.chown(others[0], 65534, 65534)
    assert sweep_stale(tmp_path, now=now) == [stale]
    assert not stale.exists()
    assert all(p.exists() for p in (young, running, link, target / "keep", *others))


def test_calibrate_sweeps_a_killed_runs_folder_from_its_temporary_folder(work):
    stale = _scratch(work / "tmp", _dead_pid(), 3 * 24 * 3600, time.time())
    _ok(_calibrate(work, work / "models" / "model.onnx", work / "out" / "model.int8.onnx"))
    assert not stale.exists()
    assert _left_in_tmp(work) == []


# ---------------------------------------------------------------------------------------------
# item 11: malformed model files are refused in one line, before anything is allocated from them


def _craft(source: Path, kind: str, target: Path) -> Path:
    model = onnx.load(str(source))
    weight = model.graph.initializer[0]
    if kind == "external data":
        onnx.save(model, str(target), save_as_external_data=True, all_tensors_to_one_file=True,
                  location="weights.bin", size_threshold=0)
        return target
    if kind == "huge initializer":
        del weight.dims[:]
        weight.dims.extend([1_000_000, 1_000_000])
    elif kind == "short initializer":
        weight.raw_data = weight.raw_data[:8]
    elif kind == "huge graph shape":
        model.graph.value_info.append(helper.make_tensor_value_info("pooled", TensorProto.FLOAT, [10**6, 10**6, 1, 1]))
    elif kind == "huge constant":
        constant = helper.make_tensor("c", TensorProto.FLOAT, [1], [0.0])
        constant.dims[:] = [10**6, 10**6]  # make_tensor checks sizes; a crafted file does not
        model.graph.node.insert(0, helper.make_node("Constant", [], ["unused"], value=constant))
    onnx.save(model, str(target))
    return target


@pytest.mark.parametrize("kind, fragment", [
    ("external data", "external data file ('weights.bin')"),
    ("huge initializer", "declares 1e+12 elements for tensor 'weight'"),
    ("short initializer", "declares 9 elements for tensor 'weight' but stores 2"),
    ("huge graph shape", "declares 1e+12 elements for graph value 'pooled'"),
    ("huge constant", "declares 1e+12 elements for tensor 'c'"),
])
@pytest.mark.parametrize("precision", ["int8", "fp16"])
def test_malformed_model_files_are_refused_in_one_line(work, kind, fragment, precision):
    crafted = _craft(work / "models" / "model.onnx", kind, work / "models" / "crafted.onnx")
    before = Snapshot.of(work)
    output = work / "out" / "crafted.out.onnx"
    if precision == "int8":
        result = _calibrate(work, crafted, output)
    else:
        result = run_cli(["calibrate", crafted, "--fp16", "-o", output], cwd=work, env=_env(work))
    assert_refused(result, fragment, str(crafted))
    assert before.changes(allowed=("tmp/.ses",)) == []


def test_an_inconsistent_graph_is_refused_before_decoding(work):
    model = onnx.load(str(work / "models" / "model.onnx"))
    model.graph.initializer[0].CopyFrom(numpy_helper.from_array(np.ones((4, 3), np.float32), "weight"))
    broken = work / "models" / "broken.onnx"
    onnx.save(model, str(broken))
    # One line and nothing else: no "calibrating on only 6 images" warning, so no image was decoded.
    assert_refused(_calibrate(work, broken, work / "out" / "b.onnx"), "is not a consistent ONNX graph", "MatMul")
    assert not (work / "out" / "b.onnx").exists() and _left_in_tmp(work) == []


def test_a_graph_onnxruntime_cannot_run_is_one_line_naming_no_scratch_file(work):
    model = onnx.load(str(work / "models" / "model.onnx"))
    model.opset_import.append(helper.make_opsetid("com.example", 1))
    flatten = next(node for node in model.graph.node if node.op_type == "Flatten")
    flatten.op_type, flatten.domain = "Unknown", "com.example"  # shape inference passes; onnxruntime has no kernel
    custom = work / "models" / "custom.onnx"
    onnx.save(model, str(custom))
    quiet = {"PYTHONWARNINGS": "ignore:calibrating on only"}  # the one warning a 6-image calibration gives
    result = _calibrate(work, custom, work / "out" / "c.onnx", env={**_env(work), **quiet})
    line = assert_refused(result, "onnxruntime could not calibrate", "com.example:Unknown", "Export it again")
    assert str(work / "tmp") not in line and "<scratch folder>" in line
    assert not (work / "out" / "c.onnx").exists() and _left_in_tmp(work) == []


def test_a_fixed_batch_larger_than_the_calibration_set_is_refused_before_decoding(work):
    model = onnx.load(str(work / "models" / "model.onnx"))
    for value in (model.graph.input[0], model.graph.output[0]):
        value.type.tensor_type.shape.dim[0].dim_value = 8
    fixed = work / "models" / "fixed8.onnx"
    onnx.save(model, str(fixed))
    assert_refused(_calibrate(work, fixed, work / "out" / "f.onnx"), "takes fixed batches of 8 images but --num-images is 6")
    assert list((work / "cache").iterdir()) == []  # refused before the cache folder was even made


def test_a_calibration_set_too_large_for_memory_is_refused_before_decoding(work):
    model = onnx.load(str(work / "models" / "model.onnx"))
    props = {p.key: p for p in model.metadata_props}
    props["img_size"].value = props["resize_size"].value = "4096"
    for dim in model.graph.input[0].type.tensor_type.shape.dim[2:]:
        dim.dim_value = 4096
    large = work / "models" / "large.onnx"
    onnx.save(model, str(large))
    # 6 images of 3 x 4096 x 4096 float32 are 1.1 GiB: twice that is over the harness's address-space limit.
    assert_refused(_calibrate(work, large, work / "out" / "l.onnx"), "pass a smaller --num-images")
    assert list((work / "cache").iterdir()) == []


def test_file_names_that_are_not_utf8_are_fingerprinted_and_shown(work):
    folder = os.fsencode(work / "images" / "class_00")
    shutil.copy(os.path.join(folder, b"img_000.png"), os.path.join(folder, b"leaf-\xff.png"))
    Path(os.fsdecode(os.path.join(folder, b"broken-\xfe.png"))).write_bytes(b"not an image")
    result = _calibrate(work, work / "models" / "model.onnx", work / "out" / "model.int8.onnx")
    _ok(result)
    assert "broken-\\udcfe.png" in result.stdout  # shown escaped, not a UnicodeEncodeError


# ---------------------------------------------------------------------------------------------
# items 9 and 7: the calibration cache is untrusted and optional


@pytest.fixture
def calibrated(work, monkeypatch):
    """(work, run) where run(use_cache) calibrates in-process into a new file and returns (result, bytes);
    the first value of the fixture is a reference made without any cache."""
    monkeypatch.setenv("CLCA_DEPLOY_CACHE", str(work / "cache"))
    monkeypatch.setattr(tempfile, "tempdir", str(work / "tmp"))  # gettempdir() is cached: TMPDIR is read once
    counter = iter(range(1000))

    def run(use_cache: bool = True):
        output = work / "out" / f"run{next(counter)}.int8.onnx"
        config = CalibrationConfig(data=work / "images", num_images=NUM_IMAGES, use_cache=use_cache)
        result = quantize_int8(work / "models" / "model.onnx", output, config, log=_quiet)
        return result, output.read_bytes()

    with pytest.warns(UserWarning):  # fewer than 64 images, on purpose
        reference = run(use_cache=False)[1]
    return work, run, reference


def _cache_file(work: Path) -> Path:
    (found,) = (work / "cache" / "calibration").glob("*.npz")
    return found


def _rewrite(path: Path, **arrays) -> None:
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)


def _members(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as cached:
        return {name: cached[name] for name in cached.files}


def _npy_declaring(shape: tuple[int, ...]) -> bytes:
    """A .npy whose header declares ``shape`` (float32) over a payload of only 16 bytes."""
    header = {"descr": "<f4", "fortran_order": False, "shape": shape}
    text = repr(header).encode("latin1")
    text += b" " * (63 - (10 + len(text)) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text + b"\0" * 16


def _damage(path: Path, kind: str) -> None:
    good = _members(path)
    images = good["images"]
    if kind == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "wrong shape":
        _rewrite(path, **{**good, "images": images[:, :, :16, :16].copy()})
    elif kind == "NaN":
        _rewrite(path, **{**good, "images": np.where(images > 0, np.float32("nan"), images)})
    elif kind == "out of range":
        _rewrite(path, **{**good, "images": images * 1000})
    elif kind == "not pixel values":
        _rewrite(path, **{**good, "images": images + np.float32(0.001)})
    elif kind == "other fingerprint":
        _rewrite(path, **{**good, "fingerprint": np.array("0" * 32)})
    elif kind == "pickled object":
        with open(path, "wb") as handle:
            np.savez(handle, **{**good, "images": np.array([{"a": 1}], dtype=object)})
    elif kind == "compressed":
        with open(path, "wb") as handle:
            np.savez_compressed(handle, **good)
    elif kind == "huge declared shape":
        with zipfile.ZipFile(path, "w") as archive:
            for name, array in good.items():
                archive.writestr(f"{name}.npy", _npy_declaring((10**12, 3, 32, 32)) if name == "images" else _npy(array))
    elif kind == "folder":
        path.unlink()
        path.mkdir()
    elif kind == "symlink":
        target = path.parent.parent / "elsewhere.npz"
        path.rename(target)
        path.symlink_to(target)


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


CACHE_DAMAGE = [
    ("truncated", "BadZipFile"), ("empty", "BadZipFile"), ("wrong shape", "not float32 [n, 3, 32, 32]"),
    ("NaN", "NaN or infinite"), ("out of range", "cannot produce"), ("not pixel values", "cannot produce"),
    ("other fingerprint", "made for other images"), ("pickled object", "not a plain numeric array"),
    ("compressed", "compressed"), ("huge declared shape", "declares (1000000000000, 3, 32, 32)"),
    ("folder", "not a regular file"), ("symlink", "symbolic links"),  # a FIFO: the command-line test below
]


IN_THE_WAY = ("folder", "symlink")


@pytest.mark.parametrize("kind, reason", CACHE_DAMAGE)
def test_a_bad_cache_is_recomputed_with_a_warning(calibrated, kind, reason):
    work, run, reference = calibrated
    assert run()[0].from_cache is False
    path = _cache_file(work)
    _damage(path, kind)
    elsewhere = work / "cache" / "elsewhere.npz"
    target_before = elsewhere.read_bytes() if elsewhere.exists() else None
    with pytest.warns(CalibrationCacheWarning, match="ignoring the calibration cache") as caught:
        result, data = run()
    messages = " | ".join(str(w.message) for w in caught if w.category is CalibrationCacheWarning)
    assert reason in messages, messages
    assert result.from_cache is False and data == reference
    if target_before is not None:
        assert elsewhere.read_bytes() == target_before  # the link was replaced, never written through
    if kind in IN_THE_WAY:  # outputs never replace a folder, FIFO or link: saving was a second warning
        assert "could not save the calibration cache" in messages
        assert path.is_dir() or path.is_symlink() or path.is_fifo()  # still what was in the way, untouched
    else:  # the fresh set replaced the bad file
        again, data = run()
        assert again.from_cache is True and data == reference


def test_a_fifo_in_place_of_the_cache_neither_blocks_nor_is_replaced(work):
    """Run as a child process: reading a FIFO would block forever, and the harness's wall-clock limit turns
    that into a failure instead of a hung test run."""
    _ok(_calibrate(work, work / "models" / "model.onnx", work / "out" / "first.onnx"))
    (cache,) = (work / "cache" / "calibration").glob("*.npz")
    cache.unlink()
    os.mkfifo(cache)
    result = _calibrate(work, work / "models" / "model.onnx", work / "out" / "second.onnx")
    _ok(result)
    assert "ignoring the calibration cache" in result.stderr and "not a regular file" in result.stderr
    assert cache.is_fifo()
    assert (work / "out" / "first.onnx").read_bytes() == (work / "out" / "second.onnx").read_bytes()


def test_the_cli_says_one_warning_for_an_empty_cache_not_aborted(work):
    _ok(_calibrate(work, work / "models" / "model.onnx", work / "out" / "first.onnx"))
    (cache,) = (work / "cache" / "calibration").glob("*.npz")
    cache.write_bytes(b"")
    result = _calibrate(work, work / "models" / "model.onnx", work / "out" / "second.onnx")
    _ok(result)
    assert "ignoring the calibration cache" in result.stderr and "Aborted" not in result.stderr
    assert (work / "out" / "first.onnx").read_bytes() == (work / "out" / "second.onnx").read_bytes()


def test_a_read_only_cache_folder_is_a_warning(calibrated):
    work, run, reference = calibrated
    (work / "cache" / "calibration").mkdir()
    with _read_only(work / "cache" / "calibration"):
        with pytest.warns(CalibrationCacheWarning, match="Calibrating without saving the cache"):
            result, data = run()
    assert result.from_cache is False and data == reference
    assert list((work / "cache" / "calibration").iterdir()) == []


def test_a_full_disk_while_saving_the_cache_is_a_warning(calibrated, monkeypatch):
    work, run, reference = calibrated

    def disk_full(handle, **arrays):
        handle.write(b"PK\x03\x04 half a cache")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(np, "savez", disk_full)
    with pytest.warns(CalibrationCacheWarning, match="(?i)could not save the calibration cache .*no space left"):
        result, data = run()
    assert result.from_cache is False and data == reference
    assert list((work / "cache" / "calibration").iterdir()) == []  # no partial file, no temporary


def test_a_full_scratch_disk_is_one_line(calibrated, monkeypatch):
    work, run, _ = calibrated

    def disk_full(model, path, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)

    monkeypatch.setattr(onnx, "save", disk_full)
    with pytest.raises(ClcaDeployError, match="cannot write scratch files in .*No space left.*set TMPDIR") as error:
        run(use_cache=False)
    assert "\n" not in str(error.value)
    assert _left_in_tmp(work) == []
    assert sorted(p.name for p in (work / "out").iterdir()) == ["run0.int8.onnx"]  # only the reference


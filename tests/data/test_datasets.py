"""Dataset layouts (ImageFolder, official CSV split, flat folder) and preprocessed batches."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from clca_deploy.data import (
    PreprocessConfig,
    SkippedImage,
    is_image_file,
    iter_batches,
    load_image,
    open_dataset,
    preprocess,
)
from clca_deploy.errors import ClcaDeployError, ConfigError
from tests.conftest import LEAVES_DIR, require_shared

SMALL = PreprocessConfig(img_size=32)


@pytest.fixture
def leaves_test() -> Path:
    return require_shared(LEAVES_DIR / "test")


def copy_leaves(leaves_test: Path, target: Path, names: list[str], count: int = 2) -> list[Path]:
    """Copy the first ``count`` images of each named class into ``target``, flat, and return the copies."""
    target.mkdir(parents=True, exist_ok=True)
    copies = []
    for name in names:
        for source in sorted((leaves_test / name).glob("*.jpg"))[:count]:
            copies.append(Path(shutil.copy(source, target / f"{name}_{source.name}")))
    return copies


def test_leaves_imagefolder_matches_torchvision(leaves_test):
    from torchvision.datasets import ImageFolder

    dataset = open_dataset(leaves_test)
    assert dataset.kind == "imagefolder" and dataset.root == leaves_test
    assert len(dataset) == 180 and dataset.labelled
    assert len(dataset.class_names) == 15 and dataset.class_names[0] == "Acer"
    assert np.bincount([r.label for r in dataset.records]).tolist() == [12] * 15
    reference = ImageFolder(str(leaves_test))
    assert list(dataset.class_names) == reference.classes
    assert [(str(r.path), r.label) for r in dataset.records] == reference.samples


def test_leaves_batches(leaves_test):
    dataset = open_dataset(leaves_test)
    reader = iter_batches(dataset, SMALL, batch_size=64)
    batches = list(reader)
    assert [len(b) for b in batches] == [64, 64, 52] and reader.skipped == []
    assert all(b.images.shape == (len(b), 3, 32, 32) and b.images.dtype == np.float32 for b in batches)
    assert all(b.labels.dtype == np.int64 for b in batches)
    paths = [p for b in batches for p in b.paths]
    assert paths == [r.path for r in dataset.records]
    assert np.concatenate([b.labels for b in batches]).tolist() == [r.label for r in dataset.records]
    # Batches are independent copies, each row the one preprocessing of its own file.
    for batch, row in ((batches[0], 0), (batches[1], 63), (batches[2], 51)):
        np.testing.assert_array_equal(batch.images[row], preprocess(load_image(batch.paths[row]), SMALL))


def test_limit_caps_images(leaves_test):
    reader = iter_batches(open_dataset(leaves_test), SMALL, batch_size=4, limit=10)
    batches = list(reader)
    assert [len(b) for b in batches] == [4, 4, 2]
    assert [b.labels.tolist() for b in batches][-1] == [0, 0]


def test_split_root_is_not_resolved():
    root = require_shared(LEAVES_DIR)
    with pytest.raises(ClcaDeployError, match=r"split folders \(test, train\).*pass the split folder itself"):
        open_dataset(root)


def test_csv_split(tmp_path, leaves_test):
    images = tmp_path / "images"
    copies = {label: copy_leaves(leaves_test, images / f"c{label}", [name]) for label, name in enumerate(["Acer", "Quercus", "Tilia"])}
    # Not in label order, with a blank line, as a hand-edited split may be.
    listed = [(2, copies[2][0]), (0, copies[0][0]), (1, copies[1][1]), (0, copies[0][1])]
    lines = ["class_id,dir"] + [f"{label},{path.relative_to(images)}" for label, path in listed]
    (tmp_path / "test.csv").write_text("\n".join(lines[:3] + [""] + lines[3:]) + "\n")

    dataset = open_dataset(tmp_path, csv="test.csv", image_folder="images")
    assert dataset.kind == "csv" and dataset.class_names is None and dataset.root == tmp_path
    assert [(r.label, r.path) for r in dataset.records] == listed
    batches = list(iter_batches(dataset, SMALL, batch_size=3))
    assert np.concatenate([b.labels for b in batches]).tolist() == [2, 0, 1, 0]
    np.testing.assert_array_equal(batches[1].images[0], preprocess(load_image(listed[3][1]), SMALL))
    # An absolute csv path works from anywhere.
    assert open_dataset(tmp_path, csv=str(tmp_path / "test.csv"), image_folder="images") == dataset


def test_csv_split_errors(tmp_path, leaves_test):
    copy_leaves(leaves_test, tmp_path / "images", ["Acer"], count=1)
    cases = {
        "missing.csv": None,
        "header.csv": "label,path\n0,images/Acer_l2nr005.jpg\n",
        "id.csv": "class_id,dir\nzero,images/Acer_l2nr005.jpg\n",
        "negative.csv": "class_id,dir\n-1,images/Acer_l2nr005.jpg\n",
        "nothing.csv": "class_id,dir\n0,elsewhere/Acer_l2nr005.jpg\n",
    }
    messages = {
        "missing.csv": "not found",
        "header.csv": "expected columns class_id,dir",
        "id.csv": "line 2: class_id 'zero' is not an integer",
        "negative.csv": "0-based",
        "nothing.csv": "none of the 1 images .* exist .* check image_folder",
    }
    for name, text in cases.items():
        if text is not None:
            (tmp_path / name).write_text(text)
        with pytest.raises(ClcaDeployError, match=messages[name]):
            open_dataset(tmp_path, csv=name)
    with pytest.raises(ClcaDeployError, match="image folder .* does not exist"):
        open_dataset(tmp_path, csv="id.csv", image_folder="pics")


def test_flat_folder(tmp_path, leaves_test):
    copies = copy_leaves(leaves_test, tmp_path, ["Tilia", "Acer"], count=1)
    upper = copies[0].rename(tmp_path / "B_LEAF.JPG")
    (tmp_path / "readme.txt").write_text("not an image")
    (tmp_path / "._Acer.jpg").write_bytes(b"macOS metadata")
    dataset = open_dataset(tmp_path)
    assert dataset.kind == "flat" and dataset.class_names is None and not dataset.labelled
    assert [r.path for r in dataset.records] == [copies[1], upper]  # sorted: 'Acer_...' < 'B_LEAF.JPG'
    assert all(r.label is None for r in dataset.records)
    (batch,) = list(iter_batches(dataset, SMALL, batch_size=8))
    assert batch.labels is None and batch.images.shape == (2, 3, 32, 32) and batch.paths == (copies[1], upper)


def test_corrupt_files_are_skipped_and_named(tmp_path, leaves_test):
    copy_leaves(leaves_test, tmp_path / "Acer", ["Acer"], count=3)
    copy_leaves(leaves_test, tmp_path / "Tilia", ["Tilia"], count=2)
    data = (leaves_test / "Acer" / "l2nr005.jpg").read_bytes()
    (tmp_path / "Acer" / "Acer_broken.jpg").write_bytes(data[: len(data) // 3])
    (tmp_path / "Tilia" / "empty.png").touch()
    dataset = open_dataset(tmp_path)
    assert len(dataset) == 7 and dataset.class_names == ("Acer", "Tilia")
    reader = iter_batches(dataset, SMALL, batch_size=2)
    batches = list(reader)
    read = [p.name for b in batches for p in b.paths]
    assert len(read) == 5 and "Acer_broken.jpg" not in read and "empty.png" not in read
    assert np.concatenate([b.labels for b in batches]).tolist() == [0, 0, 0, 1, 1]
    assert [s.path.name for s in reader.skipped] == ["Acer_broken.jpg", "empty.png"]
    assert "truncated" in reader.skipped[0].reason and "empty" in reader.skipped[1].reason
    assert all(isinstance(s, SkippedImage) for s in reader.skipped)
    # Iterating again starts a fresh skipped list.
    list(reader)
    assert len(reader.skipped) == 2


def test_nothing_readable_is_an_error(tmp_path):
    (tmp_path / "a.jpg").write_text("text")
    (tmp_path / "b.png").touch()
    reader = iter_batches(open_dataset(tmp_path), SMALL, batch_size=2)
    with pytest.raises(ClcaDeployError, match=r"could be read \(2 skipped; first: a.jpg: not a recognised image format; b.png: file is empty"):
        list(reader)


def test_folder_errors(tmp_path, leaves_test):
    with pytest.raises(ClcaDeployError, match="does not exist"):
        open_dataset(tmp_path / "nowhere")
    (tmp_path / "empty_class").mkdir()
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ClcaDeployError, match="no images .* found .*accepted layouts: an ImageFolder split"):
        open_dataset(tmp_path)
    with pytest.raises(ClcaDeployError, match="is not a folder"):
        open_dataset(tmp_path / "notes.txt")
    copy_leaves(leaves_test, tmp_path / "Acer", ["Acer"], count=1)
    with pytest.raises(ClcaDeployError, match=r"class folder\(s\) \['empty_class'\] .* contain no images"):
        open_dataset(tmp_path)
    (tmp_path / "empty_class").rmdir()
    assert open_dataset(tmp_path).class_names == ("Acer",)
    copy_leaves(leaves_test, tmp_path, ["Tilia"], count=1)
    with pytest.raises(ClcaDeployError, match="mixes 1 images at its top level with class subfolders"):
        open_dataset(tmp_path)
    with pytest.raises(ConfigError, match="image_folder only applies to a CSV split"):
        open_dataset(tmp_path / "Acer", image_folder="images")


def test_batch_arguments_are_checked(leaves_test):
    dataset = open_dataset(leaves_test)
    for kwargs, message in [(dict(batch_size=0), "batch_size"), (dict(batch_size=2, limit=0), "limit")]:
        with pytest.raises(ConfigError, match=message):
            iter_batches(dataset, SMALL, **kwargs)


def test_progress_bar_only_on_a_terminal(tmp_path, leaves_test, capsys, monkeypatch):
    import io
    import sys

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    copy_leaves(leaves_test, tmp_path, ["Acer"], count=3)
    batches = list(iter_batches(open_dataset(tmp_path), SMALL, batch_size=2, progress=True))
    assert [len(b) for b in batches] == [2, 1]
    assert capsys.readouterr().err == ""  # standard error is captured here, as in a pipe or CI log: no frames
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    monkeypatch.setattr(sys, "stderr", Terminal())
    list(iter_batches(open_dataset(tmp_path), SMALL, batch_size=2, progress=True))
    assert "3/3" in sys.stderr.getvalue()


def test_image_extensions():
    assert all(is_image_file(n) for n in ["a.jpg", "b.JPEG", "c.png", "d.Bmp", "e.tif", "f.TIFF", "g.webp"])
    assert not any(is_image_file(n) for n in ["a.gif", "b.txt", "jpg", ".hidden.jpg", "x.jpg.part"])

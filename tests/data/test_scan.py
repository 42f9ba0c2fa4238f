"""Folder scanning names every file it leaves out: GIFs, broken links, link loops (file and folder)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clca_deploy.data import PreprocessConfig, iter_batches, open_dataset
from clca_deploy.data.scan import find_images, scan_folder
from clca_deploy.errors import ClcaDeployError
from tests.conftest import LEAVES_DIR, require_shared

SMALL = PreprocessConfig(img_size=32)


@pytest.fixture
def leaf() -> Path:
    return require_shared(LEAVES_DIR / "test" / "Acer" / "l2nr005.jpg")


def awkward_folder(folder: Path, leaf: Path) -> dict[str, Path]:
    """Two good leaves, a GIF, a link loop named x.jpg, a dangling link, a text file and hidden files."""
    folder.mkdir(parents=True)
    paths = {name: folder / name for name in ("a.jpg", "b.png", "anim.gif", "x.jpg", "gone.jpg", "notes.txt")}
    shutil.copy(leaf, paths["a.jpg"])
    Image.open(leaf).convert("RGB").resize((40, 60)).save(paths["b.png"])
    Image.new("RGB", (8, 8), (0, 128, 0)).save(paths["anim.gif"])
    os.symlink("x.jpg", paths["x.jpg"])  # resolves to itself
    os.symlink(folder / "deleted.jpg", paths["gone.jpg"])
    paths["notes.txt"].write_text("picked on Tuesday")
    (folder / ".DS_Store").write_bytes(b"\0")
    (folder / "._a.jpg").write_bytes(b"AppleDouble")
    return paths


def reasons(skipped) -> dict[str, str]:
    return {Path(s.path).name: s.reason for s in skipped}


def assert_awkward_reasons(named: dict[str, str]) -> None:
    assert set(named) >= {"anim.gif", "x.jpg", "gone.jpg", "notes.txt"}
    assert named["anim.gif"].startswith("unsupported image format .gif; convert it to one of .jpg")
    assert named["x.jpg"].startswith("symlink loop")
    assert named["gone.jpg"].startswith("broken symlink") and "deleted.jpg does not exist" in named["gone.jpg"]
    assert named["notes.txt"].startswith("not an image file (.txt)")
    assert not any(name.startswith(".") for name in named)  # hidden files are not data


def test_flat_folder_names_every_file_it_leaves_out(tmp_path, leaf):
    paths = awkward_folder(tmp_path / "flat", leaf)
    dataset = open_dataset(tmp_path / "flat")  # a link loop once raised OSError from here
    assert dataset.kind == "flat" and [r.path for r in dataset.records] == [paths["a.jpg"], paths["b.png"]]
    assert_awkward_reasons(reasons(dataset.skipped))
    reader = iter_batches(dataset, SMALL, batch_size=4)
    (batch,) = list(reader)
    assert batch.paths == (paths["a.jpg"], paths["b.png"]) and np.isfinite(batch.images).all()
    # The reader's own list (what predict, bench and calibrate print) holds the scan's entries.
    assert reasons(reader.skipped) == reasons(dataset.skipped) and len(reader.skipped) == 4


def test_imagefolder_classes_and_a_folder_link_loop(tmp_path, leaf):
    root = tmp_path / "split"
    awkward_folder(root / "Acer", leaf)
    (root / "Tilia" / "deeper").mkdir(parents=True)
    shutil.copy(leaf, root / "Tilia" / "deeper" / "t.jpg")
    os.symlink("..", root / "Tilia" / "deeper" / "up")  # a folder link back to Tilia
    os.symlink(root, root / "Tilia" / "root")  # and one back to the dataset root
    shutil.copy(leaf, root / "Tilia" / "u.jpg")
    dataset = open_dataset(root)
    assert dataset.kind == "imagefolder" and dataset.class_names == ("Acer", "Tilia")
    names = [(r.path.relative_to(root).as_posix(), r.label) for r in dataset.records]
    assert names == [("Acer/a.jpg", 0), ("Acer/b.png", 0), ("Tilia/u.jpg", 1), ("Tilia/deeper/t.jpg", 1)]
    named = reasons(dataset.skipped)
    assert_awkward_reasons(named)
    assert named["up"].startswith("symlink loop: leads back to its own parent folder")
    assert named["root"].startswith("symlink loop") and str(root) in named["root"]
    reader = iter_batches(dataset, SMALL, batch_size=3)
    assert sum(len(b) for b in reader) == 4 and reasons(reader.skipped) == named


def test_order_matches_the_os_walk_torchvision_uses(tmp_path, leaf):
    root = tmp_path / "c"
    for relative in ("b.jpg", "a/z.jpg", "a.b/y.jpg", "a/b/x.jpg", "A/w.jpg"):
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(leaf, root / relative)
    expected = [Path(d) / f for d, _, files in sorted(os.walk(root)) for f in sorted(files)]
    scan = scan_folder(root)
    assert [found.path for found in scan.images] == expected and scan.skipped == ()


def test_find_images_for_predict(tmp_path, leaf):
    paths = awkward_folder(tmp_path / "in", leaf)
    scan = find_images([tmp_path / "in", paths["x.jpg"]])
    # A file named on the command line is taken as given: the reader says why it cannot be read.
    assert [found.path for found in scan.images] == [paths["a.jpg"], paths["b.png"], paths["x.jpg"]]
    assert_awkward_reasons(reasons(scan.skipped))
    only_bad = tmp_path / "bad"
    only_bad.mkdir()
    os.symlink("loop.jpg", only_bad / "loop.jpg")
    with pytest.raises(ClcaDeployError, match=r"no image files in .*1 file left out, e.g. loop.jpg: symlink loop"):
        find_images([only_bad])
    with pytest.raises(ClcaDeployError, match="does not exist"):
        find_images([tmp_path / "nowhere"])


def test_folders_of_only_unreadable_files_say_what_they_hold(tmp_path, leaf):
    flat = tmp_path / "gifs"
    flat.mkdir()
    Image.new("RGB", (8, 8)).save(flat / "only.gif")
    with pytest.raises(ClcaDeployError, match=r"no images .* \(1 file left out, e.g. only.gif: unsupported image format .gif; convert"):
        open_dataset(flat)
    classes = tmp_path / "classes"
    shutil.copytree(flat, classes / "Ulmus")
    (classes / "Acer").mkdir()
    shutil.copy(leaf, classes / "Acer" / "a.jpg")
    with pytest.raises(ClcaDeployError, match=r"class folder\(s\) \['Ulmus'\] .* contain no images \(1 file left out, e.g. only.gif"):
        open_dataset(classes)


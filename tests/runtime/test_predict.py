"""``predict``: labels from an ONNX file alone equal the PyTorch reference's; bad images are skipped."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clca_deploy.errors import ClcaDeployError
from clca_deploy.runtime import open_backend, predict_images
from tests.conftest import LEAVES_DIR, require_shared


def leaf_images(count: int) -> list:
    folder = require_shared(LEAVES_DIR / "test")
    return sorted(folder.rglob("*.jpg"))[:: max(1, 180 // count)][:count]


def test_onnx_alone_gives_reference_labels(plain_onnx):
    checkpoint, onnx_path = plain_onnx
    images = leaf_images(24)
    with open_backend(checkpoint) as reference, open_backend(onnx_path) as deployed:
        expected = predict_images(reference, images, top_k=3)
        got = predict_images(deployed, images, top_k=3)
    assert len(got.predictions) == 24 and not got.skipped
    assert [p.top[0].index for p in got.predictions] == [p.top[0].index for p in expected.predictions]
    for ours, theirs in zip(got.predictions, expected.predictions):
        assert np.allclose([s.probability for s in ours.top], [s.probability for s in theirs.top], atol=1e-5)


def bad_images(folder):
    """One file for every way an image can fail, plus a real leaf that must still be classified."""
    good = leaf_images(1)[0]
    shutil.copy(good, folder / "good.jpg")
    data = good.read_bytes()
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 3])
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.jpg").write_text("this is not an image")
    Image.fromarray(np.full((40, 30), 40000, dtype=np.uint16)).save(folder / "sixteen.png")
    Image.new("CMYK", (50, 40), (10, 200, 30, 0)).save(folder / "cmyk.jpg")
    Image.new("RGB", (3000, 3000)).save(folder / "huge.png")
    return {"truncated.jpg", "empty.jpg", "notes.jpg"}


def test_unreadable_images_are_skipped_and_named(plain_onnx, tmp_path):
    _, onnx_path = plain_onnx
    unreadable = bad_images(tmp_path)
    with open_backend(onnx_path) as backend:
        # A low decompression-bomb limit makes the 9-megapixel image play the bomb.
        run = predict_images(backend, [tmp_path], top_k=1, max_pixels=5_000_000)
    skipped = {p.split("/")[-1] for p, _ in run.skipped}
    assert skipped == unreadable | {"huge.png"}
    assert {p.path.split("/")[-1] for p in run.predictions} == {"good.jpg", "sixteen.png", "cmyk.jpg"}


def test_nothing_readable_and_empty_folders(plain_onnx, tmp_path):
    _, onnx_path = plain_onnx
    (tmp_path / "empty").mkdir()
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "a.jpg").write_text("nope")
    with open_backend(onnx_path) as backend:
        with pytest.raises(ClcaDeployError, match="no image files"):
            predict_images(backend, [tmp_path / "empty"])
        with pytest.raises(ClcaDeployError, match="could be read"):
            predict_images(backend, [tmp_path / "junk"])


def test_each_image_is_looked_up_once_before_it_is_decoded(tmp_path, monkeypatch):
    """The folder scan's one stat per file is the only lookup: the reader trusts the size it found."""
    import os

    from clca_deploy.runtime.base import InputSpec, ModelDescription
    from clca_deploy.data import PreprocessConfig
    from tests.train.conftest import write_image_folder

    folder = write_image_folder(tmp_path / "images", classes=2, per_class=2, size=32)
    direct = next(folder.rglob("*.png"), None) or next(p for p in folder.rglob("*") if p.is_file())
    images = {path.resolve() for path in folder.rglob("*") if path.is_file()}
    expected = {str(path): 2 if path == direct.resolve() else 1 for path in images}  # direct is listed twice
    lookups = {path: 0 for path in images}
    for name in ("stat", "lstat"):
        real = getattr(os, name)

        def spy(path, *args, _real=real, **kwargs):
            resolved = os.path.abspath(path) if isinstance(path, (str, os.PathLike)) else None
            if resolved is not None and Path(resolved) in lookups:
                lookups[Path(resolved)] += 1
            return _real(path, *args, **kwargs)

        monkeypatch.setattr(os, name, spy)

    class Constant:
        input_spec = InputSpec("images", 32)
        description = ModelDescription("m", (1.0,), 2, PreprocessConfig(img_size=32).to_dict())

        def __call__(self, batch):
            return np.zeros((len(batch), 2), np.float32)

    run = predict_images(Constant(), [folder, direct], top_k=1)
    monkeypatch.undo()
    assert len(run.predictions) == len(images) + 1 and not run.skipped
    assert {str(path): count for path, count in lookups.items()} == expected

"""`train` refuses, before reading a single image, what would waste the run or destroy a file:
a checkpoint path that is an input, an unwritable output, a file that is not a checkpoint, one
class (or a class without readable images); and a bare state dict can start a run with its args."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from clca_deploy.cli import app
from clca_deploy.errors import ClcaDeployError
from tests.model.test_checkpoint import TINY, official_dict, tiny_model
from tests.test_outputs_safety import refused, tree_digest
from tests.train.conftest import write_image_folder

runner = CliRunner()
FAST = ["--model", "evit_vit_tiny_patch16_224", "--img-size", "32", "--batch-size", "4", "--epochs", "1"]


@pytest.fixture
def no_image_reading(monkeypatch):
    """Fails the test if training starts decoding its split: every refusal here comes before that."""
    import clca_deploy.train.loop as loop

    def never(*_args, **_kwargs):
        raise AssertionError("the training split was read before the refusal")

    monkeypatch.setattr(loop, "read_resized_split", never)


@pytest.fixture
def init_checkpoint(tmp_path) -> Path:
    path = tmp_path / "init.pth"
    torch.save(official_dict(tiny_model()), path)
    return path


def test_one_class_is_refused_before_training(tmp_path, no_image_reading):
    data = write_image_folder(tmp_path / "one", classes=1, per_class=8, size=32)
    before = tree_digest(tmp_path)
    refused(["train", data, "-o", tmp_path / "c.pth", *FAST], "at least two classes")
    assert tree_digest(tmp_path) == before


def test_a_class_without_readable_images_is_refused(tiny_splits, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(tiny_splits / "train", data / "train")
    for image in (data / "train" / "class_01").iterdir():
        image.write_bytes(b"not an image")
    before = tree_digest(tmp_path)
    refused(["train", data, "-o", tmp_path / "c.pth", *FAST], "class_01", "no readable images")
    assert tree_digest(tmp_path) == before


def test_the_checkpoint_path_may_not_be_the_init_checkpoint(tiny_splits, init_checkpoint, no_image_reading):
    before = tree_digest(init_checkpoint.parent)
    refused(["train", tiny_splits, "-o", init_checkpoint, "--init", init_checkpoint, *FAST], "is the input")
    assert tree_digest(init_checkpoint.parent) == before


def test_the_json_summary_may_not_overwrite_a_checkpoint(tiny_splits, init_checkpoint, tmp_path, no_image_reading):
    before = tree_digest(tmp_path)
    refused(["train", tiny_splits, "-o", tmp_path / "c.pth", "--init", init_checkpoint, "--json", init_checkpoint, *FAST],
            "is the input")
    refused(["train", tiny_splits, "-o", tmp_path / "c.pth", "--json", tmp_path / "c.pth", *FAST], "is the input")
    assert tree_digest(tmp_path) == before


def test_outputs_that_cannot_be_written_are_refused_first(tiny_splits, tmp_path, no_image_reading):
    (tmp_path / "afile").write_text("x")
    before = tree_digest(tmp_path)
    refused(["train", tiny_splits, "-o", "/proc/c.pth", *FAST], "cannot create files")
    refused(["train", tiny_splits, "-o", tmp_path / "afile" / "c.pth", *FAST], "is a file")
    refused(["train", tiny_splits, "-o", tmp_path / "c.pth", "--json", tmp_path / "afile" / "s.json", *FAST], "is a file")
    assert tree_digest(tmp_path) == before


@pytest.mark.parametrize("option", ["--resume", "--init"])
def test_a_text_file_is_not_a_checkpoint_to_resume_or_start_from(tiny_splits, tmp_path, option, no_image_reading):
    text = tmp_path / "listing.pth"
    text.write_text("total 12\n-rw-r--r-- 1 leaf leaf 0 Jan  1 00:00 x\n")
    args = ["--resume", "-o", text] if option == "--resume" else ["--init", text, "-o", tmp_path / "c.pth"]
    before = tree_digest(tmp_path)
    refused(["train", tiny_splits, *args, *FAST], "is not a valid checkpoint", "'total 12'")
    assert tree_digest(tmp_path) == before


def test_a_bare_state_dict_starts_a_run_with_init_config(tiny_splits, tmp_path):
    weights = tmp_path / "weights.pth"
    torch.save(tiny_model().state_dict(), weights)
    args = tmp_path / "args.json"
    args.write_text(json.dumps(TINY))
    refused(["train", tiny_splits, "-o", tmp_path / "a.pth", "--init", weights, *FAST], "--init-config")
    refused(["train", tiny_splits, "-o", tmp_path / "a.pth", "--init-config", args, *FAST], "pass --init")
    done = runner.invoke(
        app, ["train", str(tiny_splits), "-o", str(tmp_path / "b.pth"), "--init", str(weights), "--init-config", str(args),
              *FAST],
    )
    assert done.exit_code == 0, (done.output, done.exception)
    assert "init     " in done.output and (tmp_path / "b.pth").is_file()
    assert not isinstance(done.exception, ClcaDeployError)

"""Class names for checkpoints that carry none: `export --class-names FILE` and `export --data` ImageFolder folders.

The file reader and the choice between sources are tested without torch; then a tiny official-format checkpoint
(no class names, as official ones are) is exported both ways and predict's output names the classes. Every
refusal is shown with a crafted file, and the CLI refuses in one line, before the export writes anything.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from clca_deploy.errors import ClcaDeployError
from clca_deploy.export.class_names import ChosenNames, choose_class_names, read_class_names_file
from clca_deploy.metadata import MAX_NAME_CHARS

NAMES = ["Acer", "Betula pendula", "Quercus robur"]


def write(tmp_path: Path, content: str | bytes, name: str = "classes.txt") -> Path:
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


# ---------------------------------------------------------------- reading the file


@pytest.mark.parametrize("content", [
    "Acer\nBetula pendula\nQuercus robur\n",  # one per line, final newline
    "Acer\r\nBetula pendula\r\nQuercus robur",  # Windows line ends, no final newline
    "\ufeffAcer\n Betula pendula \nQuercus robur\n",  # a BOM, spaces around a name
    '["Acer", "Betula pendula", "Quercus robur"]',
    '\n  ["Acer",\n "Betula pendula", "Quercus robur"]\n',
])
def test_class_names_file_forms(tmp_path, content):
    names = read_class_names_file(write(tmp_path, content))
    assert choose_class_names(3, None, (tmp_path / "classes.txt", names)).names == tuple(NAMES)


CRAFTED = {
    "too many": ("Acer\nBetula pendula\nQuercus robur\nSalix\n", r"holds 4 names for 3 outputs; expected one name per class"),
    "too few (JSON)": ('["Acer", "Salix"]', r"holds 2 names for 3 outputs"),
    "blank line": ("Acer\n\nQuercus robur\n", r"holds ''; expected names of 1\.\.200 characters without control characters"),
    "too long": ("Acer\n" + "x" * (MAX_NAME_CHARS + 1) + "\nQuercus robur\n", r"holds 'xxxx.*; expected names of 1\.\.200"),
    "escape sequence": ("Acer\nBetula\x1b[31m\nQuercus robur\n", r"holds 'Betula\\x1b\[31m'"),
    "vertical tab": ("Acer\nBetula\x0bpendula\nQuercus robur\n", r"holds 'Betula\\x0bpendula'"),
    "bidi override": ("Acer\nBetula\u202eadnep\nQuercus robur\n", r"holds 'Betula\\u202eadnep'"),
    "duplicate": ("Acer\nAcer\nQuercus robur\n", r"names 'Acer' twice; class names must be distinct"),
    "not text (JSON)": ('["Acer", 7, "Quercus robur"]', r"holds 7; expected names"),
}


@pytest.mark.parametrize("case", list(CRAFTED))
def test_crafted_class_names_files_are_refused(tmp_path, case):
    content, message = CRAFTED[case]
    path = write(tmp_path, content)
    with pytest.raises(ClcaDeployError, match=message) as error:
        choose_class_names(3, None, (path, read_class_names_file(path)))
    assert str(error.value).startswith(f"--class-names file {path} ") and "one name per line, or a JSON list" in str(error.value)


@pytest.mark.parametrize("content, message", [
    (b"Acer\n\xff\xfeQuercus\n", r"is not UTF-8 text \(byte 5\)"),
    (b'["Acer", "Quercus"', r"is not valid JSON \(Expecting"),
    (b"[" * 100_000 + b"]" * 100_000, r"(nests its JSON too deeply|is not valid JSON)"),
    (b'["Acer"] {"x": 1}', r"is not valid JSON \(Extra data"),
])
def test_unreadable_class_names_files_are_refused(tmp_path, content, message):
    with pytest.raises(ClcaDeployError, match=message):
        read_class_names_file(write(tmp_path, content))


def test_class_names_file_that_is_not_a_list_or_not_a_file(tmp_path, monkeypatch):
    with pytest.raises(ClcaDeployError, match="holds JSON that is not a list"):
        read_class_names_file(write(tmp_path, '{"0": "Acer"}'))
    with pytest.raises(ClcaDeployError, match="--class-names file not found"):
        read_class_names_file(tmp_path / "missing.txt")
    with pytest.raises(ClcaDeployError, match="is a folder, not a regular file"):
        read_class_names_file(tmp_path)
    monkeypatch.setattr("clca_deploy.export.class_names.MAX_CLASS_NAMES_BYTES", 16)
    with pytest.raises(ClcaDeployError, match="larger than the 16 bytes"):
        read_class_names_file(write(tmp_path, "Acer\nBetula pendula\nQuercus robur\n"))


# ---------------------------------------------------------------- which names an export writes


def test_the_file_wins_and_says_when_it_replaces_the_checkpoints_names(tmp_path):
    path = tmp_path / "classes.txt"
    chosen = choose_class_names(3, ("a", "b", "c"), (path, NAMES), (tmp_path, ("x", "y", "z")))
    assert chosen.names == tuple(NAMES) and chosen.source == f"--class-names {path}"
    assert chosen.notes == (f"the class names from {path} replace the checkpoint's own.",)
    assert choose_class_names(3, NAMES, (path, NAMES)).notes == ()


def test_checkpoint_names_come_before_the_folders(tmp_path):
    assert choose_class_names(3, ("a", "b", "c"), None, (tmp_path, ("x", "y", "z"))) == ChosenNames(("a", "b", "c"), "checkpoint")


def test_folders_name_the_classes_only_when_there_are_as_many(tmp_path):
    chosen = choose_class_names(3, None, None, (tmp_path, tuple(NAMES)))
    assert chosen.names == tuple(NAMES) and chosen.source == f"--data {tmp_path}" and "sorted order" in chosen.notes[0]
    fewer = choose_class_names(4, None, None, (tmp_path, tuple(NAMES)))
    assert fewer.names is None and fewer.notes == (
        f"{tmp_path} has 3 class folders for the model's 4 classes, so their names were not written; give the class "
        "names with --class-names FILE.",
    )
    with pytest.raises(ClcaDeployError, match=r"the class folders of .* cannot name the classes: the names holds 'B\\x1bx'"):
        choose_class_names(3, None, None, (tmp_path, ("A", "B\x1bx", "C")))
    assert choose_class_names(3, None) == ChosenNames(None, None)


# ---------------------------------------------------------------- a tiny official checkpoint, exported


@pytest.fixture(scope="module")
def official_checkpoint(tmp_path_factory) -> Path:
    """A tiny 3-class CLCA checkpoint in the official train.py format, which carries no class names."""
    torch = pytest.importorskip("torch")
    from tests.model.test_checkpoint import official_dict, tiny_model

    path = tmp_path_factory.mktemp("official") / "best_checkpoint.pth"
    torch.save(official_dict(tiny_model()), path)
    return path


def image_folder(root: Path, classes: list[str]) -> Path:
    """An ImageFolder split: two small images per class folder."""
    from PIL import Image

    for index, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for shade in range(2):
            Image.new("RGB", (40, 40), (40 * index + 20 * shade, 120, 200 - 50 * index)).save(root / name / f"{shade}.png")
    return root


def predicted_names(onnx_path: Path, images: Path) -> set[str]:
    from clca_deploy.runtime import open_backend, predict_images

    with open_backend(onnx_path) as backend:
        run = predict_images(backend, [images], top_k=3)
    return {score.name for prediction in run.predictions for score in prediction.top}


def test_export_class_names_file_reaches_predicts_output(official_checkpoint, tmp_path):
    from clca_deploy.export import ExportConfig, export_onnx
    from clca_deploy.metadata import read_onnx_metadata

    names_file = write(tmp_path, "\n".join(NAMES) + "\n")
    output = tmp_path / "named.onnx"
    result = export_onnx(official_checkpoint, output, ExportConfig(class_names=names_file), log=lambda _: None)
    assert read_onnx_metadata(output).class_names == tuple(NAMES)
    assert result.class_names_from == f"--class-names {names_file}"
    photos = image_folder(tmp_path / "photos", ["p", "q"])
    assert predicted_names(output, photos) == set(NAMES)  # top 3 of 3 classes: every name, none "class N"


def test_export_data_image_folder_names_reach_predicts_output(official_checkpoint, tmp_path):
    from clca_deploy.export import ExportConfig, export_onnx
    from clca_deploy.metadata import read_onnx_metadata

    folders = ["Alnus", "Fagus sylvatica", "Tilia"]
    data = image_folder(tmp_path / "train", folders)
    output = tmp_path / "from_folders.onnx"
    result = export_onnx(official_checkpoint, output, ExportConfig(data=data, verify_images=6), log=lambda _: None)
    assert read_onnx_metadata(output).class_names == tuple(folders) and result.class_names_from == f"--data {data}"
    assert any("class folders of" in note for note in result.notes)
    assert predicted_names(output, data) == set(folders)


def test_export_without_names_keeps_none(official_checkpoint, tmp_path):
    from clca_deploy.export import ExportConfig, export_onnx
    from clca_deploy.metadata import read_onnx_metadata

    output = tmp_path / "plain.onnx"
    result = export_onnx(official_checkpoint, output, ExportConfig(), log=lambda _: None)
    assert read_onnx_metadata(output).class_names is None and result.class_names_from is None


@pytest.mark.parametrize("content, message", [
    ("Acer\nQuercus robur\n", "holds 2 names for 3 outputs"),
    ("Acer\nAcer\nQuercus\n", "names 'Acer' twice"),
    ("Acer\nBe\x1btula\nQuercus\n", r"holds 'Be\x1btula'"),
])
def test_cli_export_refuses_a_crafted_names_file_in_one_line_writing_nothing(
    official_checkpoint, tmp_path, monkeypatch, capsys, content, message
):
    from clca_deploy import cli

    names_file = write(tmp_path, content)
    output = tmp_path / "m.onnx"
    monkeypatch.setattr(sys, "argv", ["clca-deploy", "export", str(official_checkpoint), "-o", str(output),
                                      "--class-names", str(names_file)])
    monkeypatch.setattr("clca_deploy.export.onnx._trace_to_onnx", lambda *a, **k: pytest.fail("traced before the check"))
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.startswith("error: --class-names file ") and err.count("\n") == 1, err
    assert message in err and sorted(p.name for p in tmp_path.iterdir()) == ["classes.txt"]


def test_cli_export_json_says_where_the_names_came_from(official_checkpoint, tmp_path):
    from typer.testing import CliRunner

    from clca_deploy.cli import app

    names_file = write(tmp_path, json.dumps(NAMES), "classes.json")
    result = CliRunner().invoke(app, ["export", str(official_checkpoint), "-o", str(tmp_path / "m.onnx"),
                                      "--class-names", str(names_file), "--json", "-"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["class_names_from"] == f"--class-names {names_file}"

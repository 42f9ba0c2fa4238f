"""Text views on an 80-column terminal and in pipes (issue 26, item 2) and `info`'s own row names (item 9).

`bench`, `info` (a checkpoint and an .onnx file) and `doctor` must fit COLUMNS=80 with every label whole
(wrapped at a space at most, never cut to "…"); piped without COLUMNS, the bench table keeps one line per
row at its natural width. The widths are COLUMNS values, never measured terminals.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from clca_deploy.cli import app
from clca_deploy.system.checks import Check
from tests.bench.test_report import make_report
from tests.conftest import load_golden
from tests.tensorrt.fakes.model import tiny_onnx

runner = CliRunner()
NARROW = {"COLUMNS": "80"}


def assert_fits(text: str, width: int = 80) -> None:
    long = [line for line in text.splitlines() if len(line) > width]
    assert not long, f"{len(long)} lines over {width} columns, e.g. {long[0]!r}"
    assert "…" not in text


def assert_whole(label: str, text: str) -> None:
    """Every word of ``label`` is printed whole (a label may wrap at its spaces, nothing more)."""
    for word in label.split():
        assert word in text, f"{word!r} of {label!r} is cut in:\n{text}"


def _images(root):
    for name, level in (("ash", 60), ("beech", 180)):
        (root / name).mkdir(parents=True)
        for index in range(2):
            Image.fromarray(np.full((36, 36, 3), level + 10 * index, dtype=np.uint8)).save(root / name / f"{index}.png")
    return root


@pytest.fixture
def bench_files(tmp_path):
    models = tmp_path / "exported_models_of_a_long_run_name"
    models.mkdir()
    reference = tiny_onnx(models / "model.onnx")
    return reference, tiny_onnx(models / "model.k0.5.int8.onnx", precision="int8"), _images(tmp_path / "leaves")


def test_bench_fits_80_columns_with_every_label_whole(bench_files, tmp_path, monkeypatch):
    reference, int8, data = bench_files
    monkeypatch.chdir(tmp_path)  # "wrote r.json": a file name, not a temporary folder's long path
    argv = ["bench", "--data", str(data), "--reference", str(reference), "--model", str(int8), "--model", str(reference),
            "--batch-sizes", "1,8", "--warmup", "0", "--iters", "2", "--no-power", "--json", "r.json"]
    result = runner.invoke(app, argv, env=NARROW)
    assert result.exit_code == 0, result.output
    assert_fits(result.output)
    for label in ("onnxruntime CPU (model.onnx)", "onnxruntime CPU (model.k0.5.int8.onnx)", "(reference)"):
        assert_whole(label, result.output)
    assert "fp32 keep" not in result.output and "int8 keep" not in result.output  # the columns say it, once


def test_the_narrow_table_keeps_every_number_and_note():
    """The compact layout spreads columns over several tables: nothing of the wide one is lost."""
    from rich.console import Console

    from clca_deploy.bench.table import format_ips, format_ms, render_table

    report = make_report()
    console = Console(record=True, width=80)
    console.print(render_table(report, width=80))
    text = console.export_text()
    assert_fits(text)
    for result in report.results:
        assert_whole(result.label, text)
        for stats in result.latency.values():
            assert format_ms(stats.p50_ms) in text and format_ips(stats.images_per_second) in text
    assert "[1] tensorrt (model.int8.engine): TensorRT is not installed" in text.replace("\n", " ")
    for header in ("top-1", "top-5", "agree", "RSS"):
        assert header in text


def test_a_pipe_without_columns_gets_one_line_per_row(monkeypatch, capsys):
    from clca_deploy.bench.table import print_table

    monkeypatch.delenv("COLUMNS", raising=False)
    report = make_report()
    print_table(report)  # stdout is captured: a pipe
    printed = capsys.readouterr().out
    assert max(len(line) for line in printed.splitlines()) > 80  # its natural width, not 80
    for result in report.results:
        assert any(result.label in line and result.status in line for line in printed.splitlines())  # one line


def test_a_pipe_honours_columns(monkeypatch, capsys):
    from clca_deploy.bench.table import print_table

    monkeypatch.setenv("COLUMNS", "80")
    print_table(make_report())
    assert_fits(capsys.readouterr().out)


def test_info_of_a_checkpoint_fits_80_columns():
    path, _, _ = load_golden("evit_tiny_clca_k0.1_224")
    result = runner.invoke(app, ["info", str(path)], env=NARROW)
    assert result.exit_code == 0, result.output
    assert_fits(result.output)
    assert "3:   198 -> 22    + 6" in result.output
    # The long CLC line wraps under its own column, not under the keys.
    clc = result.output.splitlines().index(next(line for line in result.output.splitlines() if line.startswith("CLC ")))
    assert result.output.splitlines()[clc + 1].startswith(" " * 13)


def test_info_of_an_onnx_file_fits_80_columns_and_names_each_row_once(tmp_path):
    path = tiny_onnx(tmp_path / "a_model_file_with_a_rather_long_name_from_an_export.onnx")
    result = runner.invoke(app, ["info", str(path)], env=NARROW)
    assert result.exit_code == 0, result.output
    assert_fits(result.output)
    lines = result.output.splitlines()
    column = len(lines[0]) - len(lines[0][len("file"):].lstrip())  # where every value starts
    keys = [line[:column].strip() for line in lines if line[:column].strip()]
    assert keys.count("input") == 1 and keys.count("input name") == 1, keys  # was "input" twice
    assert len(keys) == len(set(keys)), keys


def test_doctor_fits_80_columns(monkeypatch):
    from clca_deploy.doctor import report as doctor

    long = Check(
        "onnxruntime", "error",
        "onnxruntime-gpu 1.31.1; providers: Tensorrt, CUDA, CPU; built for CUDA 13.0, but the driver supports "
        "CUDA 12: the CUDA provider cannot start",
        'pip install "clca-deploy[gpu-cu12]" (onnxruntime-gpu built for CUDA 12), or a driver for CUDA 13 (r580 or newer)',
    )
    report = doctor.DoctorReport(
        checks=(Check("Python", "ok", "3.10.12"), long), platform="Linux-6.8.0-x86_64-with-glibc2.39",
        machine="x86_64", jetson=None, gpus=(),
    )
    monkeypatch.setattr(doctor, "run_doctor", lambda: report)
    result = runner.invoke(app, ["doctor"], env=NARROW)
    assert result.exit_code == 0, result.output
    assert_fits(result.output)
    lines = result.output.splitlines()
    # The detail and the fix wrap under the detail column: every continuation starts there.
    column = lines[2].index("onnxruntime-gpu")
    following = lines[3:-1]
    assert len(following) >= 3 and all(line[:column].strip() == "" for line in following), lines
    assert any(line[column:].startswith("-> pip install") for line in following)
    wide = runner.invoke(app, ["doctor"], env={"COLUMNS": "300"}).output
    assert wide.splitlines()[2].endswith("the CUDA provider cannot start")  # one line where it fits

"""Text views never pass a control or bidi character from a file (or a file name) to the terminal.

Every value below is what a crafted checkpoint, ONNX file, sidecar, image folder or file name could
carry: an OSC sequence that sets the window title, a CSI colour, a bare carriage return and newline that
forge a line, a right-to-left override. The views must show them escaped; JSON output stays JSON.
"""

from __future__ import annotations

import io
import json
import unicodedata
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest
from rich.console import Console
from typer.testing import CliRunner

from clca_deploy import cli_views
from clca_deploy.artifacts import check_output_path
from clca_deploy.bench.plot import plot_accuracy_latency
from clca_deploy.bench.table import print_table
from clca_deploy.cli import app
from clca_deploy.cli_vocabulary import cli_log
from clca_deploy.errors import ClcaDeployError
from tests.bench.test_report import make_report
from tests.test_outputs_safety import write_tiny_onnx
from tests.train.conftest import write_image_folder

EVIL = "a\x1b]0;owned\x07b\x1b[31mc\rd\ne\u202ef\x9bg"
BIDI = set("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def assert_clean(text: str) -> None:
    """No control character but the newlines ending lines, no bidi character; and the escapes are shown."""
    bad = [c for c in text if c != "\n" and (c in BIDI or unicodedata.category(c) in ("Cc", "Zl", "Zp"))]
    assert not bad, bad
    assert "\\x1b" in text and "\\u202e" in text, text


def evil_report():
    report = make_report()
    results = list(report.results)
    results[1] = replace(results[1], label=f"onnxruntime fp32 ({EVIL}.onnx)", precision=f"fp32{EVIL}")
    results[2] = replace(results[2], label=f"tensorrt int8 ({EVIL}.engine)", reason=f"the sidecar says {EVIL}")
    return replace(
        report, results=tuple(results), data={**report.data, "path": f"leaves/{EVIL}", "kind": EVIL},
        skipped_images=({"path": f"leaves/{EVIL}.jpg", "reason": EVIL},), environment={"cpu": EVIL, "gpu": None},
    )


def test_the_bench_table_escapes_labels_reasons_paths_and_the_device():
    buffer = io.StringIO()
    print_table(evil_report(), console=Console(file=buffer, width=400))
    assert_clean(buffer.getvalue())


def test_render_report_and_bench_failure_escape_what_they_print(tmp_path, capsys):
    report = evil_report()
    cli_views.render_report(report, tmp_path / "r.json", None)
    captured = capsys.readouterr()
    assert_clean(captured.out)
    assert_clean(captured.err)  # the skipped image's name and reason
    assert_clean(cli_views.bench_failure(report))
    assert json.loads((tmp_path / "r.json").read_text())["data"]["kind"] == EVIL  # JSON keeps the value itself


def test_a_label_that_looks_like_mathtext_is_drawn_as_written(tmp_path):
    """A model named "$\\undefined$" used to abort the plot inside matplotlib's mathtext parser."""
    report = make_report()
    results = list(report.results)
    results[1] = replace(results[1], label="odd $\\undefinedcommand{x}$ name " + EVIL)
    plot_accuracy_latency(replace(report, results=tuple(results)), tmp_path / "p.png")
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"


def _summary(settings: dict) -> SimpleNamespace:
    return SimpleNamespace(
        checkpoint=f"ckpt{EVIL}.pth", format=EVIL, settings=settings, backbone_kind=EVIL, defaulted=[EVIL],
        overridden=[EVIL], class_names=[EVIL, "Acer"], schedule=[
            {"index": 0, "tokens_in": 197, "tokens_out": 99, "reinserted": 0, "stage": EVIL, "adapter": EVIL},
        ], parameters=1000, gmacs=1.5,
    )


def test_checkpoint_summaries_escape_every_value(capsys):
    clca = {
        "model": EVIL, "method": EVIL, "img_size": 224, "num_classes": 3, "keep_rate": [0.7], "reduction_loc": [3],
        "clc": True, "num_clr": 1, "clc_include_gap": True, "clc_pool_cls": EVIL, "clc_pool_clr": EVIL,
        "clc_recover_at_last": True, "ifa_head": True, "ifa_dws_conv_groups": 2,
    }
    cli_views.print_summary(_summary(clca))
    fgir = {
        "family": "ila", "model": EVIL, "img_size": 224, "num_classes": 3, "resize_size": 256,
        "ila": {"adapter": EVIL, "adapter_path": EVIL, "adapter_dim": 8, "ila": True, "ila_locs": EVIL, "ila_ds_locs": EVIL},
    }
    cli_views.print_summary(_summary(fgir))
    assert_clean(capsys.readouterr().out)


def test_deployed_model_and_predictions_escape_every_value(capsys):
    described = SimpleNamespace(
        path=f"m{EVIL}.onnx", kind=EVIL, size_bytes=1e6, model=EVIL, method=EVIL, precision=EVIL, img_size=224, batch=EVIL,
        num_classes=3, keep_rate=(0.7,), token_schedule=((197, 99),),
        preprocess={"resize_size": 256, "interpolation": EVIL, "img_size": 224, "mean": EVIL, "std": EVIL},
        class_names=[EVIL], details={"sidecar_field": EVIL, "io": EVIL},
    )
    cli_views.print_deployed(described)
    top = [SimpleNamespace(name=EVIL, probability=0.9)]
    run = SimpleNamespace(predictions=[SimpleNamespace(path=f"{EVIL}.jpg", top=top)], skipped=[(f"{EVIL}.jpg", EVIL)])
    cli_views.print_predictions(run)
    captured = capsys.readouterr()
    assert_clean(captured.out)
    assert_clean(captured.err)


def test_bench_progress_lines_are_escaped(capsys):
    cli_log(to_stderr=True)(f"{EVIL}.onnx on onnxruntime: failed: {EVIL}")
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert_clean(captured.err)


def test_output_errors_escape_the_file_name(tmp_path):
    import os

    fifo = tmp_path / f"out{EVIL.replace(chr(10), '')}"
    os.mkfifo(fifo)
    with pytest.raises(ClcaDeployError) as error:
        check_output_path(fifo)
    assert "\x1b" not in str(error.value) and "\\x1b" in str(error.value) and "is a FIFO" in str(error.value)


def test_bench_on_a_model_with_a_hostile_file_name(tmp_path):
    name = "m\x1b]0;owned\x07\u202e.onnx"
    model = write_tiny_onnx(tmp_path / name, class_names=["class_00", "class_01", "class_02"])
    images = write_image_folder(tmp_path / "images", classes=3, per_class=2, size=32)
    args = ["bench", "--data", images, "--model", model, "--batch-sizes", "1", "--warmup", "0", "--iters", "2",
            "--no-power", "--out", tmp_path / "r.json"]
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.output and "\u202e" not in result.output and "\\x1b]0;owned\\x07" in result.output
    assert Path(json.loads((tmp_path / "r.json").read_text())["results"][0]["model_path"]).name == name

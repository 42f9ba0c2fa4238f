"""BenchReport: JSON round trip, the terminal table and the accuracy-latency plot as views of one object."""

from __future__ import annotations

import json
import math

import pytest
from rich.console import Console

from clca_deploy.bench.latency import LatencyStats
from clca_deploy.bench.report import (
    REPORT_VERSION,
    AccuracyResult,
    BackendResult,
    BenchReport,
    load_report,
)
from clca_deploy.bench.plot import plot_accuracy_latency
from clca_deploy.bench.table import render_table
from clca_deploy.errors import ClcaDeployError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def stats(batch_size: int, base_ms: float) -> LatencyStats:
    return LatencyStats(batch_size, warmup=3, samples_ms=tuple(base_ms + 0.1 * i for i in range(7)))


def accuracy(top1, agreement=None, max_err=None) -> AccuracyResult:
    return AccuracyResult(
        num_images=40, top1=top1, top5=None if top1 is None else min(100.0, top1 + 10), top1_agreement=agreement,
        max_abs_logit_error=max_err, mean_abs_logit_error=None if max_err is None else max_err / 10,
    )  # fmt: skip


def make_report(labelled: bool = True) -> BenchReport:
    def top1(value):
        return value if labelled else None

    results = (
        BackendResult(
            "torch CPU (model.pth)", "torch", "model.pth", "fp32", (0.7,), "ok", is_reference=True,
            latency={1: stats(1, 41.3), 8: stats(8, 250.0)}, accuracy=accuracy(top1(82.5)), peak_rss_mb=812.4,
        ),
        BackendResult(
            "onnxruntime CPU (model.onnx)", "onnxruntime", "model.onnx", "fp32", (0.7,), "ok",
            providers=("CPUExecutionProvider",), latency={1: stats(1, 23.17), 8: stats(8, 150.0)},
            accuracy=accuracy(top1(82.5), 100.0, 3.2e-5), peak_rss_mb=301.0,
        ),
        BackendResult(
            "tensorrt (model.int8.engine)", "tensorrt", "model.int8.engine", "int8", (0.7,), "failed",
            reason="TensorRT is not installed (pip install tensorrt)",
        ),
        BackendResult(
            "onnxruntime (model.fp16.onnx)", "onnxruntime", "model.fp16.onnx", "fp16", (0.7,), "skipped",
            reason="fp16 needs a GPU execution provider",
        ),
        BackendResult(
            "onnxruntime CPU (model.k0.5.int8.onnx)", "onnxruntime", "model.k0.5.int8.onnx", "int8",
            (0.5,), "ok", providers=("CPUExecutionProvider",), latency={1: stats(1, 9.81)},
            accuracy=accuracy(top1(78.0), 93.0, 0.41),
        ),
        BackendResult(
            "onnxruntime CPU (model.k0.7.int8.onnx)", "onnxruntime", "model.k0.7.int8.onnx", "int8",
            (0.7,), "ok", providers=("CPUExecutionProvider",), latency={1: stats(1, 12.44)},
            accuracy=accuracy(top1(81.0), 96.5, 0.27),
        ),
    )  # fmt: skip
    return BenchReport(
        results=results,
        data={"path": "leaves/val", "kind": "imagefolder", "num_images": 41, "num_readable": 40, "labelled": labelled},
        skipped_images=({"path": "leaves/val/a/broken.jpg", "reason": "cannot identify image file"},),
        timing={"warmup": 3, "iters": 7, "batch_sizes": (1, 8), "what_was_timed": "host to host, incl. copies"},
        environment={"python": "3.11", "cpu": "test cpu", "gpu": None},
        created="2025-01-01T00:00:00+00:00",
    )


def table_text(report: BenchReport, **kwargs) -> str:
    console = Console(record=True, width=200)
    console.print(render_table(report, **kwargs))
    return console.export_text()


def test_json_round_trip_is_exact(tmp_path):
    report = make_report()
    path = report.write_json(tmp_path / "bench.json")
    loaded = load_report(path)
    assert loaded == report
    assert all(isinstance(b, int) for r in loaded.results for b in r.latency)
    assert loaded.results[0].latency[8].p50_ms == report.results[0].latency[8].p50_ms
    raw = json.loads(path.read_text())
    assert list(raw)[0] == "format" and raw["format"] == f"clca_deploy.bench/{REPORT_VERSION}"
    assert list(raw["results"][0]["latency"]) == ["1", "8"]
    # Stable: the same report writes the same bytes; no temporary file is left beside it.
    assert loaded.write_json(tmp_path / "again.json").read_text() == path.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again.json", "bench.json"]


def test_unknown_or_missing_version_is_a_clear_error(tmp_path):
    d = make_report().to_dict()
    with pytest.raises(ClcaDeployError, match="newer clca-deploy"):
        BenchReport.from_dict({**d, "format": f"clca_deploy.bench/{REPORT_VERSION + 1}"})
    with pytest.raises(ClcaDeployError, match="no 'format'"):
        BenchReport.from_dict({k: v for k, v in d.items() if k != "format"})
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ClcaDeployError, match="not valid JSON"):
        load_report(tmp_path / "bad.json")
    with pytest.raises(ClcaDeployError, match="does not exist"):
        load_report(tmp_path / "missing.json")
    d["results"][2]["reason"] = None  # a hand-edited file is user input, not a programming error
    with pytest.raises(ClcaDeployError, match="needs a reason"):
        BenchReport.from_dict(d)


def test_backend_result_validation():
    with pytest.raises(ValueError, match="status"):
        BackendResult("x", "torch", "m.pth", "fp32", None, "broken", reason="?")
    with pytest.raises(ValueError, match="needs a reason"):
        BackendResult("x", "torch", "m.pth", "fp32", None, "failed", reason="  ")
    with pytest.raises(ValueError, match="batch size"):
        BackendResult("x", "torch", "m.pth", "fp32", None, "ok", latency={8: stats(1, 1.0)})


def test_table_shows_every_row_with_numbers_from_the_objects():
    report = make_report()
    text = table_text(report)
    for result in report.results:
        assert result.label in text
    assert "TensorRT is not installed (pip install tensorrt)" in text
    assert "fp16 needs a GPU execution provider" in text
    assert "(reference)" in text
    for result in report.results:
        for stats_ in result.latency.values():
            assert f"{stats_.p50_ms:.2f}" in text
            assert f"{stats_.images_per_second:.1f}" in text
    assert f"{report.results[0].accuracy.top1:.2f}" in text
    assert f"{report.results[4].accuracy.max_abs_logit_error:.3g}" in text
    assert "1 unreadable images skipped" in text
    # Failed and skipped rows keep their place, in report order.
    positions = [text.index(r.label) for r in report.results]
    assert positions == sorted(positions)


def test_table_for_one_batch_size():
    report = make_report()
    text = table_text(report, batch_size=8)
    reference = report.results[0]
    assert f"{reference.latency[8].p50_ms:.2f}" in text and f"{reference.latency[1].p50_ms:.2f}" not in text
    with pytest.raises(ClcaDeployError, match="batch size 32"):
        render_table(report, batch_size=32)


def test_plot_writes_a_readable_png(tmp_path):
    image = pytest.importorskip("matplotlib.image")
    path = plot_accuracy_latency(make_report(), tmp_path / "plot.png")
    assert path == tmp_path / "plot.png"
    assert path.read_bytes()[:8] == PNG_MAGIC
    pixels = image.imread(path)
    assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels.shape[1] > 100
    assert [p.name for p in tmp_path.iterdir()] == ["plot.png"]


def test_plot_without_labels_uses_agreement(tmp_path):
    pytest.importorskip("matplotlib")
    path = plot_accuracy_latency(make_report(labelled=False), tmp_path / "agreement.png", batch_size=8)
    assert path.read_bytes()[:8] == PNG_MAGIC  # two points at batch 8: reference (100 %) and onnxruntime


def test_plot_errors_leave_nothing_behind(tmp_path):
    pytest.importorskip("matplotlib")
    with pytest.raises(ClcaDeployError, match="does not exist"):
        plot_accuracy_latency(make_report(), tmp_path / "missing" / "plot.png")
    assert not (tmp_path / "missing").exists()
    with pytest.raises(ClcaDeployError, match="nothing to plot"):
        plot_accuracy_latency(make_report(), tmp_path / "plot.png", batch_size=32)
    assert list(tmp_path.iterdir()) == []


def test_numpy_scalars_and_tuples_survive_the_round_trip(tmp_path):
    np = pytest.importorskip("numpy")
    acc = AccuracyResult(10, np.float32(81.25), None, None, None, None)
    assert type(acc.top1) is float and not math.isnan(acc.top1)
    report = make_report()
    assert report.timing["batch_sizes"] == [1, 8]  # stored as JSON reads it back
    assert load_report(report.write_json(tmp_path / "r.json")).timing == report.timing


def test_print_table_to_a_pipe_does_not_cut_numbers(capsys, monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)  # a pipe without COLUMNS (pytest-xdist's workers set it to 80)
    from clca_deploy.bench.table import print_table

    report = make_report()
    print_table(report)  # stdout is captured, not a terminal: rich alone would assume 80 columns
    printed = capsys.readouterr().out
    assert "…" not in printed
    assert all(r.label in printed for r in report.results)
    assert f"{report.results[1].latency[8].p50_ms:.2f}" in printed


def test_plot_one_point_and_the_sweep_curve(tmp_path):
    pytest.importorskip("matplotlib")
    from dataclasses import replace

    from clca_deploy.bench.plot import _groups, _is_curve, plottable_points

    report = make_report()
    points, left_out = plottable_points(report, batch_size=1)
    curves = [[p.result.keep_rate for p in g] for g in _groups(points) if _is_curve(g)]
    assert curves == [[(0.5,), (0.7,)]]  # the int8 sweep, sorted by latency; the reference stands alone
    assert len(left_out) == 2 and "(failed)" in left_out[0]

    one = replace(report, results=(report.results[0], report.results[2]))
    path = plot_accuracy_latency(one, tmp_path / "one.png", batch_size=8, title="one point")
    assert path.read_bytes()[:8] == PNG_MAGIC


def test_plot_without_matplotlib_says_what_to_install(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)  # import now raises ImportError
    with pytest.raises(ClcaDeployError, match="pip install matplotlib"):
        plot_accuracy_latency(make_report(), tmp_path / "plot.png")


def with_power(report: BenchReport) -> BenchReport:
    """The report with a power reading on the onnxruntime fp32 row at batch 1 and a reason elsewhere."""
    from dataclasses import replace

    def power(result: BackendResult) -> BackendResult:
        latency = {}
        for size, s in result.latency.items():
            if result.backend == "onnxruntime" and result.precision == "fp32" and size == 1:
                s = replace(s, power_w=7.25, energy_mj_per_image=168.0, power_source="tegrastats VDD_IN",
                            power_mode="15W", power_samples=12)  # fmt: skip
            else:
                s = replace(s, power_reason="not measured: power disabled")
            latency[size] = s
        return replace(result, latency=latency)

    return replace(report, results=tuple(power(r) for r in report.results))


def test_power_fields_in_the_json_and_the_table(tmp_path):
    report = with_power(make_report())
    loaded = load_report(report.write_json(tmp_path / "power.json"))
    assert loaded == report
    raw = json.loads((tmp_path / "power.json").read_text())["results"][1]["latency"]["1"]
    assert raw["power_w"] == 7.25 and raw["energy_mj_per_image"] == 168.0 and raw["power_reason"] is None
    assert raw["power_source"] == "tegrastats VDD_IN" and raw["power_mode"] == "15W" and raw["power_samples"] == 12
    text = table_text(report)
    assert "mJ/img" in text and " 7.2 " in text and " 168.0 " in text  # headers wrap: "W" above "b1"
    assert "tegrastats VDD_IN, power mode 15W" in text
    assert "no power reading for some rows: not measured: power disabled" in text


def test_power_columns_only_when_some_row_has_a_reading():
    report = make_report()
    from dataclasses import replace

    no_sensor = replace(
        report,
        results=tuple(
            replace(r, latency={b: replace(s, power_reason="no power sensor: here") for b, s in r.latency.items()})
            for r in report.results
        ),
    )
    text = table_text(no_sensor)
    assert "mJ/img" not in text and "power: no power sensor: here" in text


def test_reports_written_before_power_was_measured_still_load():
    from clca_deploy.bench.power.window import POWER_FIELDS

    d = make_report().to_dict()
    for result in d["results"]:
        for stats_ in result["latency"].values():
            for name in POWER_FIELDS:
                del stats_[name]
    loaded = BenchReport.from_dict(d)
    assert loaded == make_report()
    assert loaded.results[0].latency[1].power_w is None and loaded.results[0].latency[1].power_reason is None

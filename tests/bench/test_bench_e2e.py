"""End to end on CPU: bench the torch reference and its ONNX export on the real leaves."""

from __future__ import annotations

import json

import pytest

from clca_deploy.bench.report import load_report
from clca_deploy.bench.table import format_ms
from clca_deploy.bench.run import BenchConfig, run_bench
from clca_deploy.errors import ClcaDeployError
from tests.conftest import LEAVES_DIR, require_shared


def test_bench_reference_and_onnx_on_real_leaves(plain_onnx, tmp_path, monkeypatch, capsys):
    import sys

    from clca_deploy import cli

    checkpoint, onnx_path = plain_onnx
    data = require_shared(LEAVES_DIR / "test")
    missing = tmp_path / "missing.onnx"
    out = tmp_path / "report.json"
    monkeypatch.setattr(
        sys, "argv",
        ["clca-deploy", "bench", "--data", str(data), "--reference", str(checkpoint), "--model", str(onnx_path),
         "--model", str(missing), "--batch-sizes", "1,4", "--warmup", "1", "--iters", "3", "--out", str(out)],
    )
    try:
        cli.main()
    except SystemExit as exc:
        assert not exc.code
    printed = capsys.readouterr().out

    report = load_report(out)
    reference, deployed, failed = report.results
    assert reference.is_reference and reference.status == "ok" and deployed.status == "ok"
    assert report.data["num_readable"] == 180 and report.data["labelled"]
    assert deployed.accuracy.num_images == 180
    assert deployed.accuracy.top1_agreement == 100.0
    # Measured: max 1.25e-4, mean 3.5e-6. The max comes from one leaf whose own logits move by
    # 1.3e-3 under a 1e-5 input change (a near-tie in token selection of these random weights);
    # no onnxruntime optimisation level brings it under 1e-4, so the bound is 2e-4 plus a tight mean.
    assert deployed.accuracy.max_abs_logit_error < 2e-4
    assert deployed.accuracy.mean_abs_logit_error < 1e-5
    assert deployed.accuracy.top1 == reference.accuracy.top1  # random weights: a number, equal for both
    assert set(deployed.latency) == {1, 4} and len(deployed.latency[4].samples_ms) == 3
    assert deployed.peak_rss_mb is None or deployed.peak_rss_mb > 0
    assert failed.status == "failed" and "not found" in failed.reason  # kept, with its reason
    assert (tmp_path / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The table shows the numbers the JSON holds.
    assert format_ms(deployed.latency[1].p50_ms) in printed
    assert json.loads(out.read_text())["version"] == 1


def test_bench_needs_images(tmp_path, plain_onnx):
    _, onnx_path = plain_onnx
    with pytest.raises(ClcaDeployError, match="no images|contain no images|No image"):
        run_bench(BenchConfig(models=(onnx_path,), data=tmp_path, progress=False), log=lambda _: None)


def test_bench_counts_and_names_unreadable_images(plain_onnx, tmp_path):
    import shutil

    _, onnx_path = plain_onnx
    leaves = sorted(require_shared(LEAVES_DIR / "test").rglob("*.jpg"))[:3]
    for leaf in leaves:
        shutil.copy(leaf, tmp_path / leaf.name)
    (tmp_path / "broken.jpg").write_bytes(leaves[0].read_bytes()[:500])
    config = BenchConfig(models=(onnx_path,), data=tmp_path, batch_sizes=(1,), warmup=0, iters=1, progress=False)
    report = run_bench(config, log=lambda _: None)
    assert [s["path"].split("/")[-1] for s in report.skipped_images] == ["broken.jpg"]
    assert report.data["num_images"] == 4 and report.data["num_readable"] == 3
    assert report.results[0].accuracy.num_images == 3 and report.results[0].accuracy.top1 is None  # unlabelled


def test_sweep_exports_each_keep_rate_and_reuses_them(tmp_path):
    from clca_deploy.bench.sweep import SweepConfig, run_sweep
    from tests.conftest import load_golden

    checkpoint, _, _ = load_golden("evit_deit_tiny_plain_k0.5_224")
    data = require_shared(LEAVES_DIR / "test")
    bench = BenchConfig(models=(), data=data, batch_sizes=(1,), warmup=0, iters=2, limit=15, progress=False)
    config = SweepConfig(checkpoint, (0.25, 1.0), tmp_path / "sweep", bench)
    report = run_sweep(config, log=lambda _: None)
    keeps = [r.keep_rate for r in report.results]
    assert keeps == [(0.5,), (0.25,), (1.0,)]  # the reference at its trained rate, then the sweep
    assert all(r.status == "ok" for r in report.results)
    lines = []
    run_sweep(config, log=lines.append)
    assert sum("reusing" in line for line in lines) == 2

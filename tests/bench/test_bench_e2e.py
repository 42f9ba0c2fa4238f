"""End to end on CPU: bench the torch reference and its ONNX export on the real leaves."""

from __future__ import annotations

import json
from pathlib import Path

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
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    captured = capsys.readouterr()
    printed = captured.out
    # The missing model fails its row, and the run says so with exit code 1 after writing the report.
    assert exit_info.value.code == 1 and "1 of 3 rows failed" in captured.err

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
    from tests.bench.test_report_schema import schema_errors

    assert schema_errors(json.loads(out.read_text())) == []  # docs/bench-report.schema.json


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


def _named_copy(onnx_path, tmp_path, names):
    """The export with class names in its metadata, as `clca-deploy train` checkpoints give their exports."""
    import onnx

    from clca_deploy.metadata import metadata_props, write_metadata

    model = onnx.load(str(onnx_path))
    props = metadata_props(model)
    props["class_names"] = json.dumps(list(names))
    write_metadata(model, props)
    path = tmp_path / "named.onnx"
    onnx.save(model, str(path))
    return path


def _named_leaf_model(plain_onnx, tmp_path):
    """The real test leaves, their class names, and the export carrying those names."""
    leaves = require_shared(LEAVES_DIR / "test")
    classes = sorted(p.name for p in leaves.iterdir() if p.is_dir())
    return leaves, classes, _named_copy(plain_onnx[1], tmp_path, classes)


def _linked_split(root, leaves, folders, per_class):
    """An ImageFolder at ``root``: each folder (key) links the first images of a leaf class (value)."""
    for folder, leaf_class in folders.items():
        (root / folder).mkdir(parents=True)
        for image in sorted((leaves / leaf_class).iterdir())[:per_class]:
            (root / folder / image.name).symlink_to(image)
    return root


def _bench_row(model, data):
    config = BenchConfig(models=(model,), data=data, batch_sizes=(1,), warmup=0, iters=1, progress=False, power=False)
    return run_bench(config, log=lambda _: None).results[0]


def test_a_split_missing_a_class_scores_what_predict_names_imply(plain_onnx, tmp_path):
    from clca_deploy.runtime import open_backend, predict_images

    leaves, classes, named = _named_leaf_model(plain_onnx, tmp_path)
    # The first class is missing: every folder position shifts by one.
    split = _linked_split(tmp_path / "split", leaves, {name: name for name in classes[1:]}, per_class=3)
    row = _bench_row(named, split)
    with open_backend(named) as backend:
        run = predict_images(backend, [split], top_k=1, progress=False)
    correct = sum(p.top[0].name == Path(p.path).parent.name for p in run.predictions)
    assert row.status == "ok" and row.accuracy.num_images == len(run.predictions) == 42
    assert row.accuracy.top1 == pytest.approx(100.0 * correct / len(run.predictions))
    assert "1 of the model's classes have no images" in row.reason


def test_renamed_class_folders_fail_the_row_instead_of_scoring_silently(plain_onnx, tmp_path):
    leaves, classes, named = _named_leaf_model(plain_onnx, tmp_path)
    renamed = {f"class_{position}": name for position, name in enumerate(classes[:2])}
    row = _bench_row(named, _linked_split(tmp_path / "renamed", leaves, renamed, per_class=1))
    assert row.status == "failed" and "'class_0'" in row.reason and "not among the model's 15 classes" in row.reason


def test_onnxruntime_and_openvino_rows_against_the_pytorch_reference(plain_onnx):
    pytest.importorskip("openvino")
    checkpoint, onnx_path = plain_onnx
    data = require_shared(LEAVES_DIR / "test")
    config = BenchConfig(
        models=(onnx_path,), data=data, reference=checkpoint, batch_sizes=(2,), warmup=0, iters=1, limit=30,
        runtimes=("onnxruntime", "openvino"), progress=False, power=False,
    )
    reference, ort, ov = run_bench(config, log=lambda _: None).results
    assert (reference.backend, ort.backend, ov.backend) == ("torch", "onnxruntime", "openvino")
    assert ov.status == "ok" and ov.inference_precision == "f32" and ort.inference_precision is None
    assert ov.accuracy.top1_agreement == 100.0 and ov.accuracy.max_abs_logit_error < 2e-4
    assert ov.accuracy.top1 == ort.accuracy.top1 == reference.accuracy.top1

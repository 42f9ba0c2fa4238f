"""docs/bench-report.schema.json documents the bench report: the reports this tool writes validate against
it (a real run's included), reports missing a field or carrying an undocumented one do not, and the old
`"version": 1` form still validates and loads."""

from __future__ import annotations

import json
import os

import pytest

from clca_deploy.bench.report import BenchReport, load_report
from clca_deploy.errors import ClcaDeployError
from tests.bench.test_report import make_report
from tests.conftest import REPO_ROOT

SCHEMA = REPO_ROOT / "docs" / "bench-report.schema.json"


def _jsonschema():
    try:
        import jsonschema
    except ImportError:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip("jsonschema is not installed (it is in the dev extra)")
    return jsonschema


def schema_errors(report: dict) -> list[str]:
    """Every way ``report`` breaks the schema, as readable lines (none: it validates)."""
    jsonschema = _jsonschema()
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
    return [f"{'/'.join(map(str, error.absolute_path))}: {error.message}" for error in validator.iter_errors(report)]


def written(report: BenchReport, tmp_path) -> dict:
    return json.loads(report.write_json(tmp_path / "bench.json").read_text())


@pytest.mark.parametrize("labelled", [True, False])
def test_the_written_report_of_the_bench_tests_validates(tmp_path, labelled):
    raw = written(make_report(labelled), tmp_path)
    assert raw["format"] == "clca_deploy.bench/1" and "version" not in raw
    assert schema_errors(raw) == []


def test_a_real_run_validates(tmp_path):
    """run_bench on a tiny ONNX file: the environment block and every row as the harness fills them."""
    from clca_deploy.bench.run import BenchConfig, run_bench
    from tests.test_outputs_safety import write_tiny_onnx
    from tests.train.conftest import write_image_folder

    model = write_tiny_onnx(tmp_path / "tiny.onnx")
    images = write_image_folder(tmp_path / "images", classes=3, per_class=2, size=32)
    config = BenchConfig(
        models=(model, tmp_path / "missing.onnx"), data=images, reference=model, batch_sizes=(1, 2), warmup=0,
        iters=2, progress=False, power=False,
    )
    raw = written(run_bench(config, log=lambda _: None), tmp_path)
    assert [row["status"] for row in raw["results"]] == ["ok", "ok", "failed"]
    assert schema_errors(raw) == []


def test_the_schema_refuses_what_the_report_never_holds(tmp_path):
    raw = written(make_report(), tmp_path)
    missing_field = {key: value for key, value in raw.items() if key != "timing"}
    undocumented = {**raw, "results": [{**raw["results"][0], "colour": "red"}, *raw["results"][1:]]}
    failed_without_reason = json.loads(json.dumps(raw))
    failed_without_reason["results"][2]["reason"] = None
    both_forms = {**raw, "version": 1}
    other_format = {**raw, "format": "clca_deploy.doctor/1"}
    for bad, where in ((missing_field, "timing"), (undocumented, "colour"), (failed_without_reason, "results/2"),
                       (both_forms, ""), (other_format, "format")):
        errors = schema_errors(bad)
        assert errors and any(where in error for error in errors), (where, errors)


def test_a_report_of_the_old_version_form_validates_and_loads(tmp_path):
    raw = written(make_report(), tmp_path)
    old = {"version": 1, **{key: value for key, value in raw.items() if key != "format"}}
    assert schema_errors(old) == []
    (tmp_path / "old.json").write_text(json.dumps(old))
    assert load_report(tmp_path / "old.json") == make_report()


@pytest.mark.parametrize("header, message", [
    ({"format": "clca_deploy.bench/2"}, "newer clca-deploy"),
    ({"version": 2}, "newer clca-deploy"),
    ({"version": True}, "not a report this tool wrote"),
    ({"format": "clca_deploy.doctor/1"}, "its format is 'clca_deploy.doctor/1'"),
    ({"format": 1}, "its format is 1"),
    ({}, "no 'format' field"),
])
def test_the_reader_refuses_other_formats_and_versions(tmp_path, header, message):
    body = {key: value for key, value in written(make_report(), tmp_path).items() if key != "format"}
    with pytest.raises(ClcaDeployError, match=message):
        BenchReport.from_dict({**header, **body})

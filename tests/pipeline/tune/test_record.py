"""tune's resumable record: round trip, resume after an interrupted run, and a refusal for each bad file."""

from __future__ import annotations

import copy
import dataclasses
import json
import os

import pytest

from clca_deploy.errors import ClcaDeployError
from clca_deploy.pipeline.tune.model import Candidate, Measurement
from clca_deploy.pipeline.tune.record import (
    MAX_RECORD_BYTES,
    MEASUREMENT_FIELDS,
    RECORD_FILE,
    TuneRecord,
    read_record,
    resumable,
    write_record,
)
from clca_deploy.pipeline.tune.rules import screening_order

SETTINGS = {"checkpoint_sha256": "ab" * 32, "batch": 1, "iters": 50, "data": "/data/leaves",
            "machine": {"cpu": "Xeon", "gpu": None}, "keep_rates": [0.25, 0.5]}
ORT = Candidate(0.25, "int8", "onnxruntime")
OV = Candidate(0.5, "fp32", "openvino", "bf16")
DONE = (
    Measurement(ORT, 1234, p50_ms=10.5, p90_ms=12.25, top1=88.5, agreement=99.0, model_path="w/m.int8.onnx",
                samples_ms=(10.0, 10.5, 12.25)),
    Measurement(OV, 2400, status="failed", reason="openvino could not read the file"),
)
VALID = {"format": "clca_deploy.tune-record/1", "settings": {"batch": 1},
         "measurements": [{"candidate": {"keep_rate": 0.5, "precision": "int8", "runtime": "onnxruntime",
                                         "inference_precision": None},
                           "tokens": 99, "status": "ok", "reason": None, "p50_ms": 9.0, "p90_ms": 10.0,
                           "energy_mj_per_image": None, "top1": 80.0, "agreement": 99.5, "model_path": None,
                           "samples_ms": [9.0, 10.0]}]}


def test_a_record_reads_back_as_written(tmp_path):
    path = tmp_path / RECORD_FILE
    write_record(path, TuneRecord(SETTINGS, DONE))
    assert json.loads(path.read_text())["format"] == "clca_deploy.tune-record/1"
    assert read_record(path) == TuneRecord(SETTINGS, DONE)
    assert list(tmp_path.iterdir()) == [path]  # no temporary left beside it


def test_no_record_yet_is_none(tmp_path):
    assert read_record(tmp_path / RECORD_FILE) is None


def test_resume_after_an_interrupted_run_measures_only_the_rest(tmp_path):
    path = tmp_path / RECORD_FILE
    a, b = Candidate(0.25, "int8", "onnxruntime"), Candidate(0.5, "int8", "onnxruntime")
    c, d = Candidate(0.25, "fp32", "openvino", "f32"), Candidate(0.5, "fp32", "openvino", "f32")
    first = [Measurement(a, 50, p90_ms=5.0), Measurement(c, 50, p90_ms=7.0)]
    for done in range(1, len(first) + 1):  # rewritten after each measurement; the run stops after two
        write_record(path, TuneRecord(SETTINGS, tuple(first[:done])))
    reused = resumable(read_record(path), json.loads(json.dumps(SETTINGS)))
    assert reused == {"onnxruntime/int8/-/keep0.25": first[0], "openvino/fp32/f32/keep0.25": first[1]}
    todo = [cand for cand in screening_order([a, b, c, d]) if cand.key not in reused]
    assert todo == [b, d]


@pytest.mark.parametrize("change", [{"checkpoint_sha256": "cd" * 32}, {"batch": 8}, {"machine": {"cpu": "Ryzen", "gpu": None}}])
def test_other_settings_invalidate_the_record(change):
    record = TuneRecord(SETTINGS, DONE)
    assert resumable(record, SETTINGS) == {m.candidate.key: m for m in DONE}
    assert resumable(record, {**SETTINGS, **change}) == {}
    assert resumable(None, SETTINGS) == {}


def test_settings_compare_as_json():
    record = TuneRecord({"keep_rates": [0.25, 0.5]}, DONE)
    assert len(resumable(record, {"keep_rates": (0.25, 0.5)})) == 2


def test_a_hand_truncated_record_is_refused_in_one_line(tmp_path):
    path = tmp_path / RECORD_FILE
    write_record(path, TuneRecord(SETTINGS, DONE))
    path.write_text(path.read_text()[:200])
    with pytest.raises(ClcaDeployError) as caught:
        read_record(path)
    message = str(caught.value)
    assert "\n" not in message and str(path) in message and "is not valid JSON" in message
    assert message.endswith("delete it or pass another -o folder.")


def test_the_reader_checks_every_field_of_measurement():
    # a field added to Measurement must get a check here, or records would carry it unchecked
    assert MEASUREMENT_FIELDS == {field.name for field in dataclasses.fields(Measurement)}


def _measure(**changes):
    def mutate(data):
        data["measurements"][0].update(changes)
    return mutate


def _cand(**changes):
    def mutate(data):
        data["measurements"][0]["candidate"].update(changes)
    return mutate


def _top(**changes):
    return lambda data: data.update(changes)


BAD_PAYLOADS = {
    "not ours": (lambda data: data.clear() or data.update(hello=1), "is not a clca-deploy tune record"),
    "another version": (_top(format="clca_deploy.tune-record/2"), "this version does not read"),
    "extra top field": (_top(extra=1), "unknown field 'extra'"),
    "settings a list": (_top(settings=[1]), "settings is a list"),
    "settings too deep": (_top(settings={"a": {"b": {"c": {"d": {"e": 1}}}}}), "nested or sized beyond"),
    "settings text too long": (_top(settings={"data": "x" * 5000}), "settings.data is"),
    "measurements an object": (_top(measurements={}), "measurements is an object"),
    "too many measurements": (lambda data: data.update(measurements=data["measurements"] * 10_001), "at most 10,000"),
    "negative p90": (_measure(p90_ms=-1.0), "measurements[0].p90_ms is -1.0"),
    "huge integer p50": (_measure(p50_ms=10**400), "measurements[0].p50_ms is"),
    "text top1": (_measure(top1="high"), "measurements[0].top1 is 'high'"),
    "agreement over 100": (_measure(agreement=100.5), "measurements[0].agreement is 100.5; expected a number from 0 to 100"),
    "agreement negative": (_measure(agreement=-0.1), "measurements[0].agreement is -0.1"),
    "unknown status": (_measure(status="done"), "measurements[0].status is 'done'"),
    "tokens zero": (_measure(tokens=0), "measurements[0].tokens is 0"),
    "tokens fractional": (_measure(tokens=1.5), "measurements[0].tokens is 1.5"),
    "tokens boolean": (_measure(tokens=True), "measurements[0].tokens is True"),
    "reason too long": (_measure(reason="x" * 5000), "measurements[0].reason is"),
    "negative sample": (_measure(samples_ms=[1.0, -2.0]), "measurements[0].samples_ms[1] is -2.0"),
    "too many samples": (_measure(samples_ms=[1.0] * 100_001), "at most 100,000 latencies"),
    "unknown field": (_measure(color="red"), "unknown field 'color'"),
    "no candidate": (lambda data: data["measurements"][0].pop("candidate"), "measurements[0] has no candidate"),
    "unknown precision": (_cand(precision="int4"), "candidate.precision is 'int4'"),
    "keep rate zero": (_cand(keep_rate=0), "candidate.keep_rate is 0; expected a number above 0 and at most 1"),
    "keep rate over one": (_cand(keep_rate=1.5), "candidate.keep_rate is 1.5"),
    "keep rate boolean": (_cand(keep_rate=True), "candidate.keep_rate is True"),
    "runtime with a newline": (_cand(runtime="ort\nok"), "candidate.runtime is 'ort\\nok'"),
    "runtime too long": (_cand(runtime="r" * 65), "candidate.runtime is"),
    "inference precision a number": (_cand(inference_precision=16), "candidate.inference_precision is 16"),
    "candidate twice": (lambda data: data["measurements"].append(copy.deepcopy(data["measurements"][0])),
                        "measures onnxruntime/int8/-/keep0.5 twice"),
}


@pytest.mark.parametrize("name", BAD_PAYLOADS)
def test_each_bad_field_is_refused_in_one_line(tmp_path, name):
    mutate, expected = BAD_PAYLOADS[name]
    data = copy.deepcopy(VALID)
    mutate(data)
    path = tmp_path / RECORD_FILE
    path.write_text(json.dumps(data))
    _assert_refused(path, expected)


BAD_TEXTS = {
    "NaN": (json.dumps(VALID).replace('"p90_ms": 10.0', '"p90_ms": NaN'), "holds NaN"),
    "Infinity": (json.dumps(VALID).replace('"p50_ms": 9.0', '"p50_ms": Infinity'), "holds Infinity"),
    "a repeated key": (json.dumps(VALID).replace('"tokens": 99', '"tokens": 99, "tokens": 98'), "repeats a key"),
    "truncated": (json.dumps(VALID)[:100], "is not valid JSON"),
    "a list": ("[]", "is not a clca-deploy tune record"),
    "nested too deeply": ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
}


@pytest.mark.parametrize("name", BAD_TEXTS)
def test_each_bad_text_is_refused_in_one_line(tmp_path, name):
    text, expected = BAD_TEXTS[name]
    path = tmp_path / RECORD_FILE
    path.write_text(text)
    _assert_refused(path, expected)


def test_bytes_that_are_not_utf8_are_refused(tmp_path):
    path = tmp_path / RECORD_FILE
    path.write_bytes(b'{"format": "\xff"}')
    _assert_refused(path, "is not valid JSON (UnicodeDecodeError")


def test_a_file_over_the_size_cap_is_refused_unread(tmp_path):
    path = tmp_path / RECORD_FILE
    with open(path, "wb") as handle:
        handle.truncate(MAX_RECORD_BYTES + 1)
    _assert_refused(path, "is larger than the 8,388,608 bytes")


def test_a_folder_or_a_pipe_in_its_place_is_refused(tmp_path):
    path = tmp_path / RECORD_FILE
    path.mkdir()
    _assert_refused(path, "is not a regular file")
    if hasattr(os, "mkfifo"):
        fifo = tmp_path / "fifo.json"
        os.mkfifo(fifo)
        _assert_refused(fifo, "is not a regular file")  # refused without opening it, so it cannot block


def _assert_refused(path, expected):
    with pytest.raises(ClcaDeployError) as caught:
        read_record(path)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"tune record {path}: ")
    assert expected in message
    assert message.endswith("; delete it or pass another -o folder.")


def test_the_valid_template_itself_reads(tmp_path):
    # each refusal above is VALID with one change: VALID itself must read
    path = tmp_path / RECORD_FILE
    path.write_text(json.dumps(VALID))
    (only,) = read_record(path).measurements
    assert only == Measurement(Candidate(0.5, "int8", "onnxruntime"), 99, p50_ms=9.0, p90_ms=10.0, top1=80.0,
                               agreement=99.5, samples_ms=(9.0, 10.0))


def test_writing_a_record_that_could_not_be_read_back_is_a_bug(tmp_path):
    nan = Measurement(ORT, 10, p90_ms=float("nan"))
    with pytest.raises(ValueError, match="could not be read back"):
        write_record(tmp_path / RECORD_FILE, TuneRecord(SETTINGS, (nan,)))
    with pytest.raises(ValueError, match="could not be read back"):
        write_record(tmp_path / RECORD_FILE, TuneRecord(SETTINGS, (Measurement(ORT, 10, reason="x" * 5000),)))
    assert not (tmp_path / RECORD_FILE).exists()


def test_a_record_too_large_to_read_back_is_not_written(tmp_path):
    samples = tuple([10.0] * 100_000)  # about 1.2 MB each as laid out: eight pass the 8 MB cap
    many = tuple(Measurement(Candidate(keep, "int8", "onnxruntime"), 10, p90_ms=10.0, samples_ms=samples)
                 for keep in (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9))
    with pytest.raises(ValueError, match="keep fewer samples"):
        write_record(tmp_path / RECORD_FILE, TuneRecord(SETTINGS, many))
    assert not (tmp_path / RECORD_FILE).exists()


def test_a_candidate_pruned_before_its_export_may_have_no_token_count(tmp_path):
    pruned = Measurement(ORT, 0, status="pruned", reason="onnxruntime/int8/-/keep0.1 took 30 ms p90 > 25 ms budget")
    path = tmp_path / RECORD_FILE
    write_record(path, TuneRecord(SETTINGS, (pruned,)))
    assert read_record(path).measurements == (pruned,)

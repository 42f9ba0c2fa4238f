"""Issue 25: the placement search's options and its report, as a careless or hostile user would use them.

Each refusal is the CLI's one line with exit 2, before any image is decoded, and nothing is written.
The model is the tiny mean-colour ONNX (one INT8 candidate, ``head``), so each run takes a second.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.security.harness import Snapshot, assert_refused, run_cli
from tests.security.test_calibration import NUM_IMAGES, work  # noqa: F401  (work: the same model, images and folders)

def _calibrate(work: Path, *extra):
    args = ["calibrate", work / "models" / "model.onnx", "--data", work / "images", "--num-images", NUM_IMAGES,
            "-o", work / "out" / "model.int8.onnx", *extra]
    return run_cli(args, cwd=work, env={"CLCA_DEPLOY_CACHE": str(work / "cache"), "TMPDIR": str(work / "tmp")})


def _report(work: Path, **overrides) -> Path:
    report = {"format": "clca-deploy-int8-placement", "version": 1, "target_agreement": 99.5,
              "calibration": {"method": "minmax", "images": NUM_IMAGES, "held_out_images": 2},
              "float_units": [{"unit": "head", "nodes": ["head"], "why": "made up"}]}
    report.update(overrides)
    path = work / "placement.json"
    path.write_text(json.dumps(report))
    return path


def _refused_before_work(work: Path, result, *fragments: str) -> None:
    before = Snapshot.of(work / "models")
    assert_refused(result, *fragments)
    assert before.changes() == [] and list((work / "out").iterdir()) == []
    assert list((work / "cache").iterdir()) == []  # no image was decoded


BAD_REPORTS = {
    "not json": ("{not json", "is not JSON"),
    "a list": ("[1, 2]", "is not a placement report"),
    "another format": ({"format": "nncf-ignored-scope"}, "is not a placement report"),
    "newer version": ({"version": 2}, "has version 2"),
    "units not a list": ({"float_units": {"unit": "head"}}, "no \"float_units\" list"),
    "unit not text": ({"float_units": [{"unit": 7}]}, "not a name of at most"),
    "unit with a control character": ({"float_units": [{"unit": "head\x1b[2J"}]}, "not a name of at most"),
    "unit twice": ({"float_units": [{"unit": "head"}, {"unit": "head"}]}, "names a float unit twice"),
    "no calibration": ({"calibration": None}, "no \"calibration\" object"),
    "unknown method": ({"calibration": {"method": "magic", "images": 6, "held_out_images": 2}}, "calibration method magic"),
    "images a boolean": ({"calibration": {"method": "minmax", "images": True, "held_out_images": 2}}, "calibration.images True"),
    "negative held out": ({"calibration": {"method": "minmax", "images": 6, "held_out_images": -1}}, "held_out_images -1"),
    "held out huge": ({"calibration": {"method": "minmax", "images": 6, "held_out_images": 10**12}}, "not a whole number"),
    "target above 100": ({"target_agreement": 101}, "target_agreement 101"),
    "unit of another model": ({"float_units": [{"unit": "blocks.13.attn.qkv"}]}, "does not have (first: blocks.13.attn.qkv)"),
}


@pytest.mark.parametrize("case", sorted(BAD_REPORTS))
def test_a_bad_placement_report_is_one_line(work, case):
    content, fragment = BAD_REPORTS[case]
    if isinstance(content, str):
        path = work / "placement.json"
        path.write_text(content)
    else:
        path = _report(work, **content)
    _refused_before_work(work, _calibrate(work, "--placement", path), fragment)


def test_a_placement_report_that_is_a_folder_or_too_big_is_one_line(work):
    (work / "folder.json").mkdir()
    _refused_before_work(work, _calibrate(work, "--placement", work / "folder.json"), "placement report")
    big = work / "big.json"
    with big.open("wb") as handle:
        handle.truncate((8 << 20) + 1)
    _refused_before_work(work, _calibrate(work, "--placement", big), "larger than the 8,388,608 bytes")


@pytest.mark.parametrize("args, fragment", [
    (["--target-agreement", "101"], "percentage in (0, 100]"),
    (["--target-agreement", "nan"], "percentage in (0, 100]"),
    (["--target-agreement", "0"], "percentage in (0, 100]"),
    (["--held-out-images", "3"], "pass --target-agreement too"),
    (["--target-agreement", "99", "--held-out-images", "6"], "must leave calibration images"),
    (["--target-agreement", "99", "--held-out-images", "0"], "at least 1"),
    (["--target-agreement", "99", "--held-out-data", "missing"], "held-out data missing does not exist"),
    (["--target-agreement", "99", "--placement", "p.json"], "pass one of them"),
    (["--fp16", "--target-agreement", "99"], "drop --fp16"),
    (["--fp16", "--openvino"], "drop --fp16"),
])
def test_bad_search_options_are_one_line(work, args, fragment):
    _refused_before_work(work, _calibrate(work, *args), fragment)


MEAN, STD = (0.485, 0.456), (0.229, 0.224)  # the tiny model's (ImageNet) normalisation of red and green


def _near_tie_images(root: Path, count: int = 8) -> Path:
    """Images whose normalised green mean is above the red one by less than 1/1000 of a grey level: FP32
    says green (class 1), and int8 rounds both channel means to one level, where argmax says red.

    36x36, the model's resize size, so that resizing leaves them as they are; the extra green lies in
    the 32x32 centre crop, spread as k pixels one level brighter.
    """
    folder = root / "ties" / "any"
    folder.mkdir(parents=True)
    for i in range(count):
        red = 100 + 9 * i
        green = 255 * (MEAN[1] + STD[1] * (red / 255 - MEAN[0]) / STD[0])  # the green level equal to red after normalising
        base = int(np.floor(green))
        brighter = int(np.floor((green - base) * 1024)) + 1  # of the 1024 centre pixels: just above equal
        pixels = np.zeros((36, 36, 3), dtype=np.uint8)
        pixels[:, :, 0], pixels[:, :, 1] = red, base
        centre = pixels[2:34, 2:34, 1].reshape(-1)
        centre[:brighter] += 1
        pixels[2:34, 2:34, 1] = centre.reshape(32, 32)
        Image.fromarray(pixels).save(folder / f"tie_{i}.png")
    return root / "ties"


def test_an_impossible_target_is_one_line_and_writes_nothing(work):
    ties = _near_tie_images(work)
    result = _calibrate(work, "--target-agreement", "50", "--held-out-data", ties)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("warning: calibrating on only")]
    assert len(lines) == 1, lines
    assert "no INT8 placement reaches 50% top-1 agreement with FP32 on the 8 held-out images" in lines[0]
    assert "best: 0.0% with only head in INT8" in lines[0] and "lower --target-agreement" in lines[0]
    assert list((work / "out").iterdir()) == []


def _openvino_only(work: Path) -> Path:
    """The tiny model marked as OpenVINO's form in its metadata (what `calibrate --openvino` writes)."""
    import onnx

    from clca_deploy.metadata import metadata_props, write_metadata

    model = onnx.load(str(work / "models" / "model.onnx"))
    props = metadata_props(model)
    props["only_runtime"] = "openvino"
    write_metadata(model, props)
    path = work / "models" / "model.int8.openvino.onnx"
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("command", [
    ["predict", "{model}", "{image}"],
    ["build-trt", "{model}", "-o", "{out}/m.engine"],
    ["triton-repo", "{model}", "-o", "{out}/repo"],
    ["triton-repo", "{model}", "-o", "{out}/repo", "--runtime", "onnxruntime"],
])
def test_other_runtimes_refuse_an_openvino_only_file(work, command):
    model = _openvino_only(work)
    image = next((work / "images").rglob("*.png"))
    args = [part.format(model=model, image=image, out=work / "out") for part in command]
    before = Snapshot.of(work / "models")
    result = run_cli(args, cwd=work, env={"TMPDIR": str(work / "tmp")})
    assert_refused(result, "is the openvino form of an INT8 model", "pass --runtime openvino")
    assert before.changes() == [] and list((work / "out").iterdir()) == []

"""benchmarks/cross_validation.py and leaves_split.py --folds: the pooled agreement the #25 tables quote."""

from __future__ import annotations

import sys

import pytest

from tests.conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
from clca_deploy.statistics import images_to_show, wilson_interval  # noqa: E402
from cross_validation import flipped, pool_rows  # noqa: E402
from leaves_split import split_fold  # noqa: E402


def test_wilson_interval_matches_published_values():
    # Newcombe (1998), Stat. Med. 17:857, table I, method 3 (Wilson score): 81/263 -> 0.2553-0.3662;
    # 0 of 10 -> [0, 0.2775]
    assert wilson_interval(81, 263) == pytest.approx((25.53, 36.62), abs=0.01)
    assert wilson_interval(0, 10) == pytest.approx((0.0, 27.75), abs=0.01)


def test_no_flip_in_180_scans_cannot_show_99_5_percent():
    assert wilson_interval(180, 180)[0] < 99.5
    assert wilson_interval(570, 570)[0] < 99.5 < wilson_interval(570, 570)[1]
    needed = images_to_show(99.5)  # 0.995 * 1.96^2 / 0.005 = 764.5
    assert needed == 765
    assert wilson_interval(needed, needed)[0] >= 99.5 > wilson_interval(700, 700)[0]


def _row(fold, family, variant, agreement, images, error, boxes=None):
    row = {"fold": fold, "family": family, "variant": variant, "peer": None, "label": variant,
           "accuracy": {"num_images": images, "top1": 90.0, "top5": 100.0, "top1_agreement": agreement,
                        "mean_abs_logit_error": error, "max_abs_logit_error": error * 10}}
    if boxes is not None:
        row["crop_box_equal_to_fp32"] = boxes
    return row


def test_pooling_weights_by_images_and_counts_flips():
    rows = [_row("fold0", "clca", "ov_int8", 100 * 194 / 195, 195, 0.02),
            _row("fold1", "clca", "ov_int8", 100.0, 195, 0.04),
            _row("fold2", "clca", "ov_int8", 100 * 178 / 180, 180, 0.01),
            _row("fold0", "glsim", "ov_int8", 100.0, 195, 0.01, boxes=100.0),
            _row("fold1", "glsim", "ov_int8", 100.0, 195, 0.01, boxes=100 * 193 / 195)]
    clca, glsim = pool_rows(rows)
    assert clca["flipped_scans"] == 3 and clca["accuracy"]["num_images"] == 570
    assert clca["accuracy"]["top1_agreement"] == pytest.approx(100 * 567 / 570)
    assert clca["accuracy"]["mean_abs_logit_error"] == pytest.approx((0.02 * 195 + 0.04 * 195 + 0.01 * 180) / 570)
    assert clca["accuracy"]["max_abs_logit_error"] == pytest.approx(0.4)
    assert clca["agreement_interval_95"] == wilson_interval(567, 570)
    assert clca["folds"] == ["fold0", "fold1", "fold2"] and clca["fold"] == "pooled"
    assert glsim["crop_box_equal_to_fp32"] == pytest.approx(100 * 388 / 390)


def test_flipped_rounds_a_percentage_back_to_a_count():
    assert flipped({"num_images": 180, "top1_agreement": 100 * 179 / 180}) == 1
    assert flipped({"num_images": 195, "top1_agreement": 100.0}) == 0


def test_folds_hold_out_every_scan_once(tmp_path):
    source = tmp_path / "leaves"
    for part, count in (("train", 5), ("test", 2)):
        for name in ("a", "b"):
            folder = source / part / name
            folder.mkdir(parents=True)
            for i in range(count):
                (folder / f"{part}{i}.jpg").write_bytes(b"x")
    held_out = []
    for fold in range(3):
        root = tmp_path / f"fold{fold}"
        counts = split_fold(source, root, 3, fold)
        assert sum(counts.values()) == 14
        parts = {p: {f.relative_to(root / p) for f in (root / p).rglob("*.jpg")} for p in ("train", "val", "test")}
        assert not (parts["train"] & parts["test"]) and not (parts["val"] & parts["test"]) and not (parts["train"] & parts["val"])
        held_out += sorted(parts["test"])
    assert len(held_out) == len(set(held_out)) == 14

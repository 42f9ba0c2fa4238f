"""Accuracy rows of the folds of a cross-validation, pooled: every scan judged once, by the model that never saw it.

`cpu_runtimes.py --fold DIR` (repeated) measures each fold's trained models on that fold's test
scans; this pools the rows of one family and variant into one row over all the folds' scans.
Percentages are weighted by each fold's image count; the worst logit error is the worst of any fold.
Each pooled row also counts the flipped scans and gives a 95% Wilson interval for the agreement, so
a table can say how far a measured 99.6% is from 99.5%.
"""

from __future__ import annotations

from collections import defaultdict

from clca_deploy.statistics import wilson_interval

WEIGHTED = ("top1", "top5", "top1_agreement", "mean_abs_logit_error")


def flipped(accuracy: dict) -> int:
    """Scans whose top-1 differs from the reference's, from a row's percentage and image count."""
    return round(accuracy["num_images"] * (100.0 - accuracy["top1_agreement"]) / 100.0)


def pool_rows(rows: list[dict]) -> list[dict]:
    """One row per (family, variant) over every fold that measured it, in first-seen order."""
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for row in rows:
        if (row.get("accuracy") or {}).get("top1_agreement") is not None:
            groups[(row["family"], row["variant"])].append(row)
    return [_pooled(family, variant, members) for (family, variant), members in groups.items()]


def _pooled(family: str, variant: str, members: list[dict]) -> dict:
    accuracies = [m["accuracy"] for m in members]
    images = sum(a["num_images"] for a in accuracies)
    pooled = {"num_images": images, "max_abs_logit_error": max(a["max_abs_logit_error"] for a in accuracies)}
    for key in WEIGHTED:
        values = [(a[key], a["num_images"]) for a in accuracies if a.get(key) is not None]
        pooled[key] = sum(v * n for v, n in values) / sum(n for _, n in values) if values else None
    flips = sum(flipped(a) for a in accuracies)
    row = {
        "label": f"{variant}: pooled over {len(members)} folds ({images} held-out scans)",
        "family": family, "variant": variant, "peer": members[0].get("peer"), "fold": "pooled",
        "folds": [m["fold"] for m in members], "status": "ok", "accuracy": pooled,
        "flipped_scans": flips, "agreement_interval_95": wilson_interval(images - flips, images),
    }
    boxes = [(m["crop_box_equal_to_fp32"], m["accuracy"]["num_images"]) for m in members
             if m.get("crop_box_equal_to_fp32") is not None]
    if boxes:
        row["crop_box_equal_to_fp32"] = sum(v * n for v, n in boxes) / sum(n for _, n in boxes)
    return row

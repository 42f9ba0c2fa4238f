"""The markdown tables of a `cpu_runtimes.py` report (docs/benchmarks.md shows them)."""

from __future__ import annotations


SPEED_COLUMNS = ("ort_fp32", "ov_bf16", "ort_int8", "ov_int8_bf16", "ov_int8_openvino", "ov_int8_openvino_bf16",
                 "ov_scores_int8_openvino", "ov_scores_int8_openvino_bf16", "ov_searched_openvino", "ov_searched_openvino_bf16",
                 "nncf_int8", "nncf_int8_bf16", "ort_default_int8")


def speed_table(report: dict) -> str:
    """Speed-up over onnxruntime FP32 per keep rate and batch; the best of ours and of NNCF in bold."""
    lines = ["| keep, batch | " + " | ".join(SPEED_COLUMNS) + " |", "|---" * (len(SPEED_COLUMNS) + 1) + "|"]
    for row in report["speed"]:
        for batch, cells in row["latency"].items():
            ours = max(v["speedup_vs_ort_fp32"] for k, v in cells.items() if k.startswith(("ov_", "ort_int8", "ort_searched")))
            theirs = max(v["speedup_vs_ort_fp32"] for k, v in cells.items() if k.startswith("nncf"))
            shown = []
            for name in SPEED_COLUMNS:
                if name not in cells:  # e.g. scores_int8 at keep 1.0: no token scores to put in INT8
                    shown.append("-")
                    continue
                value = cells[name]["speedup_vs_ort_fp32"]
                text = f"{value:.2f}x" + (f" ({cells[name]['p50_ms']:.0f} ms)" if name == "ort_fp32" else "")
                shown.append(f"**{text}**" if value in (ours, theirs) else text)
            lines.append(f"| {row['keep_rate']:g}, {batch} | " + " | ".join(shown) + " |")
    return "\n".join(lines)


def accuracy_table(report: dict) -> str:
    """Agreement with PyTorch (and GLSim crop boxes) and mean logit error per family and variant; with folds, the
    pooled rows, with the flipped scans out of all."""
    pooled = [row for row in report["accuracy"] if row.get("fold") == "pooled"]
    shown = pooled or report["accuracy"]
    families = list(dict.fromkeys(row["family"] for row in shown))
    variants = list(dict.fromkeys(row["variant"] for row in shown))
    rows = {(r["family"], r["variant"]): r for r in shown}
    header = "| variant | " + " | ".join(f"{f} agree % | {f} mean \\|Δlogit\\|" for f in families) + " |"
    lines = [header, "|---" * (2 * len(families) + 1) + "|"]
    for variant in variants:
        cells = []
        for family in families:
            row = rows.get((family, variant)) or {}
            acc = row.get("accuracy") or {}
            boxes = row.get("crop_box_equal_to_fp32")
            agree = "-" if not acc else f"{acc['top1_agreement']:.2f}"
            if "flipped_scans" in row:
                agree += f" ({row['flipped_scans']}/{acc['num_images']})"
            if boxes is not None:
                agree += f" (boxes {boxes:.1f})"
            cells += [agree, "-" if not acc else f"{acc['mean_abs_logit_error']:.4f}"]
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    return "\n".join(lines)

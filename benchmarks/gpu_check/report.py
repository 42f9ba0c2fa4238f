"""The check's JSON document, rewritten atomically after every change, and the summary printed at the end.

Because every change is written at once (a temporary file beside it, then a rename), a kill at any
moment leaves a complete JSON file: the plan, every finished step, and the step that was running.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

FORMAT = "clca_deploy.gpu_check/2"
STATUSES = ("planned", "running", "ok", "failed", "skipped", "not started", "interrupted")


def jsonable(value: Any) -> Any:
    """``value`` as JSON will hold it (paths and numpy numbers as text and floats), checked now, not at write time."""

    def default(item: Any) -> Any:
        if hasattr(item, "tolist"):  # numpy arrays and scalars
            return item.tolist()
        return str(item)

    return json.loads(json.dumps(value, default=default, allow_nan=True))


def utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class Report:
    """The document of one run; ``write()`` replaces the file atomically. Mutable on purpose: it is the log."""

    def __init__(self, path: Path, header: dict[str, Any]):
        self.path = path
        self.doc: dict[str, Any] = {"format": FORMAT, "status": "probing", "started": utc_now(), **jsonable(header),
                                    "steps": []}

    def write(self) -> None:
        from clca_deploy.artifacts import write_json

        self.doc["updated"] = utc_now()
        write_json(self.path, self.doc)

    def set(self, **fields: Any) -> None:
        self.doc.update(jsonable(fields))
        self.write()

    def step(self, name: str) -> dict[str, Any]:
        return next(record for record in self.doc["steps"] if record["name"] == name)

    def update(self, name: str, **fields: Any) -> None:
        self.step(name).update(jsonable(fields))
        self.write()

    def failed(self) -> list[str]:
        return [record["name"] for record in self.doc["steps"] if record["status"] in ("failed", "interrupted")]


# -- the printed summary ---------------------------------------------------------------------------------


def _ms(value: Any) -> str:
    return "-" if value is None else f"{value:.2f}" if value < 100 else f"{value:.0f}"


def _num(value: Any, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _row_cells(row: dict[str, Any]) -> list[str]:
    latency = row.get("latency") or {}
    sizes = sorted(latency, key=int)
    last = latency[sizes[-1]] if sizes else {}
    agreement = row.get("agreement") or {}
    agree = agreement.get("top1_agreement")
    cells = [" ".join(f"b{size} {_ms(latency[size].get('p50_ms'))}" for size in sizes) or "-",
             _num(last.get("images_per_second")), "-" if agree is None else f"{agree:.1f}",
             "-" if agreement.get("max_abs") is None else f"{agreement['max_abs']:.2g}",
             _num(last.get("power_w")), _num(last.get("energy_mj_per_image"), 2)]
    return cells


def _figure_rows(doc: dict[str, Any]) -> tuple[list[list[str]], list[str]]:
    """The table's rows, and a line for each runtime left out (skipped or failed, with the reason)."""
    rows, left_out = [], []
    for record in doc["steps"]:
        for row in (record.get("result") or {}).get("rows", []):
            if row.get("status", "ok") == "ok":
                rows.append([row["label"], *_row_cells(row)])
            else:
                left_out.append(f"{row['label']}: {row.get('status')}: {row.get('reason', '')}")
    return rows, left_out


def _table(rows: list[list[str]]) -> list[str]:
    header = ["runtime", "p50 ms", "img/s", "agree %", "max|dlogit|", "W", "mJ/img"]
    widths = [max(len(header[i]), *(len(r[i]) for r in rows)) for i in range(len(header))]

    def line(cells: list[str]) -> str:  # labels and latencies left, numbers right
        return "  ".join(c.ljust(w) if i in (0, 1) else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    return [line(header), *(line(r) for r in rows)]


def _extra_lines(doc: dict[str, Any]) -> list[str]:
    """The figures that are not latency rows: copy bandwidth, idle and loaded power."""
    lines = []
    for record in doc["steps"]:
        result = record.get("result") or {}
        for name, binding in (result.get("bindings") or {}).items():
            if binding.get("status", "ok") == "ok":
                lines.append(f"{name}: host->GPU {_num(binding.get('h2d_gb_per_s'))} GB/s, GPU->host "
                             f"{_num(binding.get('d2h_gb_per_s'))} GB/s (pinned, {binding.get('bytes')} bytes)")
        for what in ("idle", "load"):
            power = result.get(what) or {}
            if power.get("power_w") is not None:
                extra = f", {_num(power.get('tflops'))} TFLOPS" if power.get("tflops") else ""
                lines.append(f"power {what}: {_num(power['power_w'])} W over {_num(power.get('seconds'), 2)} s{extra}")
    return lines


def summary(doc: dict[str, Any]) -> str:
    """The figures of a finished (or cut-off) run as text, from its JSON document alone."""
    from clca_deploy.terminal import printable

    lines = [f"gpu_check: {doc.get('gpu', {}).get('name', 'no GPU') if doc.get('gpu') else 'no GPU'}, "
             f"device {doc.get('device')}, {doc.get('elapsed_s', 0):.0f} s of a {doc.get('budget_s', 0):.0f} s budget"]
    for record in doc["steps"]:
        reason = f": {record['reason']}" if record.get("reason") else ""
        seconds = f" ({record['seconds']:.1f} s)" if record.get("seconds") is not None else ""
        lines.append(f"  [{record['status']}] {record['name']}{seconds}{reason}")
    rows, left_out = _figure_rows(doc)
    if rows:
        lines += ["", *_table(rows), "agreement and logit error against PyTorch FP32 on the CPU (the ViT) or onnxruntime "
                  "FP32 on the CPU (a TensorRT model's file); img/s, W and mJ/img at the largest batch"]
    lines += left_out + _extra_lines(doc)
    return "\n".join(printable(line) for line in lines)

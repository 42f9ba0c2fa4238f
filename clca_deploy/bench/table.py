"""The terminal view of a BenchReport: one rich table row per result, failed and skipped rows included."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from clca_deploy.errors import ClcaDeployError
from clca_deploy.terminal import printable

if TYPE_CHECKING:  # annotations only; report.py (the results) imports no view
    from clca_deploy.bench.report import BackendResult, BenchReport

STATUS_STYLES = {"ok": "green", "failed": "bold red", "skipped": "yellow"}


# One formatter per kind of number, shared by the table, the plot labels and the tests.
def format_ms(value: float) -> str:
    return f"{value:.2f}"


def format_ips(value: float) -> str:
    return f"{value:.1f}"


def format_pct(value: float) -> str:
    return f"{value:.2f}"


def format_err(value: float) -> str:
    return f"{value:.3g}"


def format_mb(value: float) -> str:
    return f"{value:.0f}"


def format_watts(value: float) -> str:
    return f"{value:.1f}"


def format_mj(value: float) -> str:
    return f"{value:.1f}"


def format_keep(keep_rate: tuple[float, ...] | None) -> str:
    """``0.7`` for a uniform keep rate, ``0.9/0.8/0.7`` per reduction location, ``-`` for none."""
    if keep_rate is None or not keep_rate:
        return "-"
    if len(set(keep_rate)) == 1:
        return f"{keep_rate[0]:g}"
    return "/".join(f"{r:g}" for r in keep_rate)


def _cell(value: float | None, fmt, ok: bool) -> str:
    # Rows that did not run stay blank; a measured row that lacks one number shows "-".
    if not ok:
        return ""
    return "-" if value is None else fmt(value)


def _status(result: BackendResult, note: int | None) -> Text:
    # The reason goes to a numbered note under the table: exception messages are long and
    # would otherwise fold the row into many lines.
    text = Text(result.status, style=STATUS_STYLES.get(result.status, ""))
    if note is not None:
        text.append(f" [{note}]")
    return text


def _label(result: BackendResult) -> Text:
    # Text, not markup strings: a label such as "model[int8].onnx" must print as written.
    text = Text(printable(result.label))
    if result.is_reference:
        text.append(" (reference)", style="bold cyan")
    return text


def _power_stats(report: BenchReport, sizes) -> list:
    """The measured rows' stats at ``sizes``: whatever carries a power reading or a reason for none."""
    return [r.latency[s] for r in report.results if r.status == "ok" for s in sizes if s in r.latency]


def _power_caption(report: BenchReport, sizes) -> list[str]:
    stats = _power_stats(report, sizes)
    measured = [s for s in stats if s.power_w is not None]
    sources = sorted({s.power_source + (f", power mode {s.power_mode}" if s.power_mode else "") for s in measured})
    reasons = sorted({s.power_reason for s in stats if s.power_w is None and s.power_reason})
    lines = [f"power: mean board power over the timed calls, energy per image; {'; '.join(sources)}"] if sources else []
    if reasons:  # the few distinct reasons; every row's own is in the JSON
        lines.append(f"{'no power reading for some rows' if sources else 'power'}: {'; '.join(reasons[:2])}")
    return [printable(line) for line in lines]


def _caption(report: BenchReport, notes: list[str], sizes=()) -> Text:
    # Text rather than a markup string: reasons like "[ONNXRuntimeError] ..." must print as written.
    timing, data = report.timing, report.data
    lines = [f"[{n}] {printable(note)}" for n, note in enumerate(notes, 1)]
    timed = f"; timed: {printable(timing['what_was_timed'])}" if timing.get("what_was_timed") else ""
    lines.append(
        f"p50 over at least {timing.get('iters', '?')} iterations (rows with power: at least 2 s of calls) "
        f"after {timing.get('warmup', '?')} warm-up{timed}"
    )
    if "num_readable" in data or "num_images" in data:
        lines.append(f"accuracy on {data.get('num_readable', '?')} of {data.get('num_images', '?')} images")
    if report.skipped_images:
        lines.append(f"{len(report.skipped_images)} unreadable images skipped (listed in the JSON)")
    if not report.labelled:
        lines.append("no labels: top-1/top-5 unavailable, agreement is with the reference")
    lines += _power_caption(report, sizes)
    device = report.environment.get("gpu") or report.environment.get("cpu")
    if device:
        lines.append(printable(device))
    return Text("\n".join(lines))


def render_table(report: BenchReport, batch_size: int | None = None) -> Table:
    """One row per result, in report order; latency columns for every batch size or only ``batch_size``."""
    sizes = report.batch_sizes
    if batch_size is not None:
        if batch_size not in sizes:
            measured = ", ".join(map(str, sizes)) or "none"
            raise ClcaDeployError(f"the report has no latency at batch size {batch_size}; measured: {measured}.")
        sizes = (batch_size,)

    data = report.data
    title = Text(printable(f"clca-deploy bench: {data.get('kind', 'data')} {data.get('path', '')}".rstrip()))
    table = Table(title=title, caption_justify="left")
    # Power columns only where some row has a reading: most machines have no sensor.
    power = any(stats.power_w is not None for stats in _power_stats(report, sizes))
    notes: list[str] = []
    rows: list[tuple[list[str | Text], bool]] = []
    for result in report.results:
        note = None
        if result.reason:
            notes.append(f"{result.label}: {result.reason}")
            note = len(notes)
        rows.append((_row_cells(result, note, sizes, power), result.is_reference))
    _add_columns(table, _headers(sizes, power), rows)
    for cells, is_reference in rows:
        table.add_row(*cells, style="bold" if is_reference else None)
    table.caption = _caption(report, notes, sizes)
    return table


def _headers(sizes, power: bool) -> list[str]:
    """The headers after label and status: latency (and power) per batch size, then accuracy and memory."""
    headers = ["precision", "keep"]
    for size in sizes:
        headers += [f"p50 ms b{size}", f"img/s b{size}"]
        if power:
            headers += [f"W b{size}", f"mJ/img b{size}"]
    headers += ["top-1 %", "top-5 %", "agree %", "max |Δlogit|", "RSS MB"]
    return headers


def _row_cells(result: BackendResult, note: int | None, sizes, power: bool) -> list[str | Text]:
    """One result's cells, in the order of ``_headers`` after label and status."""
    ok = result.status == "ok"
    cells: list[str | Text] = [_label(result), _status(result, note)]
    cells += [printable(result.precision), format_keep(result.keep_rate)]
    for size in sizes:
        stats = result.latency.get(size)
        cells.append(_cell(None if stats is None else stats.p50_ms, format_ms, ok))
        cells.append(_cell(None if stats is None else stats.images_per_second, format_ips, ok))
        if power:
            cells.append(_cell(None if stats is None else stats.power_w, format_watts, ok))
            cells.append(_cell(None if stats is None else stats.energy_mj_per_image, format_mj, ok))
    acc = result.accuracy
    agreement = _cell(None if acc is None else acc.top1_agreement, format_pct, ok)
    if ok and result.is_reference and acc is not None and acc.top1_agreement is None:
        agreement = "ref"
    cells += [
        _cell(None if acc is None else acc.top1, format_pct, ok),
        _cell(None if acc is None else acc.top5, format_pct, ok),
        agreement,
        _cell(None if acc is None else acc.max_abs_logit_error, format_err, ok),
        _cell(result.peak_rss_mb, format_mb, ok),
    ]
    return cells


def _add_columns(table: Table, headers: list[str], rows: list[tuple[list[str | Text], bool]]) -> None:
    """The label and status columns, then one per header, each as wide as its widest cell or header word."""
    # Fixed widths for everything but the label: rich then narrows only the label column on a
    # small terminal (headers wrap), instead of cutting numbers to "3.2e-…".
    def width(index: int, header: str) -> int:
        return max([len(str(cells[index])) for cells, _ in rows] + [len(word) for word in header.split()])

    table.add_column("label", overflow="fold")
    table.add_column("status", width=width(1, "status"))
    for index, header in enumerate(headers, start=2):
        table.add_column(header, justify="right" if index > 3 else "left", width=width(index, header))


def print_table(
    report: BenchReport, console: Console | None = None, batch_size: int | None = None, err: bool = False
) -> None:
    """Print ``render_table(report)`` to ``console`` (by default stdout, or stderr where ``err``)."""
    table = render_table(report, batch_size=batch_size)
    if console is None:
        console = Console(stderr=err)
        if not console.is_terminal:
            # A pipe or log file has no width; rich would assume 80 columns and cut numbers to "41.…".
            natural = Measurement.get(console, console.options.update_width(1000), table).maximum
            console = Console(width=max(console.width, natural), stderr=err)
    console.print(table)

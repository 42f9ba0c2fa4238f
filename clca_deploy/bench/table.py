"""The terminal view of a BenchReport: one rich table row per result, failed and skipped rows included.

Where the whole table fits the width (``clca_deploy.terminal.output_width``: COLUMNS, the terminal, or
a pipe's natural width) it is one boxed table. On a narrow terminal (an SSH session to a Jetson, a
tmux pane) the columns are spread over several borderless tables, each starting with the row labels,
so that no label is cut and no number becomes "24…".
"""

from __future__ import annotations

import io
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from rich import box
from rich.console import Console, Group
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


def _precision(result: BackendResult) -> str:
    """The file's precision, and the one the runtime computed in where that differs (OpenVINO's bf16)."""
    compute = result.inference_precision
    shown = f"{result.precision} ({compute})" if compute and compute != "f32" else result.precision
    return printable(shown)


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


# Headers that would widen their column in the narrow layout beyond its numbers.
COMPACT_HEADERS = {"precision": "prec"}


@dataclass(frozen=True)
class _Column:
    """One column of the view: its header, one cell per result, and its width (the widest cell or header word)."""

    header: str
    cells: tuple[Text, ...]
    justify: str = "right"
    compact: bool = False  # the narrow layout: shorter headers (COMPACT_HEADERS)

    @property
    def title(self) -> str:
        return COMPACT_HEADERS.get(self.header, self.header) if self.compact else self.header

    @property
    def width(self) -> int:
        return max([cell.cell_len for cell in self.cells] + [len(word) for word in self.title.split()])


@dataclass(frozen=True)
class _View:
    """Everything the table shows, before it is laid out: labels, column groups kept side by side, notes."""

    title: Text
    labels: tuple[Text, ...]
    groups: tuple[tuple[_Column, ...], ...]  # the first (status, precision, keep) always beside the labels
    bold: tuple[bool, ...]  # the reference row
    caption: Text


def render_table(report: BenchReport, batch_size: int | None = None, width: int | None = None):
    """One row per result, in report order; latency columns for every batch size or only ``batch_size``.

    Where ``width`` is given and the table is wider, the columns are spread over several narrow tables
    (a rich Group); otherwise one Table with its caption."""
    view = _view(report, _sizes(report, batch_size))
    table = _table(view, [column for group in view.groups for column in group], compact=False)
    table.title, table.caption = view.title, view.caption
    if width is None or _width_of(table) <= width:
        return table
    return _compact(view, width)


def _sizes(report: BenchReport, batch_size: int | None) -> tuple[int, ...]:
    sizes = report.batch_sizes
    if batch_size is not None:
        if batch_size not in sizes:
            measured = ", ".join(map(str, sizes)) or "none"
            raise ClcaDeployError(f"the report has no latency at batch size {batch_size}; measured: {measured}.")
        sizes = (batch_size,)
    return tuple(sizes)


def _view(report: BenchReport, sizes: tuple[int, ...]) -> _View:
    # Power columns only where some row has a reading: most machines have no sensor.
    power = any(stats.power_w is not None for stats in _power_stats(report, sizes))
    notes: list[str] = []
    rows: list[list[Text]] = []
    for result in report.results:
        note = None
        if result.reason:
            notes.append(f"{result.label}: {result.reason}")
            note = len(notes)
        rows.append([cell if isinstance(cell, Text) else Text(cell) for cell in _row_cells(result, note, sizes, power)])
    headers = _headers(sizes, power)
    columns = [
        _Column(header, tuple(row[index] for row in rows), "left" if index < 4 else "right")
        for index, header in enumerate(["status", *headers], start=1)
    ]
    per_size = 4 if power else 2
    groups = [tuple(columns[:3])]
    groups += [tuple(columns[3 + i * per_size : 3 + (i + 1) * per_size]) for i in range(len(sizes))]
    groups += [(column,) for column in columns[3 + len(sizes) * per_size :]]
    data = report.data
    title = Text(printable(f"clca-deploy bench: {data.get('kind', 'data')} {data.get('path', '')}".rstrip()))
    return _View(
        title=title, labels=tuple(row[0] for row in rows), groups=tuple(groups),
        bold=tuple(result.is_reference for result in report.results), caption=_caption(report, notes, sizes),
    )


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
    cells += [_precision(result), format_keep(result.keep_rate)]
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


def _table(view: _View, columns: list[_Column], compact: bool, label_width: int | None = None) -> Table:
    """The labels and ``columns`` as one table: boxed, or borderless and tight where ``compact``."""
    # Fixed widths for everything but the label: rich then narrows only the label column (its words
    # wrap) and the headers wrap, instead of cutting numbers to "3.2e-…".
    if compact:
        table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True)
    else:
        table = Table(caption_justify="left")
    table.add_column("label", overflow="fold", max_width=label_width)
    for column in columns:
        column = replace(column, compact=compact)
        table.add_column(column.title, justify=column.justify, width=column.width)
    for index, label in enumerate(view.labels):
        table.add_row(label, *(column.cells[index] for column in columns), style="bold" if view.bold[index] else None)
    return table


def _width_of(renderable) -> int:
    """The width ``renderable`` takes where nothing limits it."""
    console = Console(file=io.StringIO(), width=10_000)
    return Measurement.get(console, console.options, renderable).maximum


def _compact(view: _View, width: int) -> Group:
    """The view in as few borderless tables as fit ``width``, each led by the labels (wrapped at spaces
    to about a quarter of the width, never cut), then the notes and caption."""
    words = [len(word) for label in view.labels for word in label.plain.split()] or [1]
    natural = max(label.cell_len for label in view.labels) if view.labels else 1
    label_width = max(max(words), min(natural, max(18, width // 4)))
    tables: list[list[_Column]] = [list(view.groups[0])]
    for group in view.groups[1:]:
        trial = tables[-1] + list(group)
        if _width_of(_table(view, trial, True, label_width)) <= width:
            tables[-1] = trial
        else:
            tables.append(list(group))
    rendered = [_table(view, columns, True, label_width) for columns in tables]
    rendered[0].title = view.title
    return Group(*rendered, view.caption)


def print_table(
    report: BenchReport, console: Console | None = None, batch_size: int | None = None, err: bool = False
) -> None:
    """Print ``render_table(report)`` to ``console``, or to stdout (stderr where ``err``) as wide as
    ``clca_deploy.terminal.output_width`` says (a pipe without COLUMNS: the table's natural width)."""
    import sys

    from clca_deploy.terminal import output_width, text_console

    if console is not None:
        console.print(render_table(report, batch_size=batch_size, width=console.width))
        return
    width = output_width(sys.stderr if err else sys.stdout)
    table = render_table(report, batch_size=batch_size, width=width)
    text_console(table, width, stderr=err).print(table)

"""The terminal view of a tuning run: one row per candidate, the pick marked; fits 80 columns."""

from __future__ import annotations

from clca_deploy.pipeline.tune.model import Budget
from clca_deploy.pipeline.tune.plot import accuracy_axis


def _cell(value, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def tune_rows(result, budget: Budget) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of the table: measured candidates fastest first, then the rest with their status."""
    measured = [m for m in result.measurements if m.status == "ok"]
    field, _ = accuracy_axis(measured)
    chosen = result.pick.chosen
    header = ["", "candidate", "tokens", "p50 ms", "p90 ms"] + (["mJ/img"] if budget.mj is not None else []) + [
        "top-1 %" if field == "top1" else "agree %", "status"]
    rows = []
    for m in sorted(measured, key=lambda m: m.value(budget.metric)) + [m for m in result.measurements if m.status != "ok"]:
        within = m.status == "ok" and m.value(budget.metric) <= budget.limit
        status = m.status if m.status != "ok" else ("within budget" if within else "over budget")
        rows.append(["*" if chosen is not None and m.candidate == chosen.candidate else "", m.candidate.key,
                     str(m.tokens or "-"), _cell(m.p50_ms), _cell(m.p90_ms)]
                    + ([_cell(m.energy_mj_per_image, 2)] if budget.mj is not None else [])
                    + [_cell(getattr(m, field)), status])
    return header, rows


def print_tune(result, budget: Budget) -> None:
    from rich.console import Console
    from rich.table import Table

    from clca_deploy.terminal import printable

    header, rows = tune_rows(result, budget)
    table = Table(box=None, pad_edge=False, show_edge=False)
    for index, name in enumerate(header):
        table.add_column(name, justify="right" if 2 <= index < len(header) - 1 else "left", overflow="fold")
    for row in rows:
        table.add_row(*(printable(cell) for cell in row))
    console = Console(highlight=False)
    console.print(table)
    console.print(printable(f"pick: {result.pick.reason}"))

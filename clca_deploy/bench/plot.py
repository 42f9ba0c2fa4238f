"""The PNG view of a BenchReport: accuracy against p50 latency, with keep-rate sweeps drawn as curves."""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from clca_deploy.artifacts import atomic_output, check_output_path
from clca_deploy.bench.table import format_keep
from clca_deploy.errors import ClcaDeployError
from clca_deploy.terminal import printable

if TYPE_CHECKING:  # annotations only; report.py (the results) imports no view
    from clca_deploy.bench.report import BackendResult, BenchReport


def plain(value: object) -> str:
    """Text from files (labels hold file names) as matplotlib must draw it: control characters escaped,
    and every ``$`` literal, since a pair of them starts mathtext and a crafted name such as
    ``$\\undefined$`` would abort the plot."""
    return printable(value).replace("$", r"\$")


@dataclass(frozen=True)
class PlotPoint:
    """One "ok" result at the plotted batch size: x is p50 latency, y the accuracy metric."""

    result: BackendResult
    latency_ms: float
    accuracy: float


def _accuracy(result: BackendResult, labelled: bool) -> float | None:
    acc = result.accuracy
    if acc is None:
        return None
    if labelled:
        return acc.top1
    # Without labels the reference agrees with itself by definition; keep it on the plot.
    if acc.top1_agreement is None and result.is_reference:
        return 100.0
    return acc.top1_agreement


def plottable_points(report: BenchReport, batch_size: int) -> tuple[list[PlotPoint], list[str]]:
    """The points to draw, and one "label (why)" per result left out."""
    points, left_out = [], []
    for result in report.results:
        stats = result.latency.get(batch_size)
        value = _accuracy(result, report.labelled)
        if result.status != "ok":
            left_out.append(f"{result.label} ({result.status})")
        elif stats is None:
            left_out.append(f"{result.label} (no latency at batch {batch_size})")
        elif value is None or not math.isfinite(value):
            left_out.append(f"{result.label} (no {'top-1' if report.labelled else 'agreement'})")
        else:
            points.append(PlotPoint(result, stats.p50_ms, value))
    return points, left_out


def _groups(points: list[PlotPoint]) -> list[list[PlotPoint]]:
    """Points by backend+precision+providers, in first-seen order, each sorted by latency.

    The reference stands alone: it is what the curve is compared with, not a point of it.
    """
    groups: dict[tuple, list[PlotPoint]] = {}
    for point in points:
        r = point.result
        groups.setdefault((r.backend, r.precision, r.providers, r.is_reference), []).append(point)
    return [sorted(g, key=lambda p: p.latency_ms) for g in groups.values()]


def _is_curve(group: list[PlotPoint]) -> bool:
    # A line only means "same deployment, another keep rate" when the keep rates all differ.
    keeps = [p.result.keep_rate for p in group]
    return len(group) > 1 and len(set(keeps)) == len(keeps)


def _annotation(point: PlotPoint, on_curve: bool) -> str:
    label = plain(point.result.label)
    keep = format_keep(point.result.keep_rate)
    if on_curve and keep not in label:
        label += f"\nkeep {keep}"
    return label


def _overlap(a, b) -> float:
    width = min(a.x1, b.x1) - max(a.x0, b.x0)
    height = min(a.y1, b.y1) - max(a.y0, b.y0)
    return width * height if width > 0 and height > 0 else 0.0


def _candidates(fx: float, fy: float):
    """Label positions (dx, dy, ha, va) in points, best first: towards the middle of the axes."""
    sides = [(7, "left"), (-7, "right")] if fx < 0.55 else [(-7, "right"), (7, "left")]
    heights = [(6, "bottom"), (-6, "top")] if fy < 0.88 else [(-6, "top"), (6, "bottom")]
    heights += [(18, "bottom"), (-18, "top"), (30, "bottom"), (-30, "top")]
    return [(dx, dy, ha, va) for dy, va in heights for dx, ha in sides]


def _annotate_all(fig, ax, placed: list[tuple[PlotPoint, bool, str]]) -> None:
    """Label every point, moving each label to the first nearby spot that overlaps nothing already drawn."""
    from matplotlib.transforms import Bbox

    renderer = fig.canvas.get_renderer()
    axes_box = ax.get_window_extent(renderer)
    # Every marker counts as taken, so that no label covers another point.
    taken = []
    for point, _, _ in placed:
        x, y = ax.transData.transform((point.latency_ms, point.accuracy))
        taken.append(Bbox.from_extents(x - 5, y - 5, x + 5, y + 5))
    for point, curve, color in placed:
        xy = (point.latency_ms, point.accuracy)
        if point.result.is_reference:
            ax.scatter(*xy, s=160, facecolors="none", edgecolors="black", zorder=4)
        text = _annotation(point, curve) + (" (reference)" if point.result.is_reference else "")
        fx, fy = ax.transAxes.inverted().transform(ax.transData.transform(xy))
        best = None
        for dx, dy, ha, va in _candidates(fx, fy):
            label = ax.annotate(
                text, xy, xytext=(dx, dy), textcoords="offset points", ha=ha, va=va, fontsize=7, color=color
            )
            box = label.get_window_extent(renderer)
            outside = box.width * box.height - _overlap(box, axes_box)
            score = sum(_overlap(box, other) for other in taken) + outside
            if best is None or score < best[0]:
                if best is not None:
                    best[1].remove()
                best = (score, label, box)
            else:
                label.remove()
            if score == 0:
                break
        taken.append(best[2])


def plot_accuracy_latency(
    report: BenchReport, path: str | Path, batch_size: int = 1, title: str | None = None
) -> Path:
    """Write a PNG of top-1 (or agreement, without labels) against p50 latency at ``batch_size``."""
    try:
        # Every part of matplotlib this needs, up front: a missing one fails here, with the install hint.
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import FuncFormatter, LogLocator  # noqa: F401  (used by _scale_axes)
    except ImportError:
        raise ClcaDeployError(
            "plotting needs matplotlib: pip install matplotlib (or pip install 'clca-deploy[plot]')."
        ) from None

    check_output_path(path)  # fail before drawing, not after
    points, left_out = plottable_points(report, batch_size)
    if not points:
        metric = "top-1" if report.labelled else "top-1 agreement"
        raise ClcaDeployError(
            f"nothing to plot: no 'ok' result has both a latency at batch size {batch_size} and a {metric}"
            f" (measured batch sizes: {', '.join(map(str, report.batch_sizes)) or 'none'})."
        )

    # Figure + Agg canvas rather than pyplot: no global backend switch, no figure left open.
    fig = Figure(figsize=(9, 6), dpi=130)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    placed = _draw_groups(ax, points)
    _scale_axes(ax, [p.latency_ms for p in points])
    _describe_axes(fig, ax, report, batch_size, title, left_out)
    # Labels last: their placement needs the final axes size and scale.
    _annotate_all(fig, ax, placed)
    ax.legend(fontsize=7, loc="best")  # after the labels, so "best" can avoid them

    with atomic_output(path) as tmp:
        # The temporary name ends in .tmp, so the format must be explicit.
        fig.savefig(tmp, format="png", bbox_inches="tight")
    return Path(path)


def _draw_groups(ax, points: list[PlotPoint]) -> list[tuple[PlotPoint, bool, str]]:
    """Draw each group as a curve or as markers, in its own colour; returns (point, on a curve, colour) per point."""
    placed: list[tuple[PlotPoint, bool, str]] = []
    for index, group in enumerate(_groups(points)):
        color = f"C{index % 10}"
        curve = _is_curve(group)
        name = plain(f"{group[0].result.backend} {group[0].result.precision}")
        name += " (reference)" if group[0].result.is_reference else ""
        xs, ys = [p.latency_ms for p in group], [p.accuracy for p in group]
        if curve:
            ax.plot(xs, ys, "-o", color=color, label=f"{name} (keep-rate sweep)", zorder=2)
        else:
            ax.scatter(xs, ys, color=color, label=name, zorder=3)
        placed += [(point, curve, color) for point in group]
    return placed


def _scale_axes(ax, latencies: list[float]) -> None:
    """A log latency axis when the latencies span more than 10x; margins, and accuracy capped just above 100 %."""
    from matplotlib.ticker import FuncFormatter, LogLocator

    # CPU torch next to a TensorRT engine spans orders of magnitude; a linear axis would crush one end.
    if min(latencies) > 0 and max(latencies) / min(latencies) > 10:
        ax.set_xscale("log")
        # Plain numbers at 1-2-5 steps instead of matplotlib's 2x10^0 labels, which collide.
        numbers = FuncFormatter(lambda value, _: f"{value:g}")
        ax.xaxis.set_major_formatter(numbers)
        ax.xaxis.set_minor_locator(LogLocator(subs=(2.0, 5.0)))
        ax.xaxis.set_minor_formatter(numbers)
    ax.margins(x=0.12, y=0.12)
    ax.autoscale_view()
    if ax.get_ylim()[1] > 100.5:  # no accuracy or agreement is above 100 %
        ax.set_ylim(top=100.5)


def _describe_axes(fig, ax, report: BenchReport, batch_size: int, title: str | None, left_out: list[str]) -> None:
    """Grid, axis labels, the title (with the device), and a footnote naming the results left out."""
    ax.grid(True, alpha=0.3)
    ax.set_xlabel(f"p50 latency per batch of {batch_size} (ms, host to host)")
    if report.labelled:
        ax.set_ylabel("top-1 accuracy (%)")
    else:
        reference = report.reference
        ax.set_ylabel(f"top-1 agreement with {plain(reference.label) if reference else 'the reference'} (%)")
    device = plain(report.environment.get("gpu") or report.environment.get("cpu") or "")
    ax.set_title(title or f"Accuracy vs latency, batch {batch_size}" + (f"\n{device}" if device else ""), fontsize=10)
    if left_out:
        note = textwrap.fill("not plotted: " + "; ".join(plain(entry) for entry in left_out), width=150)
        fig.text(0.01, 0.005, note, fontsize=6.5, va="bottom", ha="left", color="dimgray")
        fig.subplots_adjust(bottom=0.1 + 0.025 * note.count("\n"))

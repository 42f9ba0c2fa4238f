"""The Pareto plot of a tuning run: accuracy against latency (or energy), one colour per family, the
budget as a line, the pick marked and named."""

from __future__ import annotations

from pathlib import Path

from clca_deploy.artifacts import atomic_output
from clca_deploy.extras import require
from clca_deploy.pipeline.tune.model import Budget, accuracy_field


def accuracy_axis(measurements) -> tuple[str, str]:
    """(field, axis label): top-1 where every point has it (labelled images), else agreement with the checkpoint."""
    if measurements and accuracy_field(measurements) == "top1":
        return "top1", "top-1 accuracy (%)"
    return "agreement", "top-1 agreement with the checkpoint (%)"


def plot_tune(result, budget: Budget, output: Path) -> Path:
    """Write the PNG (atomically) and return its path."""
    require("matplotlib", "the tune plot")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [m for m in result.measurements if m.status == "ok" and m.value(budget.metric) is not None]
    field, label = accuracy_axis(points)
    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=120)
    families: dict[str, list] = {}
    for m in points:
        families.setdefault("/".join(p for p in m.candidate.family if p), []).append(m)
    for name, members in sorted(families.items()):
        members.sort(key=lambda m: m.candidate.keep_rate)
        xs, ys = [m.value(budget.metric) for m in members], [getattr(m, field) for m in members]
        ax.plot(xs, ys, "o-", label=name, alpha=0.8)
        for x, y, m in zip(xs, ys, members):  # each point's keep rate, so the curve reads as the knob it is
            ax.annotate(f"{m.candidate.keep_rate:g}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=6,
                        alpha=0.7)
    ax.axvline(budget.limit, color="crimson", linestyle="--", label=f"budget {budget.limit:g} {_unit(budget)}")
    chosen = result.pick.chosen
    if chosen is not None and getattr(chosen, field) is not None:
        x, y = chosen.value(budget.metric), getattr(chosen, field)
        ax.scatter([x], [y], s=320, marker="*", color="gold", edgecolor="black", zorder=5, label="pick")
        ax.annotate(chosen.candidate.key, (x, y), textcoords="offset points", xytext=(8, -14), fontsize=8)
    ax.set_xlabel(("p90 latency per call (ms)" if budget.ms is not None else "energy per image (mJ)")
                  + f", batch {result.settings.get('batch', 1)}")
    ax.set_ylabel(label)
    ax.set_title("clca-deploy tune: accuracy against cost on this machine")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="best", title="file/runtime/float, keep rate at each point", title_fontsize=7)
    fig.tight_layout()
    with atomic_output(output) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return output


def _unit(budget: Budget) -> str:
    return "ms" if budget.ms is not None else "mJ"

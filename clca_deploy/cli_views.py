"""How the CLI shows results as text: checkpoint summaries, deployed-model descriptions, bench reports."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Optional

import typer

from clca_deploy.cli_vocabulary import is_stdout
from clca_deploy.errors import ClcaDeployError
from clca_deploy.terminal import printable


def say(line: object) -> None:
    """One line of text output: names and paths in it may come from crafted files, so it is escaped."""
    typer.echo(printable(line))


def _line(text: str, err: bool = False) -> None:
    # Every value in these lines comes from a file (checkpoint args, ONNX metadata, sidecars, file
    # names): the whole line is escaped, so no value can be missed and no constant part changes.
    typer.echo(printable(text), err=err)


def show_fields(rows: list[tuple[str, object]]) -> None:
    """``key  value`` lines aligned by rich, each value wrapped under itself to the output's width
    (``terminal.output_width``); every key and value escaped, as each may come from a file."""
    import sys

    from clca_deploy.terminal import key_value_grid, output_width, render_plain

    typer.echo(render_plain(key_value_grid(rows), output_width(sys.stdout)))


def _schedule_rows(head: str, lines: list[str]) -> list[tuple[str, object]]:
    """The token schedule: its heading on the ``tokens`` row, one block per row below it."""
    return [("tokens", head)] + [("", line) for line in lines]


def print_fgir_summary(summary) -> None:
    """An official ILA / GLSim checkpoint (settings from clca_deploy.model.fgir.FgirConfig.to_dict)."""
    settings = summary.settings
    family = settings["family"]
    label = {"ila": "ILA", "glsim": "GLSim"}.get(family, family)
    rows: list[tuple[str, object]] = [
        ("checkpoint", f"{summary.checkpoint} ({summary.format})"),
        ("model", f"{settings['model']}  [family {label}, {summary.backbone_kind} backbone]"),
        ("input", f"{settings['img_size']}px, {settings['num_classes']} classes"),
        ("preprocess", f"resize {settings['resize_size']} (bicubic, square), centre crop {settings['img_size']}"),
    ]
    if family == "ila":
        ila = settings["ila"]
        path = f" ({ila['adapter_path']} path)" if ila["adapter"] else ""
        rows.append(("adapter", f"in blocks: {ila['adapter'] or 'none'}{path}, dim {ila['adapter_dim']}"))
        if ila["ila"]:
            rows.append(("ILA", f"ila after blocks {ila['ila_locs']}, down-sampling ila_ds after {ila['ila_ds_locs']}"))
    else:
        glsim = settings["glsim"]
        rows.append(("crop", f"top {glsim['dynamic_top']} patches by cosine similarity to the class token -> box -> crop pass"))
        aggregator = f"{glsim['aggregator_num_hidden_layers']} block(s), norm {'on' if glsim['aggregator_norm'] else 'off'}"
        rows.append(("aggregator", f"reducer {glsim['reducer']}; {aggregator if glsim['aggregator'] else 'none'}"))
    blocks = []
    for step in summary.schedule:
        stage = "" if step["stage"] == "encoder" else f"{step['stage']} "
        adapter = f"  {step['adapter']}" if step["adapter"] else ""
        blocks.append(f"{stage}{step['index']:>2}: {step['tokens_in']:>5} -> {step['tokens_out']:<5}{adapter}".rstrip())
    rows += _schedule_rows("block: in -> out (after the adapter that follows it)", blocks)
    rows += [("parameters", f"{summary.parameters:,}"), ("GMACs", f"{summary.gmacs:.2f} at batch 1")]
    show_fields(rows)


def _head(settings: dict) -> str:
    if settings["ifa_head"] and settings["ifa_dws_conv_groups"]:
        return f"CLA (multiplier {settings['ifa_dws_conv_groups']})"
    return "IFA (groups 0)" if settings["ifa_head"] else "linear on CLS"


def print_summary(summary) -> None:
    if "family" in summary.settings:
        print_fgir_summary(summary)
        return
    settings = summary.settings
    plain = "" if settings["method"] != "vit" else " (plain ViT: no reduction)"
    rows: list[tuple[str, object]] = [
        ("checkpoint", f"{summary.checkpoint} ({summary.format})"),
        ("model", f"{settings['model']}  [method {settings['method']}, {summary.backbone_kind} backbone]"),
        ("input", f"{settings['img_size']}px, {settings['num_classes']} classes"),
        ("reduction", f"keep {settings['keep_rate']} at blocks {settings['reduction_loc']}{plain}"),
        ("CLC", f"{'on' if settings['clc'] else 'off'}: num_clr={settings['num_clr']}, "
                f"gap={settings['clc_include_gap']}, pool_cls={settings['clc_pool_cls']}, "
                f"pool_clr={settings['clc_pool_clr']}, recover_at_last={settings['clc_recover_at_last']}"),
        ("head", _head(settings)),
    ]
    if summary.defaulted:
        rows.append(("note", f"missing from the checkpoint's args, official fallback used: {', '.join(summary.defaulted)}"))
    if summary.overridden:
        rows.append(("note", f"overridden on the command line: {', '.join(summary.overridden)}"))
    if summary.class_names:
        rows.append(("classes", ", ".join(summary.class_names)))
    blocks = []
    for step in summary.schedule:
        extra = f" + {step['reinserted']}" if step["reinserted"] else ""
        blocks.append(f"{step['index']:>5}: {step['tokens_in']:>5} -> {step['tokens_out']:<5}{extra}")
    rows += _schedule_rows("block: in -> out (+ re-inserted from the cache)", blocks)
    unused = " (without the unused 1000-class head train.py keeps)" if settings["ifa_head"] else ""
    rows += [("parameters", f"{summary.parameters:,}{unused}"), ("GMACs", f"{summary.gmacs:.2f} at batch 1")]
    show_fields(rows)


# What `info` calls a deployed file's details where the key would repeat a row ("input") or make the
# aligned key column wide; the others are their keys with spaces.
DETAIL_NAMES = {
    "input": "input name",
    "outputs": "output names",
    "quantize_dequantize_pairs": "Q/DQ pairs",
    "tensorrt_version": "TensorRT",
    "compute_capability": "GPU capability",
}


def print_deployed(described) -> None:
    keep = ", ".join(str(k) for k in described.keep_rate)
    tokens = " ".join(f"{a}->{b}" if a != b else str(a) for a, b in described.token_schedule)
    pre = described.preprocess
    rows: list[tuple[str, object]] = [
        ("file", f"{described.path} ({described.kind}, {described.size_bytes / 1e6:.1f} MB)"),
        ("model", f"{described.model}  [method {described.method}, {described.precision}]"),
        ("input", f"{described.img_size}px, batch {described.batch}, {described.num_classes} classes"),
        ("keep rate", f"{keep}; tokens per block {tokens}"),
        ("preprocess", f"resize {pre['resize_size']} ({pre['interpolation']}), centre crop {pre['img_size']}, "
                       f"mean {pre['mean']}, std {pre['std']}"),
    ]
    if described.class_names:
        rows.append(("classes", ", ".join(described.class_names)))
    for key, value in described.details.items():
        if key != "io" and value not in (None, [], ""):
            rows.append((DETAIL_NAMES.get(key, key.replace("_", " ")), value))
    show_fields(rows)


def render_report(report, out: Optional[Path], plot: Optional[Path]) -> None:
    """Save the JSON report, then print its table, then draw its plot.

    The JSON goes first so that nothing printed or drawn later can lose the results. ``out`` "-" puts
    the JSON on standard output and the table on standard error. A report ``out`` cannot take (full
    disk, quota, read-only) is saved in the temp folder instead (or, failing that too, printed on
    standard output), and the command ends with one line saying so and where the results are.
    """
    from clca_deploy.bench.table import print_table

    to_stdout = is_stdout(out)
    problem = _save_report(report, out) if out is not None else None
    print_table(report, err=to_stdout)
    for skipped in report.skipped_images:
        _line(f"skipped {skipped['path']}: {skipped['reason']}", err=True)
    if out is not None and problem is None and not to_stdout:
        _line(f"wrote {out}")
    plot_problem = _draw_plot(report, plot, err=to_stdout) if plot is not None else None
    if problem:
        raise ClcaDeployError(problem + (f" No plot either: {plot_problem}" if plot_problem else ""))
    if plot_problem:
        _line(f"no plot: {plot_problem}", err=True)


def _save_report(report, out: Path) -> str | None:
    """Write the JSON to ``out``; None, or the line saying why it could not and where the results went."""
    from clca_deploy.artifacts import WriteFailed

    if not is_stdout(out):
        try:
            report.write_json(out)
            return None
        except WriteFailed as exc:
            return f"{exc} {_rescue(report, stdout_free=True)}"
    try:
        typer.echo(report.to_json(), nl=False)
        return None
    except OSError as exc:  # a pipe whose reader quit, or a full file standard output was sent to
        _quiet_stdout()
        return f"could not write the report to standard output ({exc.strerror or exc}). {_rescue(report, stdout_free=False)}"


def _rescue(report, stdout_free: bool) -> str:
    """Save the report where it can still go (the temp folder, else standard output); the sentence saying where."""
    from clca_deploy.bench.report import rescue

    sentence, saved = rescue(report)
    if saved:
        return sentence
    if stdout_free:
        typer.echo(report.to_json(), nl=False)
        return f"{sentence}: their JSON is on standard output."
    return f"{sentence}: only the table shows them."


def _quiet_stdout() -> None:
    # Once the reader of a pipe is gone, Python's own flush at exit would print a second traceback.
    import sys

    with contextlib.suppress(AttributeError, OSError, ValueError):
        stdout = sys.stdout.fileno()
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, stdout)
        finally:
            os.close(devnull)


def _draw_plot(report, plot: Path, err: bool) -> str | None:
    """Draw the accuracy-latency PNG; None when written, else why not."""
    from clca_deploy.bench.plot import plot_accuracy_latency

    try:
        plot_accuracy_latency(report, plot, batch_size=report.timing["batch_sizes"][0])
    except ClcaDeployError as exc:
        return str(exc)
    _line(f"wrote {plot}", err=err)
    return None


def bench_failure(report) -> str | None:
    """One line when a benchmark measured nothing, or some model failed; None when every row ran or was skipped."""
    failed = [printable(result.label) for result in report.results if result.status == "failed"]
    if failed:
        return f"bench: {len(failed)} of {len(report.results)} rows failed ({'; '.join(failed)}); the table says why."
    if not any(result.status == "ok" for result in report.results):
        return "bench: no model ran (every row was skipped); the table says why."
    return None


def print_predictions(run) -> None:
    for prediction in run.predictions:
        best = ", ".join(f"{s.name} {100 * s.probability:.1f}%" for s in prediction.top)
        _line(f"{prediction.path}: {best}")
    for path, reason in run.skipped:
        _line(f"skipped {path}: {reason}", err=True)
    _line(f"{len(run.predictions)} classified, {len(run.skipped)} skipped", err=True)

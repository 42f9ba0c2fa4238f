"""How the CLI shows results as text: checkpoint summaries, deployed-model descriptions, bench reports."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Optional

import typer

from clca_deploy.errors import ClcaDeployError
from clca_deploy.terminal import printable


def say(line: object) -> None:
    """One line of text output: names and paths in it may come from crafted files, so it is escaped."""
    typer.echo(printable(line))


def _line(text: str, err: bool = False) -> None:
    # Every value in these lines comes from a file (checkpoint args, ONNX metadata, sidecars, file
    # names): the whole line is escaped, so no value can be missed and no constant part changes.
    typer.echo(printable(text), err=err)


def print_fgir_summary(summary) -> None:
    """An official ILA / GLSim checkpoint (settings from clca_deploy.model.fgir.FgirConfig.to_dict)."""
    settings = summary.settings
    family = settings["family"]
    _line(f"checkpoint   {summary.checkpoint} ({summary.format})")
    label = {"ila": "ILA", "glsim": "GLSim"}.get(family, family)
    _line(f"model        {settings['model']}  [family {label}, {summary.backbone_kind} backbone]")
    _line(f"input        {settings['img_size']}px, {settings['num_classes']} classes")
    _line(f"preprocess   resize {settings['resize_size']} (bicubic, square), centre crop {settings['img_size']}")
    if family == "ila":
        ila = settings["ila"]
        path = f" ({ila['adapter_path']} path)" if ila["adapter"] else ""
        _line(f"adapter      in blocks: {ila['adapter'] or 'none'}{path}, dim {ila['adapter_dim']}")
        if ila["ila"]:
            _line(f"ILA          ila after blocks {ila['ila_locs']}, down-sampling ila_ds after {ila['ila_ds_locs']}")
    else:
        glsim = settings["glsim"]
        _line(f"crop         top {glsim['dynamic_top']} patches by cosine similarity to the class token -> box -> crop pass")
        aggregator = f"{glsim['aggregator_num_hidden_layers']} block(s), norm {'on' if glsim['aggregator_norm'] else 'off'}"
        _line(f"aggregator   reducer {glsim['reducer']}; {aggregator if glsim['aggregator'] else 'none'}")
    _line("tokens       block: in -> out (after the adapter that follows it)")
    for step in summary.schedule:
        stage = "" if step["stage"] == "encoder" else f"{step['stage']} "
        adapter = f"  {step['adapter']}" if step["adapter"] else ""
        _line(f"             {stage}{step['index']:>2}: {step['tokens_in']:>5} -> {step['tokens_out']:<5}{adapter}".rstrip())
    _line(f"parameters   {summary.parameters:,}")
    _line(f"GMACs        {summary.gmacs:.2f} at batch 1")


def print_summary(summary) -> None:
    if "family" in summary.settings:
        print_fgir_summary(summary)
        return
    settings = summary.settings
    _line(f"checkpoint   {summary.checkpoint} ({summary.format})")
    _line(f"model        {settings['model']}  [method {settings['method']}, {summary.backbone_kind} backbone]")
    _line(f"input        {settings['img_size']}px, {settings['num_classes']} classes")
    _line(
        f"reduction    keep {settings['keep_rate']} at blocks {settings['reduction_loc']}"
        + ("" if settings["method"] != "vit" else " (plain ViT: no reduction)")
    )
    _line(
        f"CLC          {'on' if settings['clc'] else 'off'}: num_clr={settings['num_clr']}, "
        f"gap={settings['clc_include_gap']}, pool_cls={settings['clc_pool_cls']}, "
        f"pool_clr={settings['clc_pool_clr']}, recover_at_last={settings['clc_recover_at_last']}"
    )
    head = (
        f"CLA (multiplier {settings['ifa_dws_conv_groups']})"
        if settings["ifa_head"] and settings["ifa_dws_conv_groups"]
        else "IFA (groups 0)" if settings["ifa_head"] else "linear on CLS"
    )
    _line(f"head         {head}")
    if summary.defaulted:
        _line(f"note         missing from the checkpoint's args, official fallback used: {', '.join(summary.defaulted)}")
    if summary.overridden:
        _line(f"note         overridden on the command line: {', '.join(summary.overridden)}")
    if summary.class_names:
        _line(f"classes      {', '.join(summary.class_names)}")
    _line("tokens       block: in -> out (+ re-inserted from the cache)")
    for step in summary.schedule:
        arrow = f"{step['tokens_in']:>5} -> {step['tokens_out']:<5}"
        extra = f" + {step['reinserted']}" if step["reinserted"] else ""
        _line(f"             {step['index']:>5}: {arrow}{extra}")
    unused = " (without the unused 1000-class head train.py keeps)" if settings["ifa_head"] else ""
    _line(f"parameters   {summary.parameters:,}{unused}")
    _line(f"GMACs        {summary.gmacs:.2f} at batch 1")


def print_deployed(described) -> None:
    _line(f"file         {described.path} ({described.kind}, {described.size_bytes / 1e6:.1f} MB)")
    _line(f"model        {described.model}  [method {described.method}, {described.precision}]")
    _line(f"input        {described.img_size}px, batch {described.batch}, {described.num_classes} classes")
    keep = ", ".join(str(k) for k in described.keep_rate)
    _line(f"keep rate    {keep}; tokens per block {' '.join(f'{a}->{b}' if a != b else str(a) for a, b in described.token_schedule)}")
    pre = described.preprocess
    _line(f"preprocess   resize {pre['resize_size']} ({pre['interpolation']}), centre crop {pre['img_size']}, mean {pre['mean']}, std {pre['std']}")
    if described.class_names:
        _line(f"classes      {', '.join(described.class_names)}")
    for key, value in described.details.items():
        if key != "io" and value not in (None, [], ""):
            _line(f"{key.replace('_', ' '):<12} {value}")


STDOUT = "-"  # the conventional name for standard output, where a command supports it


def is_stdout(path: Optional[Path]) -> bool:
    """True for the output "-": standard output (a file really named "-" is given with its folder)."""
    return path is not None and str(path) == STDOUT


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


def print_predictions(run, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(run.to_dict(), indent=2))
        return
    for prediction in run.predictions:
        best = ", ".join(f"{s.name} {100 * s.probability:.1f}%" for s in prediction.top)
        _line(f"{prediction.path}: {best}")
    for path, reason in run.skipped:
        _line(f"skipped {path}: {reason}", err=True)
    _line(f"{len(run.predictions)} classified, {len(run.skipped)} skipped", err=True)

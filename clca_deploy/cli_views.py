"""How the CLI shows results as text: checkpoint summaries, deployed-model descriptions, bench reports."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from clca_deploy.errors import ClcaDeployError


def print_fgir_summary(summary) -> None:
    """An official ILA / GLSim checkpoint (settings from clca_deploy.model.fgir.FgirConfig.to_dict)."""
    settings = summary.settings
    family = settings["family"]
    typer.echo(f"checkpoint   {summary.checkpoint} ({summary.format})")
    label = {"ila": "ILA", "glsim": "GLSim"}.get(family, family)
    typer.echo(f"model        {settings['model']}  [family {label}, {summary.backbone_kind} backbone]")
    typer.echo(f"input        {settings['img_size']}px, {settings['num_classes']} classes")
    typer.echo(f"preprocess   resize {settings['resize_size']} (bicubic, square), centre crop {settings['img_size']}")
    if family == "ila":
        ila = settings["ila"]
        path = f" ({ila['adapter_path']} path)" if ila["adapter"] else ""
        typer.echo(f"adapter      in blocks: {ila['adapter'] or 'none'}{path}, dim {ila['adapter_dim']}")
        if ila["ila"]:
            typer.echo(f"ILA          ila after blocks {ila['ila_locs']}, down-sampling ila_ds after {ila['ila_ds_locs']}")
    else:
        glsim = settings["glsim"]
        typer.echo(f"crop         top {glsim['dynamic_top']} patches by cosine similarity to the class token -> box -> crop pass")
        aggregator = f"{glsim['aggregator_num_hidden_layers']} block(s), norm {'on' if glsim['aggregator_norm'] else 'off'}"
        typer.echo(f"aggregator   reducer {glsim['reducer']}; {aggregator if glsim['aggregator'] else 'none'}")
    typer.echo("tokens       block: in -> out (after the adapter that follows it)")
    for step in summary.schedule:
        stage = "" if step["stage"] == "encoder" else f"{step['stage']} "
        adapter = f"  {step['adapter']}" if step["adapter"] else ""
        typer.echo(f"             {stage}{step['index']:>2}: {step['tokens_in']:>5} -> {step['tokens_out']:<5}{adapter}".rstrip())
    typer.echo(f"parameters   {summary.parameters:,}")
    typer.echo(f"GMACs        {summary.gmacs:.2f} at batch 1")


def print_summary(summary) -> None:
    if "family" in summary.settings:
        print_fgir_summary(summary)
        return
    settings = summary.settings
    typer.echo(f"checkpoint   {summary.checkpoint} ({summary.format})")
    typer.echo(f"model        {settings['model']}  [method {settings['method']}, {summary.backbone_kind} backbone]")
    typer.echo(f"input        {settings['img_size']}px, {settings['num_classes']} classes")
    typer.echo(
        f"reduction    keep {settings['keep_rate']} at blocks {settings['reduction_loc']}"
        + ("" if settings["method"] != "vit" else " (plain ViT: no reduction)")
    )
    typer.echo(
        f"CLC          {'on' if settings['clc'] else 'off'}: num_clr={settings['num_clr']}, "
        f"gap={settings['clc_include_gap']}, pool_cls={settings['clc_pool_cls']}, "
        f"pool_clr={settings['clc_pool_clr']}, recover_at_last={settings['clc_recover_at_last']}"
    )
    head = (
        f"CLA (multiplier {settings['ifa_dws_conv_groups']})"
        if settings["ifa_head"] and settings["ifa_dws_conv_groups"]
        else "IFA (groups 0)" if settings["ifa_head"] else "linear on CLS"
    )
    typer.echo(f"head         {head}")
    if summary.defaulted:
        typer.echo(f"note         missing from the checkpoint's args, official fallback used: {', '.join(summary.defaulted)}")
    if summary.overridden:
        typer.echo(f"note         overridden on the command line: {', '.join(summary.overridden)}")
    if summary.class_names:
        typer.echo(f"classes      {', '.join(summary.class_names)}")
    typer.echo("tokens       block: in -> out (+ re-inserted from the cache)")
    for step in summary.schedule:
        arrow = f"{step['tokens_in']:>5} -> {step['tokens_out']:<5}"
        extra = f" + {step['reinserted']}" if step["reinserted"] else ""
        typer.echo(f"             {step['index']:>5}: {arrow}{extra}")
    unused = " (without the unused 1000-class head train.py keeps)" if settings["ifa_head"] else ""
    typer.echo(f"parameters   {summary.parameters:,}{unused}")
    typer.echo(f"GMACs        {summary.gmacs:.2f} at batch 1")


def print_deployed(described) -> None:
    typer.echo(f"file         {described.path} ({described.kind}, {described.size_bytes / 1e6:.1f} MB)")
    typer.echo(f"model        {described.model}  [method {described.method}, {described.precision}]")
    typer.echo(f"input        {described.img_size}px, batch {described.batch}, {described.num_classes} classes")
    keep = ", ".join(str(k) for k in described.keep_rate)
    typer.echo(f"keep rate    {keep}; tokens per block {' '.join(f'{a}->{b}' if a != b else str(a) for a, b in described.token_schedule)}")
    pre = described.preprocess
    typer.echo(f"preprocess   resize {pre['resize_size']} ({pre['interpolation']}), centre crop {pre['img_size']}, mean {pre['mean']}, std {pre['std']}")
    if described.class_names:
        typer.echo(f"classes      {', '.join(described.class_names)}")
    for key, value in described.details.items():
        if key != "io" and value not in (None, [], ""):
            typer.echo(f"{key.replace('_', ' '):<12} {value}")


def render_report(report, out: Optional[Path], plot: Optional[Path]) -> None:
    from clca_deploy.bench.plot import plot_accuracy_latency
    from clca_deploy.bench.table import print_table

    print_table(report)
    for skipped in report.skipped_images:
        typer.echo(f"skipped {skipped['path']}: {skipped['reason']}", err=True)
    if out is not None:
        report.write_json(out)
        typer.echo(f"wrote {out}")
    if plot is not None:
        try:
            plot_accuracy_latency(report, plot, batch_size=report.timing["batch_sizes"][0])
            typer.echo(f"wrote {plot}")
        except ClcaDeployError as exc:
            typer.echo(f"no plot: {exc}", err=True)


def bench_failure(report) -> str | None:
    """One line when a benchmark measured nothing, or some model failed; None when every row ran or was skipped."""
    failed = [result.label for result in report.results if result.status == "failed"]
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
        typer.echo(f"{prediction.path}: {best}")
    for path, reason in run.skipped:
        typer.echo(f"skipped {path}: {reason}", err=True)
    typer.echo(f"{len(run.predictions)} classified, {len(run.skipped)} skipped", err=True)

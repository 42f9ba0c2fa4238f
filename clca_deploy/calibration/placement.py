"""Which INT8 candidates stay float in the file `calibrate` writes: the conservative rules, a searched
set (`--target-agreement`), or the set of an earlier search's report (`--placement`)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from clca_deploy.calibration.placement_file import FORMAT, VERSION, Placement
from clca_deploy.calibration.qdq import Int8Candidate
from clca_deploy.calibration.qdq_edit import keep_float
from clca_deploy.calibration.search import SearchOutcome, search_float_units
from clca_deploy.errors import ClcaDeployError
from clca_deploy.statistics import images_to_show, wilson_interval
from clca_deploy.terminal import printable


@dataclass(frozen=True)
class PlacementChoice:
    """The float nodes of the file, each with why it is float, and where the choice came from."""

    float_nodes: frozenset[str]
    kept: tuple[str, ...]  # "node (why)" for every float candidate, in graph order
    kind: str  # "conservative", "searched" or "report"
    report: dict | None = None  # the placement report a search writes
    held_out_agreement: float | None = None
    judged_images: int = 0


def units_in_order(candidates: list[Int8Candidate]) -> list[str]:
    return list(dict.fromkeys(c.unit for c in candidates))


def conservative_placement(candidates: list[Int8Candidate]) -> PlacementChoice:
    float_ones = [c for c in candidates if c.float_reason is not None]
    return PlacementChoice(frozenset(c.node for c in float_ones), tuple(c.kept_entry for c in float_ones), "conservative")


def report_placement(placement: Placement, candidates: list[Int8Candidate], source: str) -> PlacementChoice:
    """The float set of a report, refused in one line if it names units this graph does not have."""
    known = set(units_in_order(candidates))
    unknown = [unit for unit in placement.float_units if unit not in known]
    if unknown:
        raise ClcaDeployError(
            f"the placement report names {len(unknown)} unit(s) {source} does not have (first: {printable(unknown[0])}); "
            "it was searched on another architecture: search again with --target-agreement."
        )
    wanted = set(placement.float_units)
    float_ones = [c for c in candidates if c.unit in wanted]
    kept = tuple(f"{c.node} ({c.unit}: float in the placement report)" for c in float_ones)
    return PlacementChoice(frozenset(c.node for c in float_ones), kept, "report")


@dataclass(frozen=True)
class SearchInputs:
    """What the search needs besides the graphs: the target, how placements are scored, and what the
    report records about the calibration."""

    target: float
    score: Callable  # graph -> HeldOutScore on the held-out images
    held_out: int
    judged_on: str  # which images, in words
    calibration: dict  # {"method", "images", "held_out_images"}
    model_file: dict  # {"name", "checkpoint_sha256"}


def searched_placement(fp32, quantized, candidates: list[Int8Candidate], inputs: SearchInputs,
                       log: Callable[[str], None]) -> PlacementChoice:
    """Search the float units for ``inputs.target`` on the held-out images; the report says what was measured."""
    started = time.perf_counter()
    units = units_in_order(candidates)
    nodes_of = {unit: [c.node for c in candidates if c.unit == unit] for unit in units}

    def evaluate(float_units: frozenset):
        return inputs.score(keep_float(quantized, fp32, [n for unit in float_units for n in nodes_of[unit]]))

    log(f"placement search: {len(units)} units, target {inputs.target:g}% top-1 agreement on {inputs.held_out} held-out images")
    if inputs.held_out < images_to_show(inputs.target):
        log(f"placement search: note: {inputs.held_out} images cannot show {inputs.target:g}%: one flipped image moves "
            f"agreement by {100 / max(inputs.held_out, 1):.2f} points, and even none flipped leaves a 95% interval down to "
            f"{wilson_interval(inputs.held_out, inputs.held_out)[0]:.1f}%; {images_to_show(inputs.target)} images would "
            "(--held-out-data)")
    outcome = search_float_units(units, evaluate, inputs.target, inputs.held_out)
    conservative = inputs.score(keep_float(quantized, fp32, conservative_placement(candidates).float_nodes))
    why = _reasons(outcome, candidates)
    float_ones = [c for c in candidates if c.unit in why]
    report = _report(outcome, conservative, nodes_of, why, inputs, time.perf_counter() - started)
    log(f"placement search: {len(outcome.float_units)} of {len(units)} units float, "
        f"{outcome.chosen.agreement:.2f}% agreement ({outcome.evaluations + 1} graphs measured)")
    return PlacementChoice(
        frozenset(c.node for c in float_ones), tuple(f"{c.node} ({c.unit}: {why[c.unit]})" for c in float_ones),
        "searched", report, outcome.chosen.agreement, inputs.held_out,
    )


def _reasons(outcome: SearchOutcome, candidates: list[Int8Candidate]) -> dict[str, str]:
    """Why each float unit is float: what it did alone in INT8, and the conservative rule where there is one."""
    rules = {c.unit: c.float_reason for c in candidates if c.float_reason}
    ranks = {s.unit: s for s in outcome.sensitivities}
    reasons = {}
    for unit in outcome.float_units:
        alone = ranks[unit].alone_in_int8
        reasons[unit] = (
            f"alone in INT8 it keeps {alone.agreement:.1f}% agreement, mean |dlogit| {alone.mean_abs_logit_error:.3g}; "
            f"rank {ranks[unit].rank} of {len(ranks)}" + (f"; rule: {rules[unit]}" if unit in rules else "")
        )
    return reasons


def _interval(agreement: float, images: int) -> tuple[float, float]:
    """The 95% interval of a held-out agreement percentage, from the count of agreeing images it stands for."""
    return wilson_interval(round(agreement * images / 100), images)


def _report(outcome: SearchOutcome, conservative, nodes_of: dict, why: dict, inputs: SearchInputs, seconds: float) -> dict:
    return {
        "format": FORMAT, "version": VERSION,
        "model": inputs.model_file,
        "calibration": inputs.calibration,
        "target_agreement": inputs.target,
        "measured_on": f"{inputs.judged_on}, onnxruntime CPU, top-1 and logits against the FP32 graph",
        "float_units": [{"unit": unit, "nodes": nodes_of[unit], "why": why[unit]} for unit in outcome.float_units],
        "int8_units": len(nodes_of) - len(outcome.float_units),
        "scores": {"chosen": outcome.chosen.to_dict(), "fastest": outcome.fastest.to_dict(),
                   "conservative": conservative.to_dict()},
        "chosen_agreement_interval_95": list(_interval(outcome.chosen.agreement, inputs.held_out)),
        "sensitivity": [s.to_dict() for s in outcome.sensitivities],
        "evaluations": outcome.evaluations + 1,
        "seconds": round(seconds, 2),
    }

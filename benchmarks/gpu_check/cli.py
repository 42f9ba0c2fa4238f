"""`python benchmarks/gpu_check.py --out DIR_OR_FILE [--budget-s 480] [--device N] [--shared DIR]`.

Refuses in one line (exit 2) before any work: a bad option, an output that cannot be written, or no usable
GPU N (then the JSON says why). Otherwise: probe the machine, write the plan, run the steps that fit the
budget, writing the JSON after each, print the figures; exit 0 when no step failed, 1 when one did.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

from benchmarks.gpu_check.machine import Machine, probe_machine
from benchmarks.gpu_check.plan import Settings, plan_steps
from benchmarks.gpu_check.report import Report, summary
from benchmarks.gpu_check.runner import Budget, run_plan
from benchmarks.gpu_check.work import Work

REPO = Path(__file__).resolve().parents[2]
DEFAULT_NAME = "gpu_check.json"
# Under a 10-minute command limit: probing, the last step's overrun and the summary need the rest.
DEFAULT_BUDGET_S = 480.0


class _Refusal(Exception):
    """A one-line refusal before any work (exit 2)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, like every refusal of the project, instead of usage + error
        raise _Refusal(message)


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = _Parser(prog="gpu_check", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--out", required=True, help=f"The JSON file, or a folder for {DEFAULT_NAME}.")
    parser.add_argument("--budget-s", type=float, default=DEFAULT_BUDGET_S,
                        help="Seconds; a step whose estimate would end past them is not started.")
    parser.add_argument("--device", type=int, default=0, help="CUDA device index every GPU step uses.")
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared", help="The shared fixtures and leaves.")
    args = parser.parse_args(argv)
    if args.device < 0:
        raise _Refusal(f"--device must be a CUDA device index (0, 1, ...), got {args.device}")
    if not (math.isfinite(args.budget_s) and args.budget_s > 0):
        raise _Refusal(f"--budget-s must be a positive number of seconds, got {args.budget_s}")
    return args


def output_path(text: str) -> Path:
    """The file ``text`` names, or ``text/gpu_check.json`` for a folder (an existing one, or a name ending in "/")."""
    from clca_deploy.artifacts import check_output_folder, check_output_path

    out = Path(text)  # the text, not the Path, keeps a trailing slash
    if out.is_dir() or text.endswith(("/", "\\")):
        out = out / DEFAULT_NAME
    check_output_folder(out.parent).mkdir(parents=True, exist_ok=True)
    return check_output_path(out)


def _header(args: argparse.Namespace, argv: list[str] | None) -> dict[str, Any]:
    return {"device": args.device, "budget_s": args.budget_s, "shared": str(args.shared.resolve()),
            "command": ["benchmarks/gpu_check.py", *(sys.argv[1:] if argv is None else argv)]}


def _refuse_without_gpu(out: Path, header: dict[str, Any]) -> int | None:
    """Exit code 2 with a JSON saying why, when GPU N is not usable; None when it is."""
    from clca_deploy.system.gpu import gpu_unavailable_reason

    reason = gpu_unavailable_reason(header["device"])
    if reason is None:
        return None
    from clca_deploy.bench.environment import environment

    report = Report(out, header)
    report.set(status="refused", reason=f"needs an NVIDIA GPU, and {reason}", environment=environment())
    print(f"gpu_check: needs an NVIDIA GPU, and {reason}.", file=sys.stderr)
    return 2


def run_check(out: Path, header: dict[str, Any], probe: Callable[[int, Path], Machine], settings: Settings,
              budget: Budget) -> int:
    """Probe, plan and run into ``out``; the exit code."""
    from clca_deploy.bench.environment import environment

    report = Report(out, header)
    report.write()  # from here on, a kill leaves a JSON
    machine = probe(header["device"], Path(header["shared"]))
    report.set(gpu=machine.gpu, machine=machine.to_dict(), environment=environment())
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as folder:
        work = Work(machine, settings, Path(folder), seconds_left=budget.left)
        code = run_plan(plan_steps(settings), work, report, budget)
    print(summary(report.doc))
    print(f"wrote {out}")
    return code


def main(argv: list[str] | None = None, probe: Callable[[int, Path], Machine] = probe_machine,
         settings: Settings = Settings()) -> int:
    """The command; ``probe`` and ``settings`` are the seams tests use (a fake machine, tiny sizes)."""
    from clca_deploy.errors import ClcaDeployError

    budget = Budget(DEFAULT_BUDGET_S)  # started now: probing counts against it too; its length is set once parsed
    try:
        args = _arguments(argv)
        out = output_path(args.out)
    except (_Refusal, ClcaDeployError) as exc:
        print(f"gpu_check: {exc}", file=sys.stderr)
        return 2
    header = _header(args, argv)
    refused = _refuse_without_gpu(out, header)
    if refused is not None:
        return refused
    budget.seconds = args.budget_s
    try:
        return run_check(out, header, probe, settings, budget)
    except ClcaDeployError as exc:  # the report could not be written (a full disk): one line, the check is incomplete
        print(f"gpu_check: {exc}", file=sys.stderr)
        return 1

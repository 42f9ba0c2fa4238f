"""`tune` on the demo's trained model: three budgets (loose, tight, impossible), each from an empty work
folder within its --minutes, then a rerun of the loose one, and `bench` on every picked file.

It checks what docs/tune.md claims: every run finishes within --minutes; a pick's p90 measured again by
`bench` (50 calls) is within the budget plus 15%; no measured candidate within the budget and the agreement
floor is more accurate than the pick; the impossible budget exits 1 naming the closest; the rerun reuses
every file and measurement (no export, no screen) in a fraction of the first run's time.

    python benchmarks/tune_check.py --checkpoint runs/demo/model.pth --data runs/demo/data \\
        --budgets 20 4 1 --out benchmarks/results/tune_check.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from clca_deploy.artifacts import write_json
from clca_deploy.bench.environment import environment


def tune(args, budget: float, workdir: Path) -> dict:
    command = [sys.executable, "-m", "clca_deploy", "tune", str(args.checkpoint), "--data", str(args.data / "test"),
               "--calibration-data", str(args.data / "train"), "--budget-ms", f"{budget:g}", "--minutes",
               f"{args.minutes:g}", "-o", str(workdir)]
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.monotonic() - started
    report = json.loads((workdir / "tune.json").read_text())
    return {"budget_ms": budget, "exit_code": done.returncode, "seconds": round(seconds, 1),
            "within_minutes": seconds <= args.minutes * 60, "stderr_tail": done.stderr[-600:], "report": report,
            "exported": sum(line.startswith("exporting") for line in done.stderr.splitlines()),
            "screened": sum(line.startswith("[") for line in done.stderr.splitlines())}


def check_pick(run: dict) -> dict:
    """No candidate within the budget and the floor is more accurate than the pick."""
    report, budget = run["report"], run["budget_ms"]
    floor = 99.0
    chosen = report["pick"]["candidate"]
    eligible = [c for c in report["candidates"] if c["status"] == "ok" and c["p90_ms"] is not None
                and c["p90_ms"] <= budget and (c["agreement"] or 0) >= floor]
    best = max((c["top1"] for c in eligible), default=None)
    picked = next((c for c in report["candidates"] if chosen and c["candidate"] == _candidate(chosen, c)), None)
    return {"eligible": len(eligible), "best_top1_within_budget": best,
            "pick_top1": picked["top1"] if picked else None,
            "no_better_candidate": picked is None and best is None or (picked is not None and picked["top1"] == best)}


def _candidate(key: str, row: dict) -> dict:
    runtime, precision, float_precision, keep = key.split("/")
    same = (row["candidate"]["runtime"], row["candidate"]["precision"], row["candidate"]["inference_precision"] or "-",
            f"keep{row['candidate']['keep_rate']:g}") == (runtime, precision, float_precision, keep)
    return row["candidate"] if same else {}


def bench_pick(run: dict, workdir: Path) -> dict | None:
    deployment = run["report"]["deployment"]
    if not deployment.get("model"):
        return None
    candidate = deployment["candidate"]
    out = workdir / "bench_pick.json"
    command = [sys.executable, "-m", "clca_deploy", "bench", "--model", deployment["model"], "--runtime",
               candidate["runtime"], "--data", str(run["report"]["settings"]["data"]), "--batch-sizes", "1",
               "--iters", "50", "--limit", "60", "--no-power", "--json", str(out), "-q"]
    command += ["--inference-precision", candidate["inference_precision"]] if candidate["inference_precision"] else []
    subprocess.run(command, capture_output=True, text=True, check=True)
    row = json.loads(out.read_text())["results"][0]
    p90 = row["latency"]["1"]["p90_ms"]
    return {"file": deployment["model"], "p90_ms": p90, "within_budget_plus_15pct": p90 <= run["budget_ms"] * 1.15}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True, help="A root with train/ and test/ (the demo's data folder).")
    parser.add_argument("--budgets", type=float, nargs=3, default=[20.0, 4.0, 1.0], metavar=("LOOSE", "TIGHT", "IMPOSSIBLE"))
    parser.add_argument("--minutes", type=float, default=8.0)
    parser.add_argument("--workdir", type=Path, default=Path("benchmarks/work/tune_check"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/tune_check.json"))
    args = parser.parse_args()
    runs = {}
    for name, budget in zip(("loose", "tight", "impossible"), args.budgets):
        workdir = args.workdir / name
        subprocess.run(["rm", "-rf", str(workdir)], check=True)  # every budget from an empty work folder
        runs[name] = tune(args, budget, workdir)
        runs[name]["pick_check"] = check_pick(runs[name])
        runs[name]["bench"] = bench_pick(runs[name], workdir)
        print(name, {k: v for k, v in runs[name].items() if k not in ("report", "stderr_tail")}, flush=True)
    runs["loose_rerun"] = tune(args, args.budgets[0], args.workdir / "loose")
    print("rerun", {k: v for k, v in runs["loose_rerun"].items() if k not in ("report", "stderr_tail")}, flush=True)
    write_json(args.out, {"benchmark": "tune_check", "version": 1, "environment": environment(), "minutes": args.minutes,
                          "runs": {name: {k: v for k, v in run.items() if k != "report"} | {
                              "pick": run["report"]["pick"], "candidates": len(run["report"]["candidates"]),
                              "steps": run["report"]["steps"]} for name, run in runs.items()}})
    print(json.dumps({"wrote": str(args.out)}))


if __name__ == "__main__":
    main()

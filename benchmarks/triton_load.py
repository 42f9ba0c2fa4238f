"""Load test of `clca-deploy serve` on loopback: N concurrent clients send real leaf images.

Starts the local Triton server (PyTriton's, dynamic batching) for a model, runs the direct
runtime once over the same images for the reference answers, then for each client count
sends a bounded number of requests (one encoded image each, N clients each with its own HTTP
connection and thread). Reports throughput, p50/p90/p99 latency per request (client-side,
from sending the JPEG to holding the parsed answer), errors, the batch sizes Triton formed,
and whether every answer names the direct runtime's classes for that image with scores within
the tolerance of the model's precision (serving/compare.py).

    python benchmarks/triton_load.py --model benchmarks/work/trained_leaves/leaves.int8.onnx \\
        --data ../shared/data/leaves/test --out benchmarks/results/triton_load.json

(`benchmarks/trained_leaves.py` writes that model; any exported .onnx works.)
"""

from __future__ import annotations

import argparse
import itertools
import sys
import threading
import time
from pathlib import Path

import numpy as np

from clca_deploy.artifacts import write_json
from clca_deploy.bench.environment import environment
from clca_deploy.data import image_paths
from clca_deploy.serving import ServeConfig, running_server
from clca_deploy.serving.check import direct_answers
from clca_deploy.serving.client import classify
from clca_deploy.serving.compare import compare_answer, score_tolerance
from clca_deploy.serving.server import free_port

TOP_K = 5


def classifier_counts(client, model: str, token: str) -> tuple[int, int]:
    """(requests, executions) the classifier has seen: their ratio is the mean batch Triton formed."""
    stats = client.get_inference_statistics(f"{model}_classifier", headers={"triton-access-token": token})
    entry = stats["model_stats"][0]
    return int(entry["inference_count"]), int(entry["execution_count"])


def load_run(url: str, model: str, images: list[Path], expected: dict, tolerance: float, clients: int, requests: int) -> dict:
    import tritonclient.http as triton_http

    encoded = {path: path.read_bytes() for path in images}
    order = itertools.cycle(images)
    lock = threading.Lock()
    remaining = [requests]
    latencies: list[float] = []
    errors: list[str] = []
    mismatches: list[str] = []

    def next_image() -> Path | None:
        with lock:
            if remaining[0] == 0:
                return None
            remaining[0] -= 1
            return next(order)

    def client_loop() -> None:
        with triton_http.InferenceServerClient(url, connection_timeout=60, network_timeout=120) as client:
            while (path := next_image()) is not None:
                started = time.perf_counter()
                try:
                    answer = classify(client, model, [encoded[path]])[0]
                except Exception as exc:  # noqa: BLE001 - every failure is counted and reported
                    with lock:
                        errors.append(f"{path.name}: {type(exc).__name__}: {exc}")
                    continue
                elapsed = time.perf_counter() - started
                reference = expected[path]
                with lock:
                    latencies.append(elapsed * 1000.0)
                    difference = compare_answer(path.name, answer, reference)
                    if not (difference.same_top_k and difference.scores_within(tolerance)):
                        mismatches.append(difference.describe())

    threads = [threading.Thread(target=client_loop) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    samples = np.asarray(latencies)
    return {
        "clients": clients,
        "requests": requests,
        "answered": len(latencies),
        "errors": len(errors),
        "error_examples": errors[:5],
        "mismatches": len(mismatches),
        "mismatch_examples": mismatches[:5],
        "seconds": wall,
        "requests_per_second": len(latencies) / wall,
        "latency_ms": {
            "p50": float(np.percentile(samples, 50)), "p90": float(np.percentile(samples, 90)),
            "p99": float(np.percentile(samples, 99)), "mean": float(samples.mean()), "max": float(samples.max()),
        } if len(samples) else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("benchmarks/work/trained_leaves/leaves.int8.onnx"))
    parser.add_argument("--data", type=Path, default=Path("../shared/data/leaves/test"))
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--requests", type=int, default=300, help="Requests per client count.")
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/triton_load.json"))
    args = parser.parse_args()
    if not args.model.is_file():
        raise SystemExit(f"{args.model} not found: run benchmarks/trained_leaves.py first, or pass --model.")

    images = image_paths([args.data])
    started = time.perf_counter()
    direct = direct_answers(args.model, images, TOP_K)
    expected, tolerance = direct.top, score_tolerance(direct.precision)
    direct_seconds = time.perf_counter() - started
    print(f"direct runtime: {len(images)} images in {direct_seconds:.1f} s ({len(images) / direct_seconds:.1f} images/s, batch 16)")
    config = ServeConfig(port=free_port(), max_batch=args.max_batch, top_k=TOP_K, name="leaves")
    runs = []
    with running_server(args.model, config, log=print) as server:
        import tritonclient.http as triton_http

        with triton_http.InferenceServerClient(server.http_url) as admin:
            classify(admin, server.model, [images[0].read_bytes()])  # warm-up: first calls load lazily
            for clients in args.clients:
                before = classifier_counts(admin, server.model, server.access_token)
                run = load_run(server.http_url, server.model, images, expected, tolerance, clients, args.requests)
                after = classifier_counts(admin, server.model, server.access_token)
                executions = after[1] - before[1]
                run["mean_classifier_batch"] = (after[0] - before[0]) / executions if executions else None
                runs.append(run)
                latency = run["latency_ms"] or {}
                print(
                    f"{clients:>3} clients: {run['requests_per_second']:.1f} req/s, p50 {latency.get('p50', float('nan')):.1f} ms, "
                    f"p99 {latency.get('p99', float('nan')):.1f} ms, errors {run['errors']}, mismatches {run['mismatches']}, "
                    f"mean batch {run['mean_classifier_batch'] or 0:.2f}"
                )
    report = {
        "benchmark": "triton_load",
        "version": 1,
        "command": " ".join(["python", "benchmarks/triton_load.py", *sys.argv[1:]]),
        "model": str(args.model),
        "images": len(images),
        "max_batch": args.max_batch,
        "top_k": TOP_K,
        "score_tolerance": {"precision": direct.precision, "max_abs_probability_difference": tolerance},
        "what_is_timed": "client side, one HTTP request per image: encoded JPEG sent -> answer parsed (loopback)",
        "direct_runtime": {"seconds": direct_seconds, "images_per_second": len(images) / direct_seconds},
        "runs": runs,
        "environment": environment(),
    }
    write_json(args.out, report)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

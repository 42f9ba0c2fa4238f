"""INT8 accuracy of clca-deploy's explicit Q/DQ placement against NVIDIA ModelOpt's ONNX post-training quantization.

Both quantizers calibrate the same FP32 ONNX file on the same images from --data/train (the images
`quantize_int8` picks, saved as an .npy for ModelOpt); every file then runs on onnxruntime (CPU) over
all of --data/test. Reported per file: top-1, top-1 agreement with the FP32 file, max and mean
|logit - FP32 logit|, Q/DQ node counts, the quantized ops by op type and by graph category, and the
file size. ModelOpt runs in its own environment (--modelopt-python) on a copy of the FP32 file, since
its quantize() rewrites its input file in place (shape inference); the original's sha256 is checked.
ModelOpt drops metadata_props, so the FP32 file's are written back into its outputs (graph untouched)
for open_backend to read them.
An ablation then removes each ModelOpt file's Q/DQ pairs category by category (the nodes read the
float tensors the pairs were made from; scales and the rest of the graph unchanged) to show where
its error comes from.

ModelOpt's environment (kept outside this project's):

    python3 -m venv /work/modelopt-venv && /work/modelopt-venv/bin/pip install "nvidia-modelopt[onnx]"

(measured with nvidia-modelopt 0.47.0, onnxruntime-gpu 1.24.4 on its CPU execution provider),

then, from a trained checkpoint (or --fp32-onnx model.onnx [--int8-onnx model.int8.onnx]):

    OMP_NUM_THREADS=1 python benchmarks/int8_peers.py --checkpoint runs/demo/model.pth \
        --data runs/demo/data --out benchmarks/results/int8_peers.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from clca_deploy.artifacts import sha256_file, write_json
from clca_deploy.bench.environment import environment
from clca_deploy.calibration import CalibrationConfig, quantize_int8
from clca_deploy.calibration.batches import calibration_images
from clca_deploy.calibration.qdq import attention_block, module_path, reducer_scope
from clca_deploy.data import PreprocessConfig, iter_batches, open_dataset
from clca_deploy.metadata import metadata_props, read_onnx_metadata, write_metadata
from clca_deploy.runtime import open_backend

# ModelOpt's quantize() calls; calibration_data (the .npy), output_path and the input copy are added.
# calibration_eps=["cpu"]: the default list starts with "cpu" too, then tries CUDA and TensorRT, which
# only print load errors on a machine without them; the arithmetic is the same.
COMMON = {"quantize_mode": "int8", "calibration_eps": ["cpu"]}
VARIANTS = {
    # ModelOpt's defaults: its pattern-based placement, entropy calibration, the rest converted to fp16.
    "modelopt_default": {},
    # The same placement and calibration with the rest of the graph kept fp32, as ours does.
    "modelopt_fp32": {"high_precision_dtype": "fp32"},
    # Closest to ours: only MatMul / Gemm / Conv inputs, max (min-max) calibration, fp32 elsewhere.
    # With op_types_to_quantize set, ModelOpt quantizes every node of those types (no pattern rules).
    "modelopt_gemm_max_fp32": {"op_types_to_quantize": ["MatMul", "Gemm", "Conv"], "calibration_method": "max",
                               "high_precision_dtype": "fp32"},
}

RUNNER = r"""
import importlib.metadata, json, platform, sys, time
import numpy as np
import modelopt
from modelopt.onnx.quantization import quantize
spec = json.load(open(sys.argv[1]))
calibration = np.load(spec["calibration"])
versions = {p: importlib.metadata.version(p) for p in ("nvidia-modelopt", "onnxruntime-gpu", "onnx", "torch", "numpy")}
out = {"modelopt_version": modelopt.__version__, "python": platform.python_version(), "packages": versions, "seconds": {}}
for name, job in spec["variants"].items():
    started = time.perf_counter()
    quantize(job["input"], calibration_data=calibration, output_path=job["output"], **job["kwargs"])
    out["seconds"][name] = round(time.perf_counter() - started, 1)
json.dump(out, open(spec["result"], "w"), indent=2)
"""

# Graph categories of a quantized op (the node that reads a Q/DQ pair), and whether ours quantizes them.
OURS_QUANTIZES = {"patch_embed": True, "linear": True, "attn_qk": True, "score_qkv": False, "score_attention": False,
                  "attn_v": False, "head": False, "layernorm_input": False, "residual_add": False,
                  "token_selection": False, "cls_cache": False, "shape": False, "other": False}
CATEGORY_HELP = {
    "patch_embed": "patch embedding Conv",
    "linear": "qkv / proj / fc1 / fc2 GEMMs (qkv of non-reducing blocks only)",
    "attn_qk": "attention logits q.k^T of non-reducing blocks",
    "score_qkv": "qkv projection of the token-reducing blocks (its q, k decide the kept tokens)",
    "score_attention": "q.k^T and attn.v of the token-reducing blocks",
    "attn_v": "attention-probability matmul attn.v of non-reducing blocks",
    "head": "CLCA's aggregation head (Conv1d / Linear)",
    "layernorm_input": "LayerNormalization inputs (the residual stream)",
    "residual_add": "residual Add inputs",
    "token_selection": "EViT reducer: TopK on the cls attention, gather, fusion Mul",
    "cls_cache": "CLC cache: Slice / Gather of cls tokens between blocks",
    "shape": "Shape (no numeric effect)",
    "other": "anything else",
}


def _scope(node) -> str:
    """The torch module path the dynamo exporter recorded for a node."""
    return next((prop.value for prop in node.metadata_props if prop.key == "namespace"), "")


def categories(fp32_model, score_blocks: tuple[int, ...]) -> dict[str, str]:
    """Node name -> category, read from the FP32 export's module scopes (ModelOpt keeps the node names)."""
    producers = {out: node.op_type for node in fp32_model.graph.node for out in node.output}
    score_qkv = {f"blocks.{i}.attn.qkv" for i in score_blocks}
    found = {}
    for node in fp32_model.graph.node:
        path, scope = module_path(node) or "", _scope(node)
        if node.op_type == "Shape":
            category = "shape"
        elif reducer_scope(node) is not None:
            category = "token_selection"
        elif "/ifa_head" in scope or "/head" in scope or path.startswith("head"):
            category = "head"
        elif node.op_type == "Conv":
            category = "patch_embed" if "patch_embed" in scope else "other"
        elif node.op_type in ("MatMul", "Gemm") and path:
            category = "score_qkv" if path in score_qkv else "linear"
        elif node.op_type == "MatMul" and attention_block(node) is not None:
            block = attention_block(node)
            category = ("score_attention" if block in score_blocks
                        else "attn_v" if producers.get(node.input[0]) == "Softmax" else "attn_qk")
        elif node.op_type == "LayerNormalization":
            category = "layernorm_input"
        elif node.op_type == "Add":
            category = "residual_add"
        elif node.op_type in ("Slice", "Gather", "Concat"):
            category = "cls_cache"
        else:
            category = "other"
        found[node.name] = category
    return found


def quantized_ops(model, category_of: dict[str, str]) -> dict:
    """Q/DQ counts and the ops that read a DequantizeLinear output, by op type and by category."""
    producer = {out: node for node in model.graph.node for out in node.output}
    ops, by_type, by_category = [], {}, {}
    for node in model.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        if any(producer.get(name) is not None and producer[name].op_type == "DequantizeLinear" for name in node.input):
            category = category_of.get(node.name, "other")
            ops.append(node.name)
            by_type[node.op_type] = by_type.get(node.op_type, 0) + 1
            by_category[category] = by_category.get(category, 0) + 1
    count = lambda op: sum(node.op_type == op for node in model.graph.node)  # noqa: E731
    initializers = {init.name for init in model.graph.initializer}
    dq_only = sum(n.op_type == "DequantizeLinear" and n.input[0] in initializers for n in model.graph.node)
    return {"quantize_linear": count("QuantizeLinear"), "dequantize_linear": count("DequantizeLinear"),
            "int8_weight_initializers": dq_only, "cast": count("Cast"), "quantized_ops": len(ops), "by_op_type": by_type, "by_category": by_category,
            "nodes": sorted(ops)}


def without_qdq(model, float_nodes: set[str]):
    """A copy where ``float_nodes`` read the float tensors their Q->DQ pairs were made from; unused Q/DQ dropped."""
    import onnx

    model = onnx.ModelProto.FromString(model.SerializeToString())
    producer = {out: node for node in model.graph.node for out in node.output}
    for node in model.graph.node:
        if node.name not in float_nodes:
            continue
        for index, name in enumerate(node.input):
            dq = producer.get(name)
            q = producer.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
            if q is not None and q.op_type == "QuantizeLinear":  # a DQ-only int8 weight has no float left
                node.input[index] = q.input[0]
    while True:
        used = {name for node in model.graph.node for name in node.input} | {o.name for o in model.graph.output}
        dead = [n for n in model.graph.node
                if n.op_type in ("QuantizeLinear", "DequantizeLinear") and not any(o in used for o in n.output)]
        if not dead:
            return model
        for node in dead:
            model.graph.node.remove(node)


def scores(logits: np.ndarray, reference: np.ndarray, labels: np.ndarray) -> dict:
    error = np.abs(logits.astype(np.float64) - reference)
    return {"top1": round(float((logits.argmax(1) == labels).mean() * 100), 3),
            "agreement_with_fp32": round(float((logits.argmax(1) == reference.argmax(1)).mean() * 100), 3),
            "max_abs_logit_error": float(error.max()), "mean_abs_logit_error": float(error.mean())}


def run_file(path: Path, images: np.ndarray, threads: int) -> np.ndarray:
    with open_backend(path, "onnxruntime", provider="cpu", threads=threads) as backend:
        return np.concatenate([backend(images[s : s + 16]) for s in range(0, len(images), 16)])


def run_model(model, images: np.ndarray, threads: int) -> np.ndarray:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level, options.intra_op_num_threads = 3, threads
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: images[s : s + 16]})[0] for s in range(0, len(images), 16)])


def run_modelopt(python: str, fp32: Path, work: Path, calibration: Path) -> dict:
    """Every variant in one subprocess of ModelOpt's environment, each on its own copy of the FP32 file."""
    jobs, record = {}, {}
    for name, kwargs in VARIANTS.items():
        copy, output = work / f"{name}.input.onnx", work / f"{name}.onnx"
        shutil.copyfile(fp32, copy)
        jobs[name] = {"input": str(copy.resolve()), "output": str(output.resolve()), "kwargs": {**COMMON, **kwargs}}
        call = ", ".join(f"{k}={v!r}" for k, v in jobs[name]["kwargs"].items())
        record[name] = {"call": f"modelopt.onnx.quantization.quantize({jobs[name]['input']!r}, {call}, "
                                f"calibration_data=np.load({str(calibration.resolve())!r}), "
                                f"output_path={jobs[name]['output']!r})",
                        "input_copy_sha256_before": sha256_file(copy), "path": str(output)}
    spec, result, log = work / "modelopt_spec.json", work / "modelopt_result.json", work / "modelopt.log"
    spec.write_text(json.dumps({"calibration": str(calibration.resolve()), "variants": jobs, "result": str(result.resolve())}))
    result.unlink(missing_ok=True)
    with open(log, "w") as handle:
        done = subprocess.run([python, "-c", RUNNER, str(spec)], stdout=handle, stderr=subprocess.STDOUT)
    if done.returncode != 0 or not result.exists():
        sys.exit(f"ModelOpt failed (exit {done.returncode}); see {log}:\n" + "\n".join(log.read_text().splitlines()[-15:]))
    summary = json.loads(result.read_text())
    for name in VARIANTS:
        copy = Path(jobs[name]["input"])
        record[name]["input_copy_sha256_after"] = sha256_file(copy)
        record[name]["input_copy_rewritten_by_modelopt"] = (
            record[name]["input_copy_sha256_before"] != record[name]["input_copy_sha256_after"])
        record[name]["seconds"] = summary["seconds"][name]
        copy.unlink()
    return {"modelopt_version": summary["modelopt_version"], "python": summary["python"],
            "packages": summary["packages"], "log": str(log), "variants": record}


def stamp_metadata(path: Path, fp32_props: dict[str, str], version: str, method: str, images: int) -> None:
    """ModelOpt drops metadata_props; ours are put back (graph untouched) so that open_backend can read the file."""
    import onnx

    model = onnx.load(str(path))
    props = dict(fp32_props, precision="int8")
    props["calibration"] = json.dumps({"method": method, "images": images, "quantizer": f"nvidia-modelopt {version}"})
    write_metadata(model, props)
    onnx.save(model, str(path))


def ablation(model, reference, labels, images, category_of, threads) -> dict:
    """Scores with each category's Q/DQ removed, with only it kept, with only ours' categories kept, with none."""
    quantized = quantized_ops(model, category_of)["nodes"]
    present = sorted({category_of.get(n, "other") for n in quantized} - {"shape"})
    of = lambda cats: {n for n in quantized if category_of.get(n, "other") in cats}  # noqa: E731
    rows = {}
    for category in present:
        rows[f"float_{category}"] = scores(run_model(without_qdq(model, of({category})), images, threads), reference, labels)
        rows[f"only_{category}"] = scores(run_model(without_qdq(model, set(quantized) - of({category})), images, threads),
                                          reference, labels)
    # Made float cumulatively, worst category first (by mean |dlogit| when quantized alone).
    worst = sorted(present, key=lambda c: -rows[f"only_{c}"]["mean_abs_logit_error"])
    for count in range(2, min(len(worst), 5) + 1):
        rows["float_" + "+".join(worst[:count])] = scores(
            run_model(without_qdq(model, of(set(worst[:count]))), images, threads), reference, labels)
    ours = {c for c, q in OURS_QUANTIZES.items() if q}
    rows["only_ours_categories"] = scores(run_model(without_qdq(model, set(quantized) - of(ours)), images, threads),
                                          reference, labels)
    rows["no_qdq"] = scores(run_model(without_qdq(model, set(quantized)), images, threads), reference, labels)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", type=Path, help="Trained checkpoint: exported with clca_deploy into --workdir.")
    source.add_argument("--fp32-onnx", type=Path, help="An FP32 ONNX file exported by clca_deploy.")
    parser.add_argument("--int8-onnx", type=Path, help="Our INT8 file of that export (else quantize_int8 makes it).")
    parser.add_argument("--data", type=Path, required=True, help="Root with train/ (calibration) and test/.")
    parser.add_argument("--calibration-images", type=int, default=256)
    parser.add_argument("--modelopt-python", default="/work/modelopt-venv/bin/python")
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads for the evaluation.")
    parser.add_argument("--workdir", type=Path, default=Path("benchmarks/work/int8_peers"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/int8_peers.json"))
    args = parser.parse_args()
    if not Path(args.modelopt_python).exists():
        sys.exit(f"no ModelOpt environment at {args.modelopt_python}; see this script's docstring to make one.")
    started, stages = time.perf_counter(), {}
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)

    fp32 = args.fp32_onnx
    if fp32 is None:
        from clca_deploy.export import ExportConfig, export_onnx

        fp32 = work / "model.onnx"
        export_onnx(args.checkpoint, fp32, ExportConfig(data=args.data / "test"), log=print)
        stages["export_s"] = round(time.perf_counter() - started, 1)
    fp32_sha = sha256_file(fp32)
    info = read_onnx_metadata(fp32)
    ours = args.int8_onnx
    if ours is None:
        mark = time.perf_counter()
        ours = work / "model.int8.onnx"
        config = CalibrationConfig(data=args.data / "train", num_images=args.calibration_images)
        quantize_int8(fp32, ours, config, log=print)
        stages["ours_quantize_s"] = round(time.perf_counter() - mark, 1)

    # The very images quantize_int8 calibrates on (same selection, same preprocessing, its cache).
    calibration = calibration_images(args.data / "train", info.preprocess, args.calibration_images)
    npy = work / "calibration.npy"
    np.save(npy, calibration.images)
    mark = time.perf_counter()
    modelopt = run_modelopt(args.modelopt_python, fp32, work, npy)
    stages["modelopt_s"] = round(time.perf_counter() - mark, 1)
    sha_after = sha256_file(fp32)

    import onnx

    fp32_model = onnx.load(str(fp32))
    files = {"fp32": fp32, "ours_int8": ours}
    for name, job in modelopt["variants"].items():
        files[name] = Path(job["path"])
        job["size_bytes_as_written"] = files[name].stat().st_size
        method = VARIANTS[name].get("calibration_method", "entropy")
        stamp_metadata(files[name], metadata_props(fp32_model), modelopt["modelopt_version"], method,
                       len(calibration.images))

    mark = time.perf_counter()
    batches = list(iter_batches(open_dataset(args.data / "test"), PreprocessConfig.from_dict(info.preprocess), 32))
    images = np.concatenate([b.images for b in batches])
    labels = np.concatenate([b.labels for b in batches])
    score_blocks = tuple(i for i, (n_in, n_out) in enumerate(info.token_schedule) if n_out != n_in)
    category_of = categories(fp32_model, score_blocks)
    reference = run_file(fp32, images, args.threads).astype(np.float64)
    results, ablations = {}, {}
    ours_nodes = set(quantized_ops(onnx.load(str(ours)), category_of)["nodes"])
    for name, path in files.items():
        logits = reference if name == "fp32" else run_file(path, images, args.threads)
        model = onnx.load(str(path))
        ops = quantized_ops(model, category_of)
        results[name] = {"path": str(path), "size_bytes": path.stat().st_size, **scores(logits, reference, labels),
                         **{k: v for k, v in ops.items() if k != "nodes"}}
        if name.startswith("modelopt"):
            results[name]["quantized_ops_that_ours_keeps_float"] = sorted(set(ops["nodes"]) - ours_nodes)
            results[name]["ours_quantized_ops_it_keeps_float"] = sorted(ours_nodes - set(ops["nodes"]))
            ablations[name] = ablation(model, reference, labels, images, category_of, args.threads)
        print(f"{name:24s} top1 {results[name]['top1']:6.2f}  agreement {results[name]['agreement_with_fp32']:6.2f}  "
              f"max|dlogit| {results[name]['max_abs_logit_error']:.4f}  quantized ops {results[name]['quantized_ops']}")
    stages["evaluation_s"] = round(time.perf_counter() - mark, 1)
    stages["total_s"] = round(time.perf_counter() - started, 1)

    summary = {
        "benchmark": "int8_peers",
        "version": 1,
        "command": " ".join(["python", *sys.argv]),
        "model": {"name": info.model, "method": info.method, "keep_rate": list(info.keep_rate), "img_size": info.img_size,
                  "token_schedule": [list(p) for p in info.token_schedule], "score_blocks": list(score_blocks),
                  "checkpoint": str(args.checkpoint) if args.checkpoint else None, "fp32_onnx": str(fp32)},
        "data": {"calibration": str(args.data / "train"), "calibration_images": int(len(calibration.images)),
                 "calibration_npy": str(npy), "test": str(args.data / "test"), "test_images": int(len(images))},
        "evaluation": f"onnxruntime CPUExecutionProvider, {args.threads} intra-op thread(s), batches of 16",
        "fp32_sha256": {"before": fp32_sha, "after_modelopt": sha_after, "unchanged": fp32_sha == sha_after},
        "modelopt": modelopt,
        "categories": {c: {"meaning": CATEGORY_HELP[c], "ours_quantizes": OURS_QUANTIZES[c]} for c in OURS_QUANTIZES},
        "results": results,
        "ablation": {"how": "Q->DQ pairs feeding a category's nodes bypassed in memory (float input, same scales "
                            "elsewhere); float_X: X made float, only_X: all but X made float", **ablations},
        "seconds": stages,
        "environment": environment(),
    }
    write_json(args.out, summary)
    print(f"fp32 sha256 unchanged after ModelOpt: {fp32_sha == sha_after}; {stages}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

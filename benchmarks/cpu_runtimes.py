"""CPU runtimes and INT8 placements side by side: ours (default and searched, Q/DQ and OpenVINO form) and the peers'.

Speed: EViT + CLCA on CLIP ViT-B/16 at 448 px (README training settings, random weights: speed
does not depend on them), keep 1.0 and 0.1, batch 1 and 8. Each keep rate is exported with
`export_onnx` and calibrated on the real leaves; every variant is then timed host-to-host on the
same batch, the variants taking turns in rounds opened by an untimed call (one latency harness for
all, ``measure_interleaved``), after warm-up calls of every variant. The searched placement of the
speed model is the one the search chose on the trained CLCA model (same blocks, same unit names):
a placement is a property of the architecture and the data, and random weights have no agreement
to search for.

Accuracy: models trained on the leaves (``--trained``, one per family: CLCA, ILA, GLSim), exported
and calibrated the same way, against their PyTorch reference on the test leaves, through
`clca-deploy bench`'s code where a runtime opens the file: top-1, top-1 agreement, logit error; for
GLSim also how often the crop box equals the FP32 file's.

With ``--fold DIR`` (repeated; DIR holds ``leaves/`` with train/, val/ and test/ and the models
trained on that fold's train/, made by ``leaves_split.py --folds``) the accuracy part runs per fold and
adds rows pooled over the folds (``"fold": "pooled"``): every scan of the leaves is judged once, by
models that never saw it, with its flip count and a 95% interval (``cross_validation.py``).

``*_scores_int8*`` is the conservative placement with the reducing blocks' token-score units (their
qkv projection and q·k) in INT8 as well, attn.v still float (``scores_int8_report``): made only for
models that drop tokens, through ``calibrate --placement``.

Variants are named after who made the file: ours ``ort_*`` / ``ov_*``, the peers ``nncf_*``
(OpenVINO's NNCF post-training quantization, transformer preset, of the same FP32 file on the same
images) and ``ort_default_*`` (onnxruntime's ``quantize_static`` with its defaults).

    python benchmarks/cpu_runtimes.py --data ../shared/data/leaves --trained clca.pth --trained ila.pth \\
        --trained glsim.pth --out benchmarks/results/cpu_runtimes.json
    python benchmarks/cpu_runtimes.py --data ../shared/data/leaves --fold folds/fold0 --fold folds/fold1 \
        --fold folds/fold2 --out benchmarks/results/cpu_runtimes.json
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import numpy as np

from clca_deploy.artifacts import write_json
from clca_deploy.bench.environment import environment
from clca_deploy.bench.latency import ROUND_CALLS, measure_interleaved
from clca_deploy.bench.run import BenchConfig, run_bench
from clca_deploy.calibration import CalibrationConfig, quantize_int8
from clca_deploy.export import ExportConfig, export_onnx
from clca_deploy.export.verify import synthetic_images
from clca_deploy.runtime import RuntimeOptions, open_backend

from clca_deploy.calibration.held_out import crop_selection_tensor
from clca_deploy.calibration.int8 import save_model
from clca_deploy.calibration.openvino_form import openvino_form, openvino_form_path
from clca_deploy.calibration.placement_file import placement_report_path
from cpu_runtimes_tables import accuracy_table, speed_table
from cross_validation import pool_rows
from export_latency import SETTINGS, write_checkpoint
from fgir_precision import boxes_from_selection
from peer_quantizers import has_nncf, nncf_quantize, ort_default_quantize

# name -> (file kind, runtime, OpenVINO inference precision)
VARIANTS = {
    "ort_fp32": ("fp32", "onnxruntime", None),
    "ov_fp32": ("fp32", "openvino", "f32"),
    "ov_bf16": ("fp32", "openvino", "bf16"),
    "ort_int8": ("int8", "onnxruntime", None),
    "ov_int8": ("int8", "openvino", "f32"),
    "ov_int8_bf16": ("int8", "openvino", "bf16"),
    "ov_int8_openvino": ("int8_openvino", "openvino", "f32"),
    "ov_int8_openvino_bf16": ("int8_openvino", "openvino", "bf16"),
    "ort_scores_int8": ("scores_int8", "onnxruntime", None),
    "ov_scores_int8_openvino": ("scores_int8_openvino", "openvino", "f32"),
    "ov_scores_int8_openvino_bf16": ("scores_int8_openvino", "openvino", "bf16"),
    "ort_searched": ("searched", "onnxruntime", None),
    "ov_searched_openvino": ("searched_openvino", "openvino", "f32"),
    "ov_searched_openvino_bf16": ("searched_openvino", "openvino", "bf16"),
    "nncf_int8": ("nncf", "openvino", "f32"),
    "nncf_int8_bf16": ("nncf", "openvino", "bf16"),
    "ort_default_int8": ("ort_default", "onnxruntime", None),
}
PEER_KINDS = {"nncf": "OpenVINO NNCF 3.x, transformer preset", "ort_default": "onnxruntime quantize_static defaults"}
DEFAULT_TARGET = 99.5
FAMILY_ORDER = ("clca", "ila", "glsim")


# file kind -> name after the checkpoint's stem; each calibrated kind also has its OpenVINO form, "<kind>_openvino"
FILE_NAMES = {"fp32": ".onnx", "int8": ".int8.onnx", "searched": ".searched.int8.onnx",
              "scores_int8": ".scores_int8.int8.onnx", "nncf": ".nncf.xml", "ort_default": ".ort_default.int8.onnx"}
CALIBRATED = ("int8", "searched", "scores_int8")


def file_path(folder: Path, stem: str, kind: str) -> Path:
    return folder / f"{stem}{FILE_NAMES[kind]}"


def made_files(folder: Path, stem: str) -> dict[str, Path]:
    """The files `prepare` made of one checkpoint in ``folder``, by kind (readers of its work folder use this)."""
    paths = {kind: file_path(folder, stem, kind) for kind in FILE_NAMES}
    paths.update({f"{kind}_openvino": openvino_form_path(paths[kind]) for kind in CALIBRATED})
    return {kind: path for kind, path in paths.items() if path.exists()}


def fold_checkpoints(fold: Path) -> list[Path]:
    """A fold's trained checkpoints, CLCA, ILA, GLSim first."""
    def rank(path: Path) -> int:
        return FAMILY_ORDER.index(path.stem) if path.stem in FAMILY_ORDER else len(FAMILY_ORDER)

    return sorted(fold.glob("*.pth"), key=rank)


def _calibrate(fp32: Path, output: Path, data: Path, num_images: int, **settings) -> tuple[Path, Path]:
    """(Q/DQ file, OpenVINO form) of one calibration; reused when both exist. A missing OpenVINO form beside an
    existing Q/DQ file is derived from it, as calibrate derives it from the same graph (delete the forms to
    remake them after openvino_form changes, without calibrating again)."""
    openvino = openvino_form_path(output)
    if output.exists() and not openvino.exists():
        import onnx

        save_model(openvino_form(onnx.load(str(output))), openvino)
    if not (output.exists() and openvino.exists()):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quantize_int8(fp32, output, CalibrationConfig(data=data, num_images=num_images, openvino=True, **settings), log=print)
    return output, openvino


def scores_int8_report(fp32: Path, output: Path, num_images: int) -> Path | None:
    """A placement report: the conservative float set less the reducing blocks' token-score units, except their
    attn.v (the units whose conservative reason is "token scores" and that are not attention probabilities);
    None for a model that drops no tokens."""
    import onnx

    from clca_deploy.calibration.placement_file import FORMAT, VERSION
    from clca_deploy.calibration.qdq import int8_candidates
    from clca_deploy.metadata import read_onnx_metadata

    reducing = tuple(i for i, (n_in, n_out) in enumerate(read_onnx_metadata(fp32).token_schedule) if n_out != n_in)
    if not reducing:
        return None
    float_units: dict[str, str] = {}
    for candidate in int8_candidates(onnx.load(str(fp32), load_external_data=False), reducing):
        reason = candidate.float_reason
        if reason and ("token scores" not in reason or candidate.unit.endswith(".attn.probs")):
            float_units.setdefault(candidate.unit, reason)
    write_json(output, {"format": FORMAT, "version": VERSION, "target_agreement": None,
                        "calibration": {"method": "minmax", "images": num_images, "held_out_images": 0},
                        "measured_on": "not searched: the conservative rules less the token-score units",
                        "float_units": [{"unit": unit, "why": why} for unit, why in float_units.items()]})
    return output


def prepare(checkpoint: Path, folder: Path, keep: float | None, data: Path, num_images: int,
            placement: Path | None = None, search: dict | None = None) -> dict[str, Path]:
    """Every file of one checkpoint: FP32 export, our INT8 (conservative; searched or from ``placement``) in both
    forms, and the peers' INT8 files; each reused when present."""
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"keep{keep}" if keep is not None else checkpoint.stem
    fp32 = file_path(folder, stem, "fp32")
    if not fp32.exists():
        export_onnx(checkpoint, fp32, ExportConfig(keep_rate=keep, verify_images=1), log=print)
    files = {"fp32": fp32}
    files["int8"], files["int8_openvino"] = _calibrate(fp32, file_path(folder, stem, "int8"), data, num_images)
    if search is not None or placement is not None:
        settings = {"placement": placement} if placement is not None else search
        files["searched"], files["searched_openvino"] = _calibrate(fp32, file_path(folder, stem, "searched"), data, num_images, **settings)
    report = scores_int8_report(fp32, folder / f"{stem}.scores_int8.placement.json", num_images)
    if report is not None:
        files["scores_int8"], files["scores_int8_openvino"] = _calibrate(
            fp32, file_path(folder, stem, "scores_int8"), data, num_images, placement=report)
    if has_nncf():
        files["nncf"] = nncf_quantize(fp32, data, file_path(folder, stem, "nncf"), num_images)
    files["ort_default"] = ort_default_quantize(fp32, data, file_path(folder, stem, "ort_default"), num_images)
    return files


class _IrRunner:
    """An OpenVINO IR (NNCF's output), which the tool's runtimes do not open: compiled here directly."""

    def __init__(self, path: Path, precision: str):
        import openvino as ov

        compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": precision,
                                                              "PERFORMANCE_HINT": "LATENCY"})
        self.request = compiled.create_infer_request()

    def __call__(self, batch):
        self.request.infer({0: batch})
        return self.request.get_output_tensor(0).data.copy()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.request = None


def open_variant(files: dict[str, Path], name: str):
    kind, runtime, precision = VARIANTS[name]
    if kind == "nncf":
        return _IrRunner(files[kind], precision)
    return open_backend(files[kind], runtime, RuntimeOptions.from_values(inference_precision=precision or "f32"))


def speed_checkpoint(work: Path) -> Path:
    """The random-weight ViT-B/16 448 checkpoint the speed part exports, written once into ``work``."""
    path = work / "random_clip_b16_448.pth"
    if path.exists():
        return path
    work.mkdir(parents=True, exist_ok=True)
    return write_checkpoint(work)


def timed_cells(runners: dict, batch_sizes, warmup: int, iters: int) -> dict[str, dict[str, dict]]:
    """Per batch size, every runner's latency and speed-up over ``ort_fp32``, all timed side by side on the
    same synthetic 448 px batch; ``iters`` calls at batch 1, half as many (at least 3) at larger batches."""
    cells = {}
    for size in batch_sizes:
        stats = measure_interleaved(runners, synthetic_images(size, 448, seed=1), warmup, iters if size == 1 else max(3, iters // 2))
        base = stats["ort_fp32"].p50_ms
        cells[str(size)] = {name: {**s.to_dict(), "speedup_vs_ort_fp32": base / s.p50_ms} for name, s in stats.items()}
    return cells


def speed(args, work: Path, placement: Path | None) -> list[dict]:
    checkpoint = speed_checkpoint(work)
    rows = []
    for keep in args.keep:
        files = prepare(checkpoint, work, keep, args.data / "train", args.calibration_images, placement=placement)
        names = [n for n in VARIANTS if VARIANTS[n][0] in files]
        runners = {name: open_variant(files, name) for name in names}
        row = {"keep_rate": keep, "latency": timed_cells(runners, args.batch_sizes, args.warmup, args.iters)}
        for size, cells in row["latency"].items():
            print(f"keep {keep} batch {size}: " + ", ".join(f"{n} {c['p50_ms']:.0f} ms x{c['speedup_vs_ort_fp32']:.2f}" for n, c in cells.items()), flush=True)
        for runner in runners.values():
            runner.__exit__(None, None, None)
        rows.append(row)
    return rows


def _search_settings(args, data: Path) -> dict:
    held_out = args.held_out_data or (data / "val" if (data / "val").is_dir() else None)
    return {"target_agreement": args.target_agreement, **({"held_out_data": held_out} if held_out else {})}


def accuracy(args, work: Path) -> tuple[list[dict], dict[str, dict]]:
    """Every variant of every trained model against its PyTorch reference; and each model's search report.
    With folds: each fold's rows (``"fold"``: its folder name), then the rows pooled over the folds."""
    if not args.fold:
        return accuracy_of(args.trained, args.data, args, work / "trained")
    rows, searches = [], {}
    for fold in args.fold:
        fold_rows, fold_searches = accuracy_of(fold_checkpoints(fold), fold / "leaves", args, work / "folds" / fold.name)
        rows += [{**row, "fold": fold.name} for row in fold_rows]
        searches.update({f"{family}/{fold.name}": search for family, search in fold_searches.items()})
    return rows + pool_rows(rows), searches


def accuracy_of(checkpoints: list[Path], data: Path, args, work: Path) -> tuple[list[dict], dict[str, dict]]:
    """The rows and search reports of models trained on ``data``/train, judged on ``data``/test."""
    rows, searches = [], {}
    for checkpoint in checkpoints:
        files = prepare(checkpoint, work, None, data / "train", args.calibration_images,
                        search=_search_settings(args, data))
        placement = placement_report_path(files["searched"])
        family = _family(files["fp32"])
        searches[family] = {"checkpoint": str(checkpoint), "report": json.loads(placement.read_text()), "placement": str(placement)}
        reference = _reference(checkpoint, data / "test")  # once per model: NNCF's rows and the crop boxes use it
        model_rows = _bench_rows(files, checkpoint, data / "test") + _nncf_rows(files, reference)
        boxes = _crop_box_agreement(files, reference[0])
        for row in model_rows:
            row["family"] = family
            if boxes is not None:
                row["crop_box_equal_to_fp32"] = boxes.get(row["variant"])
        rows += model_rows
    return rows, searches


def _family(fp32: Path) -> str:
    from clca_deploy.metadata import read_onnx_metadata

    return read_onnx_metadata(fp32).family


def _bench_rows(files: dict[str, Path], checkpoint: Path, test: Path) -> list[dict]:
    """The variants a runtime of the tool opens, through `bench`'s code, one bench per runtime and precision
    (so the PyTorch reference runs three times, not once per variant); labels start with the variant's name."""
    groups: dict[tuple[str, str | None], list[tuple[str, Path]]] = {}
    for name, (kind, runtime, precision) in VARIANTS.items():
        if kind != "nncf" and kind in files:
            groups.setdefault((runtime, precision), []).append((name, files[kind]))
    rows = {}
    for (runtime, precision), members in groups.items():
        config = BenchConfig(
            models=tuple(path for _, path in members), data=test, reference=checkpoint, batch_sizes=(1,), warmup=0,
            iters=1, runtimes=(runtime,), runtime_options=RuntimeOptions.from_values(inference_precision=precision or "f32"),
            progress=False, power=False,
        )
        measured = [r.to_dict() for r in run_bench(config, log=lambda _: None).results if not r.is_reference]
        for (name, path), row in zip(members, measured):
            assert row["model_path"] == str(path), (row["model_path"], path)
            rows[name] = {**row, "label": f"{name}: {row['label']}", "variant": name, "peer": PEER_KINDS.get(VARIANTS[name][0])}
    return [rows[name] for name in VARIANTS if name in rows]


def _nncf_rows(files: dict[str, Path], reference) -> list[dict]:
    """NNCF's IR is not a file the runtimes open, so its rows are scored here with bench's own functions."""
    if "nncf" not in files:
        return []
    from clca_deploy.bench.accuracy import accuracy_against

    images, labels, reference_logits = reference
    rows = []
    for name in ("nncf_int8", "nncf_int8_bf16"):
        with _IrRunner(files["nncf"], VARIANTS[name][2]) as runner:
            logits = np.concatenate([runner(images[i : i + 16]) for i in range(0, len(images), 16)])
        rows.append({"label": f"{name}: openvino nncf-int8 ({VARIANTS[name][2]}) ({files['nncf'].name})", "variant": name,
                     "peer": PEER_KINDS["nncf"], "status": "ok", "inference_precision": VARIANTS[name][2],
                     "accuracy": accuracy_against(logits, labels, reference_logits).to_dict()})
    return rows


def _reference(checkpoint: Path, test: Path):
    """(test images, labels in the model's classes, PyTorch logits) as `bench` computes them."""
    from clca_deploy.bench.labels import labels_for_model
    from clca_deploy.data import PreprocessConfig, iter_batches, open_dataset

    dataset = open_dataset(test)
    with open_backend(checkpoint) as reference:
        preprocess = PreprocessConfig.from_dict(reference.description.preprocess)
        batches = list(iter_batches(dataset, preprocess, 16, None, False))
        logits = np.concatenate([reference(b.images) for b in batches])
        description = reference.description
    labels = labels_for_model(np.concatenate([b.labels for b in batches]), dataset.class_names,
                              description.class_names, description.num_classes)
    return np.concatenate([b.images for b in batches]), labels.labels, logits


def _crop_box_agreement(files: dict[str, Path], images: np.ndarray) -> dict[str, float] | None:
    """% of test images whose GLSim crop box equals the FP32 file's, per variant; None without a crop step."""
    import onnx

    if crop_selection_tensor(onnx.load(str(files["fp32"]), load_external_data=False)) is None:
        return None
    reference = _boxes(files, "ort_fp32", images)
    return {name: float((_boxes(files, name, images) == reference).all(axis=1).mean() * 100)
            for name, (kind, _, _) in VARIANTS.items() if kind in files}


def _boxes(files: dict[str, Path], name: str, images: np.ndarray) -> np.ndarray:
    """The crop boxes a variant computes: its graph with the crop step's TopK indices as a second output."""
    import onnx

    kind, runtime, precision = VARIANTS[name]
    selection = crop_selection_tensor(onnx.load(str(files["fp32"]), load_external_data=False))
    if runtime == "openvino":
        import openvino as ov

        model = ov.Core().read_model(str(files[kind]))
        model.add_outputs([selection])
        compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": precision})
        picked = [compiled({0: images[i : i + 16]})[compiled.outputs[-1]] for i in range(0, len(images), 16)]
    else:
        import onnxruntime as ort

        model = onnx.load(str(files[kind]))
        model.graph.output.append(onnx.helper.make_tensor_value_info(selection, onnx.TensorProto.INT64, None))
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        picked = [session.run(None, {"images": images[i : i + 16]})[1] for i in range(0, len(images), 16)]
    return boxes_from_selection(np.concatenate(picked), images.shape[-1])


def speed_placement(searches: dict[str, dict], work: Path) -> Path | None:
    """The CLCA searches' placement for the speed model: the one search's report, or with folds a report
    floating every unit any fold's search floated (a placement must hold for each fold's model)."""
    clca = [search for key, search in searches.items() if key.split("/")[0] == "clca"]
    if len(clca) <= 1:
        return Path(clca[0]["placement"]) if clca else None
    reports = [search["report"] for search in clca]
    units: dict[str, dict] = {}
    for report in reports:
        for entry in report["float_units"]:
            units.setdefault(entry["unit"], entry)
    union = {**reports[0], "float_units": list(units.values()), "measured_on": "union of the folds' searches"}
    path = work / "clca.folds.placement.json"
    write_json(path, union)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="Leaves root with train/ and test/ (and val/: the search judges on it).")
    parser.add_argument("--trained", type=Path, action="append", default=[], help="A checkpoint trained on the leaves (accuracy part); repeat per family.")
    parser.add_argument("--fold", type=Path, action="append", default=[], help="A cross-validation fold: leaves/ and its trained *.pth (accuracy part, instead of --trained); repeat per fold.")
    parser.add_argument("--keep", type=float, nargs="+", default=[1.0, 0.1])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--calibration-images", type=int, default=64)
    parser.add_argument("--target-agreement", type=float, default=DEFAULT_TARGET, help="The placement search's target.")
    parser.add_argument("--held-out-data", type=Path, help="Images the search judges on (default: DATA/val if present).")
    parser.add_argument("--warmup", type=int, default=3, help="Untimed calls of every variant before timing.")
    parser.add_argument("--iters", type=int, default=6)
    parser.add_argument("--workdir", type=Path, default=Path("benchmarks/work/cpu_runtimes"))
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/cpu_runtimes.json"))
    parser.add_argument("--table", type=Path, help="Only print the markdown tables of an existing JSON report.")
    args = parser.parse_args()
    if args.table is not None:
        report = json.loads(args.table.read_text())
        print(accuracy_table(report) if "accuracy" in report else "", speed_table(report) if "speed" in report else "", sep="\n\n")
        return
    if args.data is None:
        parser.error("--data is required")

    report = {
        "benchmark": "cpu_runtimes", "version": 2,
        "what_was_timed": f"host-to-host call on a preprocessed batch, p50; all variants take turns in rounds of {ROUND_CALLS} calls, each opened by an untimed call",
        "settings": SETTINGS, "calibration_images": args.calibration_images, "nncf": has_nncf(),
        "variants": {name: dict(zip(("file", "runtime", "inference_precision"), v)) for name, v in VARIANTS.items()},
        "peers": PEER_KINDS, "environment": environment(),
    }
    placement = None
    if args.trained or args.fold:
        report["accuracy"], report["search"] = accuracy(args, args.workdir)
        for row in report["accuracy"]:
            acc = row["accuracy"] or {}
            print(f"{row['family']} {row['label']}: {row['status']} agree {acc.get('top1_agreement')} "
                  f"mean|dlogit| {acc.get('mean_abs_logit_error')} boxes {row.get('crop_box_equal_to_fp32')}", flush=True)
        placement = speed_placement(report["search"], args.workdir)
    if not args.skip_speed:
        report["speed_placement"] = str(placement) if placement else None
        report["speed"] = speed(args, args.workdir, placement)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.out, report)
    print(json.dumps({"wrote": str(args.out)}))


if __name__ == "__main__":
    main()

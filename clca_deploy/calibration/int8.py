"""FP32 ONNX -> explicit Q/DQ INT8 ONNX, calibrated on leaf images with onnxruntime's quantizer.

The quantizer never sees the user's file: it reads a copy of the checked model inside a private
scratch folder (``workspace.py``), so nothing it writes or deletes lands beside the user's input.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from clca_deploy.artifacts import check_output_path, refuse_overwriting_inputs
from clca_deploy.calibration.batches import calibration_images
from clca_deploy.calibration.config import CalibrationConfig
from clca_deploy.calibration.held_out import HeldOutJudge, split_held_out
from clca_deploy.calibration.openvino_form import openvino_form, openvino_form_path
from clca_deploy.calibration.placement import (
    PlacementChoice, SearchInputs, conservative_placement, report_placement, searched_placement,
)
from clca_deploy.calibration.placement_file import Placement, placement_report_path, read_placement
from clca_deploy.calibration.qdq import check_qdq_conventions, int8_candidates
from clca_deploy.calibration.qdq_edit import keep_float, quantized_nodes
from clca_deploy.calibration.source import load_fp32_export
from clca_deploy.calibration.workspace import private_folder, scratch_write_error
from clca_deploy.errors import ClcaDeployError
from clca_deploy.terminal import printable
from clca_deploy.logs import log_info
from clca_deploy.progress import bars_shown


@dataclass(frozen=True)
class QuantizeResult:
    path: str
    precision: str
    calibration_images: int
    skipped_images: tuple[tuple[str, str], ...]
    from_cache: bool
    method: str
    quantized_nodes: int
    kept_float: tuple[str, ...]
    seconds: float
    placement: str = "conservative"  # or "searched", "report"
    judged_images: int = 0  # images the search measured agreement on
    held_out_agreement: float | None = None  # % top-1 agreement with FP32 the search measured on them
    placement_report: str | None = None
    openvino_path: str | None = None  # OpenVINO's form of the file, from the same calibration

    def to_dict(self) -> dict:
        return asdict(self)


@contextlib.contextmanager
def _quiet_root_logger():
    """onnxruntime's quantizer logs advice ("consider pre-processing") on the root logger at
    WARNING for every call; it does not apply to our graphs, so it is held back here."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


class _Reader:
    """onnxruntime's CalibrationDataReader over preprocessed images, one image at a time.

    The calibration graph exposes every tensor it measures as an output, which stops
    onnxruntime from reusing activation memory: a ViT-B at 448 px with batch 8 peaked above
    23 GB and was killed here. Batches of one keep the peak at one image's activations.
    (onnxruntime's CalibMaxIntermediateOutputs would bound the rest, but in 1.31 it drops
    the collected ranges instead of merging them, so it is not used.)
    """

    def __init__(self, images, input_name: str, batch: int | None):
        self.chunks = [images[i : i + (batch or 1)] for i in range(0, len(images), batch or 1)]
        if batch:  # fixed-batch graphs take only full batches
            self.chunks = [c for c in self.chunks if len(c) == batch]
        self.input_name = input_name

    def get_next(self):
        return {self.input_name: self.chunks.pop(0)} if self.chunks else None

    def rewind(self):  # noqa: D401  onnxruntime's interface
        pass


@dataclass(frozen=True)
class _Job:
    """One calibration, checked before any image is decoded."""

    source: str
    output: Path
    report: Path | None  # where the placement search writes its report
    openvino_output: Path | None
    model: object
    info: object
    input_name: str
    fixed_batch: int | None
    candidates: list
    placement: Placement | None
    report_choice: PlacementChoice | None  # the float set of ``placement``, its units checked against the graph
    held_out: int


def quantize_int8(onnx_path: str | Path, output: str | Path, config: CalibrationConfig, log: Callable[[str], None] = log_info) -> QuantizeResult:
    """Explicit Q/DQ INT8 in TensorRT's conventions; checked node by node before the file lands.

    Every INT8 candidate is calibrated once; the float set (conservative, searched or from a report)
    is then taken back to float (``qdq_edit.keep_float``), so all three paths share one calibration.
    """
    from clca_deploy.extras import require

    require("onnxruntime", "INT8 calibration (onnxruntime's quantizer)")
    started = time.perf_counter()
    job = _prepare(onnx_path, output, config)
    calibration = calibration_images(
        config.data, job.info.preprocess, config.num_images, config.csv, config.image_folder, config.use_cache,
        progress=bars_shown(),
    )
    _log_calibration(calibration, log)
    _warn_unlike_report(job.placement, config, len(calibration.images), log)
    images, held_out = split_held_out(calibration.images, job.held_out)
    _check_fixed_batch(job.fixed_batch, len(images), job.source, read=True)
    if config.held_out_data is not None:  # validate() allows it only with --target-agreement
        held_out = _held_out_data(job, config, log)  # read before the long calibration, so a bad folder fails first
    quantized = _calibrate_candidates(job, images, config.method)
    choice = _choose_placement(job, quantized, held_out, config, len(calibration.images), log)
    final = keep_float(quantized, job.model, choice.float_nodes)
    _check_and_tag_int8(final, job.model, config.method, int(len(images)), choice)
    save_model(final, job.output)
    if job.openvino_output is not None:
        save_model(openvino_form(final), job.openvino_output)
    if choice.report is not None:
        from clca_deploy.artifacts import write_json

        write_json(job.report, choice.report)
    return QuantizeResult(
        path=str(job.output), precision="int8", calibration_images=int(len(images)), skipped_images=calibration.skipped,
        from_cache=calibration.from_cache, method=config.method, quantized_nodes=len(quantized_nodes(final)),
        kept_float=choice.kept, seconds=round(time.perf_counter() - started, 2), placement=choice.kind,
        judged_images=choice.judged_images, held_out_agreement=choice.held_out_agreement,
        placement_report=str(job.report) if choice.report is not None else None,
        openvino_path=str(job.openvino_output) if job.openvino_output is not None else None,
    )


def _prepare(onnx_path, output, config: CalibrationConfig) -> _Job:
    """Every check that needs no image: settings, output paths, the graph, the placement report."""
    from clca_deploy.metadata import image_input

    config.validate()
    placement = read_placement(config.placement) if config.placement is not None else None
    output = check_output_path(output)
    report = check_output_path(placement_report_path(output)) if config.target_agreement is not None else None
    openvino_output = check_output_path(openvino_form_path(output)) if config.openvino else None
    refuse_overwriting_inputs([output, report, openvino_output], [onnx_path, config.data, config.placement, config.held_out_data])
    model, info = load_fp32_export(onnx_path, "calibrate")
    input_name, fixed_batch = image_input(model, str(onnx_path))  # checked against the metadata's image size
    _check_graph_types(model, str(onnx_path))
    reducing_blocks = tuple(i for i, (n_in, n_out) in enumerate(info.token_schedule) if n_out != n_in)
    candidates = int8_candidates(model, reducing_blocks)
    # A report naming units this graph does not have is refused here, before any image is read.
    report_choice = report_placement(placement, candidates, str(onnx_path)) if placement is not None else None
    if config.held_out_data is not None:
        from clca_deploy.data import open_dataset

        open_dataset(config.held_out_data)  # an empty or unreadable folder is refused before calibrating
    held_out = placement.held_out_images if placement is not None else config.calibration_held_out()
    _check_fixed_batch(fixed_batch, config.num_images - held_out, str(onnx_path))
    return _Job(str(onnx_path), output, report, openvino_output, model, info, input_name, fixed_batch, candidates,
                placement, report_choice, held_out)


def _calibrate_candidates(job: _Job, images, method_name: str):
    """The Q/DQ graph with every INT8 candidate quantized, ranges measured on ``images``."""
    from onnxruntime.quantization import CalibrationMethod

    method = {"entropy": CalibrationMethod.Entropy, "percentile": CalibrationMethod.Percentile,
              "minmax": CalibrationMethod.MinMax}[method_name]
    reader = _Reader(images, job.input_name, job.fixed_batch)
    with private_folder() as scratch, _quiet_root_logger():
        return _quantize_qdq(job.model, scratch, reader, [c.node for c in job.candidates], method, job.source)


def _choose_placement(job: _Job, quantized, held_out, config: CalibrationConfig, read: int, log) -> PlacementChoice:
    if job.report_choice is not None:
        return job.report_choice
    if config.target_agreement is None:
        return conservative_placement(job.candidates)
    judged_on = (f"{len(held_out)} images of {config.held_out_data}" if config.held_out_data is not None
                 else f"{len(held_out)} images held out of the calibration set")
    judge = HeldOutJudge(job.model, held_out, job.input_name, job.fixed_batch)
    inputs = SearchInputs(
        target=config.target_agreement, score=judge.score, held_out=int(len(held_out)), judged_on=judged_on,
        calibration={"method": config.method, "images": int(read), "held_out_images": job.held_out},
        model_file={"name": Path(job.source).name, "checkpoint_sha256": job.info.source_sha256},
    )
    return searched_placement(job.model, quantized, job.candidates, inputs, log)


def _held_out_data(job: _Job, config: CalibrationConfig, log):
    """The images of --held-out-data, preprocessed as the model expects (cached like calibration sets)."""
    found = calibration_images(
        config.held_out_data, job.info.preprocess, config.held_out_data_images(), use_cache=config.use_cache,
        progress=bars_shown(), warn_below=0,  # judging on few images is the user's call; the report says how many
    )
    log(f"held-out data: {len(found.images)} images" + (f", {len(found.skipped)} unreadable skipped" if found.skipped else ""))
    return found.images


def _warn_unlike_report(placement: Placement | None, config: CalibrationConfig, read: int, log) -> None:
    """A report reproduces its file only from the same images and method: say so when they differ."""
    if placement is None:
        return
    if placement.method != config.method or placement.calibration_images != read:
        log(
            f"warning: the placement was searched with --method {placement.method} on {placement.calibration_images} images, "
            f"this run uses {config.method} on {read}: the float set is the report's, the scales will differ from the searched file's"
        )


def _check_graph_types(model, source: str) -> None:
    """Refuse a graph whose shapes or types contradict each other now, in memory, before the images are
    decoded: onnxruntime's quantizer would find it only after them, with a message about its own files."""
    import onnx

    try:
        onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError) as exc:
        raise ClcaDeployError(
            f"{source} is not a consistent ONNX graph ({_first_line(exc)}); the file was edited or damaged: export it again."
        ) from None


def _check_fixed_batch(fixed_batch: int | None, images: int, source: str, read: bool = False) -> None:
    """A fixed-batch export is calibrated on whole batches only: refuse fewer images than one batch."""
    if fixed_batch is not None and images < fixed_batch:
        had = f"only {images} images could be read" if read else f"--num-images is {images}"
        raise ClcaDeployError(
            f"{source} takes fixed batches of {fixed_batch} images but {had}; calibrate on at least {fixed_batch} "
            "readable images, or export with a dynamic batch."
        )


def _first_line(exc: BaseException) -> str:
    return printable((str(exc).strip().splitlines() or [type(exc).__name__])[0][:300])


def save_model(model, output: Path) -> None:
    """Write the checked model atomically (a full or read-only disk is atomic_output's one line)."""
    import onnx

    from clca_deploy.artifacts import atomic_output

    with atomic_output(output) as tmp:
        onnx.save(model, str(tmp))


def _log_calibration(calibration, log: Callable[[str], None]) -> None:
    """One line for the calibration set, one per image left out of it."""
    log(
        f"calibration: {len(calibration.images)} images"
        + (f" (cached: {_shown(str(calibration.cache_path))})" if calibration.from_cache else "")
        + (f", {len(calibration.skipped)} unreadable skipped" if calibration.skipped else "")
    )
    for path, reason in calibration.skipped:
        log(f"skipped {_shown(path)}: {_shown(reason)}")


def _shown(text: str) -> str:
    """File names and reasons come from the disk: control characters escaped, and names that are not
    UTF-8 (surrogate escapes) shown as \\udcXX instead of failing to print."""
    return printable(text).encode("utf-8", "backslashreplace").decode("utf-8")


def _quantize_qdq(model, scratch: Path, reader: _Reader, nodes: list[str], method, source: str):
    """The quantized model, made by onnxruntime from a copy of ``model`` in ``scratch``; its failures
    (a graph it cannot run, a full scratch disk) are one line."""
    import onnx

    copy, quantized = scratch / "model.onnx", scratch / "model.int8.onnx"
    try:
        onnx.save(model, str(copy))
        _run_quantizer(copy, quantized, reader, nodes, method)
        return onnx.load(str(quantized))
    except ClcaDeployError:
        raise
    except Exception as exc:  # onnxruntime and onnx raise their own classes, none a user can act on as is
        raise scratch_write_error(exc, scratch) or _quantizer_error(exc, source, scratch) from None


def _quantizer_error(exc: BaseException, source: str, scratch: Path) -> ClcaDeployError:
    if isinstance(exc, MemoryError):
        return ClcaDeployError(
            f"ran out of memory calibrating {source}; pass a smaller --num-images, or calibrate on a machine with more memory."
        )
    # The user never named the scratch files onnxruntime's messages quote; say what they are instead.
    reason = _first_line(exc).replace(str(scratch), "<scratch folder>")
    return ClcaDeployError(
        f"onnxruntime could not calibrate {source} ({type(exc).__name__}: {reason}); "
        "is it an unmodified `clca-deploy export`? Export it again."
    )


def _run_quantizer(onnx_path: Path, output: Path, reader: _Reader, nodes: list[str], method) -> None:
    """Run onnxruntime's static quantizer with Q/DQ placed as TensorRT expects, on ``nodes`` only."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    quantize_static(
        str(onnx_path),
        str(output),
        reader,
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
        op_types_to_quantize=["MatMul", "Conv", "Gemm"],  # also limits what the calibrator collects
        nodes_to_quantize=nodes,
        calibrate_method=method,
        calibration_cache_path=None,
        extra_options={
            "ActivationSymmetric": True,  # TensorRT: zero point 0
            "WeightSymmetric": True,
            "QDQOpTypePerChannelSupportToAxis": {"MatMul": 1},  # output channels of [in, out] weights
            "MatMulConstBOnly": False,  # attention matmuls of non-reducing blocks too
            # Q/DQ on GEMM inputs only, as TensorRT expects; softmax keeps float logits.
            "OpTypesToExcludeOutputQuantization": ["MatMul", "Conv", "Gemm"],
            "QuantizeBias": False,  # TensorRT fuses float biases itself
        },
    )


def _check_and_tag_int8(quantized, source_model, method: str, images: int, choice: PlacementChoice) -> None:
    """Refuse the quantized graph unless it keeps TensorRT's Q/DQ conventions; else tag it int8 in its metadata."""
    from clca_deploy.metadata import metadata_props, write_metadata

    violations = check_qdq_conventions(quantized)
    if violations:
        raise ClcaDeployError(
            f"the quantized graph breaks TensorRT's Q/DQ conventions ({len(violations)}: "
            f"{violations[0].node}: {violations[0].problem}); nothing was written. Please report this."
        )
    props = metadata_props(source_model)
    props["precision"] = "int8"
    calibration = {"method": method, "images": images, "placement": choice.kind}
    if choice.held_out_agreement is not None:
        calibration["held_out_agreement"] = choice.held_out_agreement
    props["calibration"] = json.dumps(calibration)
    write_metadata(quantized, props)

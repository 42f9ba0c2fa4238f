"""torch -> ONNX at a static keep rate, with metadata, checks and a parity test before the file lands."""

from __future__ import annotations

import math
import logging
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from clca_deploy.artifacts import atomic_output, check_output_path, refuse_overwriting_inputs, sha256_file
from clca_deploy.errors import ClcaDeployError, ConfigError
from clca_deploy.metadata import MAX_BATCH, build_metadata, write_metadata
from clca_deploy.export.class_names import choose_class_names, read_class_names_file
from clca_deploy.export.ops import DATA_DEPENDENT_OPS, disallowed_ops, misread_grid_samples, op_census
from clca_deploy.export.verify import ExportVerificationError, ParityResult, check_parity, synthetic_images
from clca_deploy.logs import log_info

# LayerNormalization needs opset 17; the TensorRT 10 ONNX parser reads opsets 9 to 20.
MIN_OPSET, MAX_OPSET = 17, 20
GRID_SAMPLE_MAX_OPSET = 19  # opset 20 renamed GridSample's 'bilinear' to 'linear' (see ops.misread_grid_samples)
INPUT_NAME, OUTPUT_NAME = "images", "logits"


# Logits of a leaf classifier are O(10); a tolerance above this would let any graph pass.
MAX_TOLERANCE = 1.0


@dataclass(frozen=True)
class ExportConfig:
    """How to export: everything except the model and the output path."""

    keep_rate: float | None = None  # None: the checkpoint's own
    img_size: int | None = None  # None: the checkpoint's own
    opset: int = 18
    batch: int | None = None  # None: dynamic batch dimension
    simplify: bool = False  # run onnxslim, then verify again
    tolerance: float = 1e-3  # max abs logit error against PyTorch
    verify_images: int = 8
    data: Path | None = None  # real images for the parity check (else synthetic); an ImageFolder's classes name them
    class_names: Path | None = None  # names to write (one per line, or a JSON list); default: the checkpoint's
    train_args: Path | None = None  # JSON of train.py args, for a checkpoint without them (bare state dict)

    def validate(self) -> None:
        if self.keep_rate is not None and not 0.0 < self.keep_rate <= 1.0:
            raise ConfigError(f"keep rate {self.keep_rate} is outside (0, 1]; use e.g. --keep 0.1 to keep 10% of tokens.")
        if not MIN_OPSET <= self.opset <= MAX_OPSET:
            raise ConfigError(
                f"opset {self.opset} is not supported; use {MIN_OPSET}..{MAX_OPSET} "
                "(17+ for one-node LayerNorm, at most 20 for the TensorRT 10 parser)."
            )
        if self.batch is not None and not 1 <= self.batch <= MAX_BATCH:
            raise ConfigError(f"--batch must be 1..{MAX_BATCH}, got {self.batch}.")
        if self.verify_images < 1:
            raise ConfigError("the parity check needs at least one image.")
        if self.data is not None and not Path(self.data).exists():
            raise ConfigError(f"data folder {self.data} does not exist.")
        # A NaN tolerance would turn the parity gate off (every comparison with NaN is false).
        if isinstance(self.tolerance, bool) or not (math.isfinite(self.tolerance) and 0 < self.tolerance <= MAX_TOLERANCE):
            raise ConfigError(
                f"--tolerance must be a number in (0, {MAX_TOLERANCE:g}] (max abs logit error against PyTorch), "
                f"got {self.tolerance}."
            )


@dataclass(frozen=True)
class ExportResult:
    path: str
    sha256: str
    size_bytes: int
    opset: int
    batch: str  # "dynamic" or the fixed size
    model: str
    keep_rate: tuple[float, ...]
    trained_keep_rate: tuple[float, ...]
    img_size: int
    token_schedule: tuple[tuple[int, int], ...]
    ops: dict[str, int]
    parity: ParityResult
    simplified: bool
    seconds: float
    notes: tuple[str, ...] = field(default_factory=tuple)
    class_names_from: str | None = None  # "checkpoint", "--class-names FILE", "--data DIR"; None: the file names none

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["parity"] = self.parity.to_dict()
        return data


def _trace_to_onnx(model, example, path: Path, opset: int, dynamic_batch: bool) -> None:
    """Export with the dynamo-based exporter.

    Chosen by measurement on ViT-Tiny EViT+CLCA (torch 2.14, opset 18): the dynamo exporter
    gives 515 nodes with 7 Shape ops against TorchScript's 1103 nodes, 414 Constants and
    52 Shape ops, for the same logits and the same one-node LayerNormalization. It is the
    maintained exporter (TorchScript's is deprecated since torch 2.9); both are byte-for-byte
    deterministic. The price is export time, about 17 s against 1.2 s, paid once per model.
    """
    import torch

    dynamic_shapes = {INPUT_NAME: {0: torch.export.Dim("batch", min=1, max=MAX_BATCH)}} if dynamic_batch else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
        torch.onnx.export(
            model,
            (example,),
            str(path),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            opset_version=opset,
            dynamo=True,
            dynamic_shapes=dynamic_shapes,
            external_data=False,
            optimize=True,  # the default from torch 2.7; folds CastLike nodes TensorRT's allow-list refuses
            verbose=False,
        )


def _check_graph(onnx_model) -> None:
    bad = disallowed_ops(onnx_model)
    if bad:
        dynamic = sorted(set(bad) & DATA_DEPENDENT_OPS)
        hint = f" ({', '.join(dynamic)} make token counts data-dependent)" if dynamic else ""
        raise ClcaDeployError(
            f"the exported graph contains ops outside the TensorRT allow-list: {bad}{hint}. "
            "This is a bug in clca-deploy's model code; please report it with the model name."
        )
    misread = misread_grid_samples(onnx_model)
    if misread:
        raise ClcaDeployError(
            f"TensorRT would run {', '.join(misread)} as nearest-neighbour (opset 20 renamed GridSample's "
            "'bilinear' to 'linear'); export with --opset 19 or lower."
        )


def _parity_images(config: ExportConfig, preprocess: dict):
    """(images, where they come from, the dataset's class names or None), the dataset opened once."""
    if config.data is None:
        return synthetic_images(config.verify_images, preprocess["img_size"]), "synthetic", None
    from clca_deploy.data import BatchReader, PreprocessConfig, open_dataset

    dataset = open_dataset(config.data)
    settings = PreprocessConfig.from_dict(preprocess)
    reader = BatchReader(dataset, settings, batch_size=config.verify_images, limit=config.verify_images)
    import numpy as np

    images = np.concatenate([batch.images for batch in reader])
    return images, str(config.data), dataset.class_names


def export_onnx(checkpoint: str | Path, output: str | Path, config: ExportConfig = ExportConfig(), log: Callable[[str], None] = log_info) -> ExportResult:
    """Export a checkpoint to ONNX at a static keep rate; the file lands only if it passes every check."""
    from clca_deploy.extras import require, require_torch_stack

    require_torch_stack("export")  # before any work, with the extra to install
    require("onnxscript", "export (the dynamo ONNX exporter)")
    require("onnxruntime", "export's parity check")
    import onnx

    from clca_deploy.model import load_checkpoint
    from clca_deploy.model.checkpoint import read_train_args

    started = time.perf_counter()
    config.validate()
    output = check_output_path(output)
    refuse_overwriting_inputs([output], [checkpoint, config.data, config.train_args, config.class_names])
    named_file = (config.class_names, read_class_names_file(config.class_names)) if config.class_names else None
    settings = read_train_args(config.train_args) if config.train_args is not None else {}
    trained = load_checkpoint(checkpoint, **settings)
    _refuse_misread_crop(trained, config.opset)
    model, notes = _deployed_model(trained, config)
    img_size = model.config.img_size
    preprocess = model.config.preprocess_settings()
    source_sha = sha256_file(checkpoint)
    images, source, folder_names = _parity_images(config, preprocess)
    folders = (Path(config.data), folder_names) if folder_names else None
    named = choose_class_names(model.config.num_classes, model.class_names, named_file, folders)
    model.class_names = named.names  # the model export loaded, not the caller's: the metadata reads it
    notes.extend(named.notes)
    example = _example_batch(images, config.batch)

    with atomic_output(output) as tmp:
        log(f"exporting {model.config.model} at keep {list(model.config.keep_rate)}, {img_size}px, opset {config.opset}")
        _trace_to_onnx(model, example, tmp, config.opset, dynamic_batch=config.batch is None)
        _finish_graph(tmp, model, preprocess, trained.config.keep_rate, source_sha)
        parity, simplified = _verified_parity(tmp, model, images, config, source, log)
        final_model = onnx.load(str(tmp))
        size = tmp.stat().st_size
        digest = sha256_file(tmp)
    return ExportResult(
        path=str(output),
        sha256=digest,
        size_bytes=size,
        opset=config.opset,
        batch=str(config.batch) if config.batch else "dynamic",
        model=model.config.model,
        keep_rate=model.config.keep_rate,
        trained_keep_rate=trained.config.keep_rate,
        img_size=img_size,
        token_schedule=tuple((s.tokens_in, s.tokens_out) for s in model.token_schedule()),
        ops=dict(sorted(op_census(final_model).items())),
        parity=parity,
        simplified=simplified,
        seconds=round(time.perf_counter() - started, 2),
        notes=tuple(notes),
        class_names_from=named.source,
    )


def _refuse_misread_crop(trained, opset: int) -> None:
    """Refuse a GLSim export at an opset whose GridSample TensorRT would misread."""
    if trained.config.family == "glsim" and opset > GRID_SAMPLE_MAX_OPSET:
        raise ClcaDeployError(
            f"GLSim's crop is a GridSample, which TensorRT's parser runs as nearest-neighbour from opset 20 on; "
            f"use --opset {GRID_SAMPLE_MAX_OPSET} or lower (the default is 18)."
        )


def _deployed_model(trained, config: ExportConfig) -> tuple[Any, list[str]]:
    """The model to export (the asked keep rate and input size, inference mode) and a note per change from training."""
    from clca_deploy.model.deploy import for_inference, with_input_size, with_keep_rate

    model = trained
    notes = []
    if config.keep_rate is not None and (config.keep_rate,) != trained.config.keep_rate:
        model = with_keep_rate(trained, config.keep_rate)
        notes.append(
            f"keep rate {config.keep_rate} differs from the trained {list(trained.config.keep_rate)}: "
            "the weights are the same, accuracy may not be; measure it with `clca-deploy bench`."
        )
    if config.img_size is not None and config.img_size != model.config.img_size:
        model = with_input_size(model, config.img_size)
        notes.append(
            f"input size {config.img_size} differs from the trained {trained.config.img_size}: position "
            "embeddings were resampled (bicubic); measure accuracy before deploying."
        )
    return for_inference(model), notes


def _example_batch(images, batch: int | None):
    """The tracing input: ``batch`` images (2 for a dynamic batch), repeated when there are fewer."""
    import torch

    size = batch or 2
    example = torch.from_numpy(images[:size])
    if len(example) < size:
        example = example.repeat(size, 1, 1, 1)[:size]
    return example


def _finish_graph(path: Path, model, preprocess: dict, trained_keep_rate: tuple[float, ...], source_sha: str) -> None:
    """Check and tidy the traced graph at ``path``, add its metadata, and save it back, checked by onnx."""
    import onnx

    onnx_model = onnx.load(str(path))
    _check_graph(onnx_model)
    _drop_stack_traces(onnx_model)
    fold_weight_transposes(onnx_model)
    onnx_model.doc_string = f"{model.config.family.upper()} {model.config.model}, exported by clca-deploy"
    write_metadata(onnx_model, build_metadata(model, preprocess, trained_keep_rate, source_sha))
    onnx.save(onnx_model, str(path))
    onnx.checker.check_model(str(path), full_check=True)


def _verified_parity(path: Path, model, images, config: ExportConfig, source: str, log) -> tuple[ParityResult, bool]:
    """(parity, simplified): the graph at ``path`` against PyTorch, again after simplifying if asked; raises if off."""
    import onnx

    batch_sizes = (config.batch,) if config.batch else (1, len(images))
    parity = check_parity(path, model, images, batch_sizes, config.tolerance, source)
    log(_parity_line(parity, "exported"))
    _fail_if_off(parity)
    if not config.simplify:
        return parity, False
    _simplify(path)
    onnx.checker.check_model(str(path), full_check=True)
    parity = check_parity(path, model, images, batch_sizes, config.tolerance, source)
    log(_parity_line(parity, "simplified"))
    _fail_if_off(parity)
    return parity, True


def fold_weight_transposes(onnx_model) -> int:
    """Replace ``Transpose(weight)`` nodes by transposed weights; returns how many nodes went.

    The exporter folds these itself, except for weights a model uses twice (GLSim runs one
    encoder on the image and on the crop): there every use keeps a Transpose node, which hides
    the weight from INT8 node selection (a MatMul on a weight) and from TensorRT's weight
    handling. Each (weight, permutation) becomes one initializer, so shared weights stay shared.
    """
    from onnx import numpy_helper

    graph = onnx_model.graph
    initializers = {init.name: init for init in graph.initializer}
    folded: dict[tuple[str, tuple[int, ...]], str] = {}
    renamed: dict[str, str] = {}
    keep = []
    for node in graph.node:
        if node.op_type != "Transpose" or node.input[0] not in initializers:
            keep.append(node)
            continue
        perm = tuple(next((list(a.ints) for a in node.attribute if a.name == "perm"), []))
        key = (node.input[0], perm)
        if key not in folded:
            array = numpy_helper.to_array(initializers[node.input[0]])
            transposed = array.transpose(perm or None)
            folded[key] = f"{node.input[0]}.transposed{len(folded)}"
            graph.initializer.append(numpy_helper.from_array(transposed.copy(), folded[key]))
        renamed[node.output[0]] = folded[key]
    if not renamed:
        return 0
    del graph.node[:]
    graph.node.extend(keep)
    for node in graph.node:
        for i, name in enumerate(node.input):
            node.input[i] = renamed.get(name, name)
    for output in graph.output:
        if output.name in renamed:
            raise ClcaDeployError("an exported output is a transposed weight; please report this with the model name.")
    used = {name for node in graph.node for name in node.input}
    unused = [init for init in graph.initializer if init.name not in used]
    for init in unused:
        graph.initializer.remove(init)
    return len(renamed)


def _drop_stack_traces(onnx_model) -> None:
    """Remove the exporter's per-node Python stack traces: they embed this installation's file
    paths, which made the same export differ byte-wise between two checkouts. The module
    ``namespace`` stays (INT8 calibration reads it)."""
    for node in onnx_model.graph.node:
        kept = [p for p in node.metadata_props if "stack_trace" not in p.key]
        if len(kept) != len(node.metadata_props):
            del node.metadata_props[:]
            node.metadata_props.extend(kept)


def _parity_line(parity: ParityResult, stage: str) -> str:
    return (
        f"{stage}: onnxruntime vs PyTorch on {parity.num_images} {parity.images} images, batch {list(parity.batch_sizes)}: "
        f"max abs logit error {parity.max_abs_error:.2e} (tolerance {parity.tolerance:.0e} + PyTorch's own "
        f"sensitivity to a 1e-5 input change, up to {parity.max_instability:.1e}), "
        f"top-1 agreement {parity.top1_agreement:.1f}%"
    )


def _fail_if_off(parity: ParityResult) -> None:
    if not parity.passed:
        raise ExportVerificationError(
            f"the ONNX graph's logits differ from PyTorch's by up to {parity.max_abs_error:.2e} on "
            f"{parity.images_beyond_allowance} of {parity.num_images} images, beyond the tolerance "
            f"{parity.tolerance:.0e} plus the model's own input sensitivity; nothing was written. "
            "Report this with the model name, or pass a larger --tolerance if you accept it."
        )


def _simplify(path: Path) -> None:
    try:
        import onnxslim
    except ImportError as exc:
        raise ClcaDeployError('--simplify needs onnxslim: pip install "clca-deploy[dev]" (or pip install onnxslim).') from exc
    import onnx

    model = onnx.load(str(path))
    metadata = list(model.metadata_props)
    slim = onnxslim.slim(model)
    del slim.metadata_props[:]
    slim.metadata_props.extend(metadata)
    onnx.save(slim, str(path))

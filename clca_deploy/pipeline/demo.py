"""``clca-deploy demo``, the whole pipeline on a CPU with a model it trains itself: data -> train -> export ->
INT8 -> (TensorRT) -> Triton -> bench, each step reusing earlier output.

Every artefact lands in one work folder, and a step whose artefact is already there (and
belongs to the same inputs) is skipped, so a second run costs only the benchmark.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from clca_deploy.errors import ClcaDeployError
from clca_deploy.extras import has_module, install_command
from clca_deploy.terminal import plural
from clca_deploy.logs import log_info


MODEL_FILE = "model.pth"
# Cultivars twice as far apart as the generator's default: the demo trains for about a
# minute, and a tiny ViT from scratch needs that much signal to get well above chance.
SYNTHETIC_DIFFICULTY = 2.0
BENCH_FILE = "bench.json"
TRITON_REPOSITORY = "triton-repo"


@dataclass(frozen=True)
class DemoConfig:
    """Settings of a demo run; the defaults finish in a few minutes on 2 CPU cores."""

    workdir: Path = Path("clca-demo")
    data: Path | None = None  # an ImageFolder root with train/ and test/; default: synthetic leaves
    model: str = "evit_vit_tiny_patch16_224"
    img_size: int = 112
    keep_rate: float = 0.1
    epochs: int = 30
    calibration_images: int = 128
    batch_sizes: tuple[int, ...] = (1, 8)
    iters: int = 20
    seed: int = 1

    def to_dict(self) -> dict:
        data = asdict(self)
        data["workdir"], data["data"] = str(self.workdir), None if self.data is None else str(self.data)
        data["batch_sizes"] = list(self.batch_sizes)
        return data


@dataclass(frozen=True)
class DemoStep:
    name: str
    action: str  # "made" | "reused" | "resumed" | "skipped"
    path: str
    detail: str = ""


@dataclass(frozen=True)
class DemoResult:
    steps: tuple[DemoStep, ...]
    bench_json: str
    bench_plot: str | None
    seconds: float
    settings: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


class _Steps:
    """Numbered progress lines: what each step did and where it wrote."""

    def __init__(self, total: int, log: Callable[[str], None]):
        self.total, self.log, self.done = total, log, []

    def record(self, name: str, action: str, path: Path, detail: str = "") -> None:
        step = DemoStep(name, action, str(path), detail)
        self.done.append(step)
        self.log(f"[{len(self.done)}/{self.total}] {name:<9} {action:<8} {path}" + (f"  ({detail})" if detail else ""))


def _prepare_data(config: DemoConfig, steps: _Steps) -> tuple[Path, Path]:
    """(train split, test split) of the given data or of the synthetic set made here."""
    from clca_deploy.train.loop import resolve_splits

    if config.data is not None:
        root = Path(config.data)
        train_dir, test_dir = resolve_splits(root, None)
        if train_dir == root or test_dir is None:
            raise ClcaDeployError(f"--data {root} needs train/ and test/ (or val/) ImageFolder splits.")
        steps.record("data", "given", root)
        return train_dir, test_dir
    from clca_deploy.data.synthetic import SyntheticLeafConfig, write_synthetic_dataset

    root = config.workdir / "data"
    info = write_synthetic_dataset(root, SyntheticLeafConfig(seed=config.seed, difficulty=SYNTHETIC_DIFFICULTY))
    detail = f"synthetic leaves: {info.num_classes} cultivars, {info.train_images} train / {info.test_images} test images"
    steps.record("data", "reused" if info.reused else "made", root, detail)
    return info.train_dir, info.test_dir


def _train_config(config: DemoConfig):
    from clca_deploy.train import TrainConfig

    return TrainConfig(
        model=config.model, keep_rate=config.keep_rate, img_size=config.img_size, epochs=config.epochs,
        augment="weak", seed=config.seed, evaluations=3,
    )


def _check_settings(config: DemoConfig) -> None:
    """Every setting the steps will use, refused before the first step writes anything."""
    from clca_deploy.export import ExportConfig
    from clca_deploy.train.family import family_for

    family_for(_train_config(config)).build(("a", "b"))  # the model settings (size, patch grid...), tiny to build
    ExportConfig(keep_rate=config.keep_rate).validate()
    if config.calibration_images < 1 or config.iters < 1 or not config.batch_sizes or min(config.batch_sizes) < 1:
        raise ClcaDeployError("calibration images, timed calls and batch sizes must all be at least 1.")


def training_line(config: DemoConfig) -> str:
    """What the training step is about to do (the time is the default run's, measured on 2 cores)."""
    took = " (about a minute on 2 cores)" if config.epochs == DemoConfig.epochs else ""
    return (f"training {config.model} at {config.img_size}px, keep {config.keep_rate:g}, "
            f"{plural(config.epochs, 'epoch')}{took}...")


def _train(config: DemoConfig, train_dir: Path, test_dir: Path, steps: _Steps, log: Callable[[str], None]) -> Path:
    from clca_deploy.train import train
    from clca_deploy.train.checkpoint import read_training_state

    output = config.workdir / MODEL_FILE
    train_config = _train_config(config)
    resume = False
    if output.exists():
        state = read_training_state(output)
        args = vars(state["args"])
        same = (args.get("model"), args.get("input_size"), args.get("keep_rate"), args.get("epochs")) == (
            config.model, config.img_size, [config.keep_rate], config.epochs)
        if not same:
            raise ClcaDeployError(
                f"{output} was trained with other settings; remove it or use another --workdir."
            )
        if int(state["epoch"]) + 1 >= config.epochs:
            history = state["lr_scheduler"].get("history") or [{}]
            top1 = history[-1].get("test_top1")
            steps.record("train", "reused", output, f"test top-1 {top1:.1f}%" if top1 is not None else "")
            return output
        resume = True
    log(f"      {training_line(config)}")
    quiet = lambda line: log("      " + line) if line.startswith(("budget", "resume", "skipped")) else None
    result = train(train_dir, output, train_config, test=test_dir, resume=resume, log=quiet)
    detail = f"{plural(result.epochs, 'epoch')} in {result.seconds:.0f} s, test top-1 {result.test_top1:.1f}%"
    steps.record("train", "resumed" if resume else "made", output, detail)
    return output


def _export(config: DemoConfig, checkpoint: Path, checkpoint_sha: str, test_dir: Path, steps: _Steps) -> Path:
    from clca_deploy.export import ExportConfig, export_onnx
    from clca_deploy.metadata import is_export_of

    output = config.workdir / f"model_k{config.keep_rate:g}.onnx"
    if is_export_of(output, checkpoint_sha, config.keep_rate):
        steps.record("export", "reused", output)
        return output
    result = export_onnx(checkpoint, output, ExportConfig(data=test_dir), log=lambda _: None)
    steps.record("export", "made", output, f"static token schedule, max |dlogit| vs PyTorch {result.parity.max_abs_error:.1e}")
    return output


def _quantize(config: DemoConfig, onnx_path: Path, checkpoint_sha: str, train_dir: Path, steps: _Steps) -> Path:
    from clca_deploy.calibration import CalibrationConfig, calibrated_path, quantize_int8
    from clca_deploy.metadata import is_export_of

    output = calibrated_path(onnx_path, "int8")
    if is_export_of(output, checkpoint_sha, config.keep_rate, precision="int8"):
        steps.record("int8", "reused", output)
        return output
    calibration = CalibrationConfig(data=train_dir, num_images=config.calibration_images)
    result = quantize_int8(onnx_path, output, calibration, log=lambda _: None)
    steps.record("int8", "made", output, f"Q/DQ, calibrated on {result.calibration_images} training images")
    return output


def _engine(onnx_int8: Path, steps: _Steps) -> Path | None:
    from clca_deploy.tensorrt.toolkit import tensorrt_unavailable_reason

    reason = tensorrt_unavailable_reason()
    if reason:
        steps.record("tensorrt", "skipped", "-", reason)
        return None
    from clca_deploy.pipeline.build_trt import build_trt
    from clca_deploy.tensorrt.build import EngineConfig

    output = onnx_int8.with_suffix(".engine")
    build_trt(onnx_int8, output, EngineConfig(precision="int8"), log=lambda _: None)
    steps.record("tensorrt", "made", output)
    return output


def _triton(config: DemoConfig, onnx_int8: Path, test_dir: Path, steps: _Steps) -> None:
    """The Triton repository of the INT8 model and, with PyTriton installed, the test images served through it."""
    from clca_deploy.artifacts import sha256_file
    from clca_deploy.data import image_paths
    from clca_deploy.serving import TritonRepoConfig, write_triton_repository

    repository = config.workdir / TRITON_REPOSITORY
    served_copy = repository / "leaves_classifier" / "1" / "model.onnx"
    reused = served_copy.is_file() and sha256_file(served_copy) == sha256_file(onnx_int8)
    if not reused:
        write_triton_repository(onnx_int8, repository, TritonRepoConfig(name="leaves"), overwrite=True)
    action = "reused" if reused else "made"
    if not (has_module("pytriton") and has_module("tritonclient")):
        steps.record("triton", action, repository, f"not served: {install_command('serve')} for a local server")
        return
    from clca_deploy.serving.check import check_served

    check = check_served(onnx_int8, image_paths([test_dir]))
    steps.record("triton", action, repository, _served_summary(check))


def _served_summary(check) -> str:
    """Classes and scores counted apart: INT8 scores move slightly with the batch an image lands in."""
    agreement, total = check.agreement, check.images
    largest = agreement.largest_score_difference
    summary = (
        f"{total} test images served by a local Triton server at {check.images_per_second:.0f}/s; "
        f"vs the direct runtime: top-1 equal {agreement.top1_equal}/{total}, top-5 equal {agreement.top_k_equal}/{total}, "
        f"scores within {agreement.tolerance:g} ({agreement.precision}) {agreement.scores_close}/{total}"
        + (f", largest difference {largest:.1e}" if largest is not None else "")
    )
    if agreement.differing:
        shown = "; ".join(d.describe(Path(d.image).name) for d in agreement.differing[:3])
        summary += f"; differing: {shown}" + (f" (+{len(agreement.differing) - 3} more)" if len(agreement.differing) > 3 else "")
    if check.errors:
        summary += f"; {len(check.errors)} failed: {check.errors[0]}"
    return summary


def _save_bench(report, json_path: Path) -> None:
    """The bench JSON; where the work folder cannot take it (a full disk), the minutes of measurements go
    to a private file in the temp folder, and the one error line says where."""
    from clca_deploy.artifacts import WriteFailed
    from clca_deploy.bench.report import rescue

    try:
        report.write_json(json_path)
    except WriteFailed as exc:
        sentence, saved = rescue(report)
        raise ClcaDeployError(f"{exc} {sentence}" + ("" if saved else ".")) from exc


def run_demo(config: DemoConfig, log: Callable[[str], None] = log_info) -> tuple[DemoResult, object]:
    """Run (or resume) the demo; returns its summary and the bench report."""
    import time

    from clca_deploy.artifacts import sha256_file
    from clca_deploy.bench.run import BenchConfig, run_bench

    started = time.perf_counter()
    _check_settings(config)
    config.workdir.mkdir(parents=True, exist_ok=True)
    steps = _Steps(7, log)
    train_dir, test_dir = _prepare_data(config, steps)
    checkpoint = _train(config, train_dir, test_dir, steps, log)
    checkpoint_sha = sha256_file(checkpoint)  # both reuse checks compare against it
    onnx_fp32 = _export(config, checkpoint, checkpoint_sha, test_dir, steps)
    onnx_int8 = _quantize(config, onnx_fp32, checkpoint_sha, train_dir, steps)
    engine = _engine(onnx_int8, steps)
    _triton(config, onnx_int8, test_dir, steps)
    models = (onnx_fp32, onnx_int8) + ((engine,) if engine else ())
    bench = BenchConfig(models=models, data=test_dir, reference=checkpoint, batch_sizes=config.batch_sizes,
                        iters=config.iters, progress=False)
    report = run_bench(bench, log=lambda _: None)
    json_path = config.workdir / BENCH_FILE
    _save_bench(report, json_path)
    plot_path: Path | None = config.workdir / "bench.png"
    try:
        from clca_deploy.bench.plot import plot_accuracy_latency

        plot_accuracy_latency(report, plot_path, batch_size=config.batch_sizes[0])
    except ClcaDeployError as exc:
        log(f"no plot: {exc}")
        plot_path = None
    steps.record("bench", "made", json_path, f"torch vs onnxruntime FP32 vs INT8 on {report.data['num_readable']} test images")
    result = DemoResult(tuple(steps.done), str(json_path), None if plot_path is None else str(plot_path),
                        time.perf_counter() - started, config.to_dict())
    return result, report

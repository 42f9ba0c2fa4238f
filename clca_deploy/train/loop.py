"""The training loop: AdamW, warm-up + cosine, label smoothing, periodic evaluation, resumable.

The same loop trains every family; what differs (model, init, checkpoint format) comes from
``clca_deploy.train.family``: CLCA models, or ILA / GLSim (``ila_…`` / ``glsim_…`` names).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from clca_deploy.artifacts import check_output_path, refuse_overwriting_inputs
from clca_deploy.data import PreprocessConfig, open_dataset
from clca_deploy.errors import ClcaDeployError, ConfigError
from clca_deploy.model.checkpoint import check_checkpoint_file
from clca_deploy.terminal import plural
from clca_deploy.train.checkpoint import read_training_state
from clca_deploy.train.config import TrainConfig
from clca_deploy.train.data import ResizedSplit, read_resized_split
from clca_deploy.train.evaluate import eval_tensors, evaluate
from clca_deploy.train.family import family_for, param_groups
from clca_deploy.train.precision import resolve_device, resolve_precision
from clca_deploy.train.schedule import evaluation_epochs
from clca_deploy.train.stepper import Stepper
from clca_deploy.logs import log_info


EVAL_SPLIT_NAMES = ("test", "val", "valid", "validation")
# A checkpoint is written at least this often (and after the last epoch), not every epoch:
# tiny CPU epochs take seconds, and each save rewrites the optimizer state too.
SAVE_INTERVAL_SECONDS = 60.0


@dataclass(frozen=True)
class EpochRecord:
    epoch: int
    loss: float
    lr: float
    seconds: float
    test_top1: float | None = None


@dataclass(frozen=True)
class TrainResult:
    """What a run did; ``to_dict`` is JSON-able."""

    checkpoint: str
    model: str
    img_size: int
    keep_rate: float
    train_dir: str
    test_dir: str | None
    train_images: int
    test_images: int
    skipped: tuple[str, ...]
    epochs: int
    epochs_run: int
    resumed_from_epoch: int | None
    steps: int
    seconds: float
    cpu_seconds: float
    precision: str
    device: str
    test_top1: float | None
    history: tuple[EpochRecord, ...] = field(default_factory=tuple)
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["skipped"] = list(self.skipped)
        return data


@dataclass(frozen=True)
class _Splits:
    """The decoded data a run trains and evaluates on."""

    train_dir: Path
    test_dir: Path | None
    train: ResizedSplit
    eval_images: torch.Tensor | None
    eval_labels: torch.Tensor | None
    skipped: tuple[str, ...]  # "path: reason" for every unreadable image of either split

    @property
    def test_images(self) -> int:
        return 0 if self.eval_labels is None else len(self.eval_labels)


@dataclass(frozen=True)
class _TrainingRun:
    """What stays fixed while the epochs run: the model and its optimizer, the data, where and how it trains."""

    output: Path
    config: TrainConfig
    family: Any  # ClcaFamily or FgirFamily
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    generator: torch.Generator
    stepper: Stepper
    splits: _Splits
    device: torch.device
    precision: str
    training_args: dict[str, Any]
    run_facts: dict[str, Any]


@dataclass(frozen=True)
class _RunState:
    """Where a run stands between two epochs; each epoch replaces it rather than changing it."""

    epochs: int | None  # None until the first epoch under a time budget has been timed
    epoch: int  # the next epoch to run, 0-based
    step: int
    history: tuple[EpochRecord, ...]
    saved_epoch: int  # the last epoch whose weights the checkpoint on disk holds


def resolve_splits(data: Path, test: Path | None) -> tuple[Path, Path | None]:
    """(train split, test split): DATA may be a root with train/ and test/, or the train split itself.

    In the second case a sibling test/ (or val/) split is used when DATA is named ``train``.
    """
    data = Path(data)
    if not data.is_dir():
        raise ConfigError(f"training data {data} is not a folder; give an ImageFolder split or a root with train/.")
    train_dir = data / "train" if (data / "train").is_dir() else data
    if test is None:
        parent = data if train_dir != data else (data.parent if data.name == "train" else None)
        if parent is not None:
            test = next((parent / n for n in EVAL_SPLIT_NAMES if (parent / n).is_dir()), None)
    if test is not None and Path(test).resolve() == train_dir.resolve():
        raise ConfigError(f"the test split {test} is the training split; give a separate split with --test.")
    return train_dir, (Path(test) if test is not None else None)


def train(
    data: Path,
    output: Path,
    config: TrainConfig,
    *,
    test: Path | None = None,
    resume: bool = False,
    init: Path | None = None,
    init_train_args: Mapping[str, Any] | None = None,
    log: Callable[[str], None] = log_info,
    progress: bool = True,
) -> TrainResult:
    """Train (or fine-tune) a CLCA, ILA or GLSim model on an ImageFolder split; writes an official-format checkpoint.

    ``init_train_args``: the train.py args of an ``init`` checkpoint that lacks them (a bare state dict).
    """
    output, checkpoint_state = _check_output_and_resume(output, resume, init)
    family = family_for(config, init, resume=resume, init_train_args=init_train_args)
    train_dir, test_dir = resolve_splits(data, test)
    train_set = _open_train_split(train_dir)
    torch.manual_seed(config.seed)  # the model's own initialisers draw from the global generator
    model = family.build(train_set.class_names)
    device = resolve_device(config.device)
    precision = resolve_precision(config.precision, device.type)
    preprocess = PreprocessConfig.from_dict(model.config.preprocess_settings())  # the family's eval transform
    splits = _read_splits(train_set, train_dir, test_dir, family.train_resize_size(model), preprocess, log)

    generator = torch.Generator().manual_seed(config.seed)
    family.initialise(model, generator, log)
    model.to(device).train()

    optimizer = torch.optim.AdamW(param_groups(model, config.weight_decay, family.no_decay), lr=config.base_lr)
    steps_per_epoch = len(splits.train) // config.batch_size
    if steps_per_epoch < 1:
        raise ConfigError(f"{len(splits.train)} training images are fewer than one batch of {config.batch_size}; lower --batch-size.")
    start = _starting_state(checkpoint_state, family, model, optimizer, generator, config.epochs, output, log)
    run = _TrainingRun(
        output=output, config=config, family=family, model=model, optimizer=optimizer, generator=generator,
        stepper=Stepper(model, optimizer, config, splits.train, preprocess, device, precision, generator),
        splits=splits, device=device, precision=precision,
        training_args=_training_args(config, train_dir),
        run_facts=_run_facts(splits, output, device, precision, steps_per_epoch),
    )
    wall_start, cpu_start = time.perf_counter(), time.process_time()
    end = _train_epochs(run, start, wall_start, log, show_bar=progress)
    end = _save_stopped_run(run, start, end)
    seconds = time.perf_counter() - wall_start
    final_top1 = end.history[-1].test_top1 if end.history else None
    log(f"saved    {output} ({'test top-1 %.2f%%' % final_top1 if final_top1 is not None else 'no test split'}, "
        f"{seconds / 60:.1f} min)")
    resumed_from = start.epoch if checkpoint_state is not None else None
    return _train_result(run, start, end, resumed_from, seconds, time.process_time() - cpu_start)


def _open_train_split(train_dir: Path):
    """The training split as an ImageFolder, refused unless it has at least two class folders."""
    train_set = open_dataset(train_dir)
    if train_set.class_names is None:
        raise ClcaDeployError(f"{train_dir} is not an ImageFolder split (<dir>/<class>/<image>); cannot train on it.")
    class_names = train_set.class_names
    if len(class_names) < 2:
        raise ConfigError(
            f"{train_dir} has {len(class_names)} class folder ({', '.join(class_names)}): a classifier needs at least two "
            "classes, one per subfolder (<dir>/<class>/<image>); with one, every image is 'right' and nothing is learnt."
        )
    return train_set


def _read_splits(train_set, train_dir: Path, test_dir: Path | None, resize_size: int, preprocess: PreprocessConfig,
                 log: Callable[[str], None]) -> _Splits:
    """Decode the training split (resized for augmentation) and the test split (eval transform), logging each."""
    class_names = train_set.class_names
    log(f"train    {train_dir}: {len(train_set)} images, {len(class_names)} classes")
    split = read_resized_split(train_set, resize_size)
    _refuse_classes_without_images(split, class_names, train_dir)
    skipped = [f"{s.path}: {s.reason}" for s in split.skipped]
    for line in skipped:
        log(f"skipped  {line}")
    eval_images = eval_labels = None
    if test_dir is not None:
        test_set = open_dataset(test_dir)
        if test_set.class_names != train_set.class_names:
            raise ConfigError(
                f"the test split {test_dir} has classes {list(test_set.class_names or [])[:5]}..., the training "
                f"split {list(class_names)[:5]}...; both need the same class folders."
            )
        eval_images, eval_labels, eval_skipped = eval_tensors(test_set, preprocess)
        skipped += [f"{s.path}: {s.reason}" for s in eval_skipped]
        log(f"test     {test_dir}: {len(eval_labels)} images")
    else:
        log("test     none found (give --test DIR to evaluate during training)")
    return _Splits(train_dir, test_dir, split, eval_images, eval_labels, tuple(skipped))


def _starting_state(checkpoint_state: dict[str, Any] | None, family, model, optimizer, generator: torch.Generator,
                    epochs: int | None, output: Path, log: Callable[[str], None]) -> _RunState:
    """Epoch 0 of a fresh run, or where the checkpoint of a resumed one left off (weights, optimizer, RNGs restored)."""
    if checkpoint_state is None:
        return _RunState(epochs=epochs, epoch=0, step=0, history=(), saved_epoch=-1)
    family.check_resumable(checkpoint_state, model)
    model.load_state_dict(family.resume_weights(checkpoint_state, model), strict=True)
    optimizer.load_state_dict(checkpoint_state["optimizer"])
    schedule = checkpoint_state["lr_scheduler"]
    epochs, step = int(schedule["epochs"]), int(schedule["step"])
    resumed_from = family.next_epoch(checkpoint_state)
    history = tuple(EpochRecord(**r) for r in schedule.get("history", []))
    if "rng_state" in checkpoint_state:
        torch.set_rng_state(checkpoint_state["rng_state"])
        generator.set_state(checkpoint_state["generator_state"])
    log(f"resume   {output} after epoch {resumed_from} of {epochs}")
    return _RunState(epochs=epochs, epoch=resumed_from, step=step, history=history, saved_epoch=resumed_from - 1)


def _training_args(config: TrainConfig, train_dir: Path) -> dict[str, Any]:
    """The official train.py arguments this run amounts to, as its checkpoint records them."""
    return {
        "dataset_name": train_dir.parent.name if train_dir.name == "train" else train_dir.name,
        "lr": config.base_lr, "min_lr": config.min_lr, "warmup_lr": config.warmup_lr,
        "warmup_epochs": config.warmup_epochs, "weight_decay": config.weight_decay, "opt": "adamw",
        "sched": "cosine", "ls": config.label_smoothing, "batch_size": config.batch_size,
        "seed": config.seed, "pretrained": config.pretrained, "augment": config.augment,
        "drop": 0.0, "drop_path": 0.0,
    }


def _run_facts(splits: _Splits, output: Path, device: torch.device, precision: str,
               steps_per_epoch: int) -> dict[str, Any]:
    """What the ILA/GLSim config records besides the training arguments."""
    return {
        "train_images": len(splits.train), "test_images": splits.test_images,
        "device": str(device), "precision": precision, "steps_per_epoch": steps_per_epoch,
        "results_dir": str(output.parent), "run_name": output.stem,
    }


def _train_epochs(run: _TrainingRun, start: _RunState, wall_start: float, log: Callable[[str], None],
                  show_bar: bool) -> _RunState:
    """Run epochs until the last one or the time budget; a checkpoint at least every SAVE_INTERVAL_SECONDS."""
    config = run.config
    budget = None if config.minutes is None else config.minutes * 60.0
    last_save = wall_start
    state = start
    while state.epochs is None or state.epoch < state.epochs:
        if budget is not None and state.epochs is not None and state.history and state.epoch > start.epoch:
            elapsed = time.perf_counter() - wall_start
            if elapsed + state.history[-1].seconds > budget * 1.05:
                log(f"budget   {config.minutes} min reached after epoch {state.epoch}; stopping early")
                break
        state = _run_epoch(run, state, budget, log, show_bar)
        now = time.perf_counter()
        last = state.epoch == state.epochs - 1
        if last or now - last_save >= SAVE_INTERVAL_SECONDS:
            _save(run, state, state.epoch)
            state = replace(state, saved_epoch=state.epoch)
            last_save = now
        state = replace(state, epoch=state.epoch + 1)
    return state


def _run_epoch(run: _TrainingRun, state: _RunState, budget: float | None, log: Callable[[str], None],
               show_bar: bool) -> _RunState:
    """Train epoch ``state.epoch``, fix the epoch count from a time budget after the first, evaluate when due."""
    config, epoch = run.config, state.epoch
    epoch_start = time.perf_counter()
    bar = _bar(show_bar, run.stepper.steps_per_epoch, f"epoch {epoch + 1}/{state.epochs or '?'}")
    loss, lr, step = run.stepper.run_epoch(epoch, state.step, state.epochs, bar)
    seconds = time.perf_counter() - epoch_start
    epochs = state.epochs
    if epochs is None:
        epochs = _epochs_for_budget(budget, seconds, len(run.splits.train), run.splits.test_images, config.evaluations)
        log(f"budget   {config.minutes} min: first epoch took {seconds:.1f} s, so {plural(epochs, 'epoch')}")
    due = epoch in evaluation_epochs(epochs, config.evaluations) or epoch == epochs - 1
    top1 = None
    if run.splits.eval_images is not None and due:
        top1 = evaluate(run.model, run.splits.eval_images, run.splits.eval_labels, run.device)
    log(f"epoch    {epoch + 1}/{epochs}: loss {loss:.4f}, lr {lr:.2e}, {seconds:.1f} s"
        + (f", test top-1 {top1:.2f}%" if top1 is not None else ""))
    record = EpochRecord(epoch + 1, loss, lr, seconds, top1)
    return replace(state, epochs=epochs, step=step, history=state.history + (record,))


def _save_stopped_run(run: _TrainingRun, start: _RunState, end: _RunState) -> _RunState:
    """Save a run whose checkpoint is behind its last epoch; returns the state with that epoch's accuracy."""
    if not (end.epoch > start.epoch and end.saved_epoch != end.epoch - 1):
        return end
    # Stopped early by the time budget: evaluate and save the weights we have.
    if run.splits.eval_images is not None and end.history[-1].test_top1 is None:
        top1 = evaluate(run.model, run.splits.eval_images, run.splits.eval_labels, run.device)
        end = replace(end, history=end.history[:-1] + (replace(end.history[-1], test_top1=top1),))
    _save(run, end, end.epoch - 1)
    return replace(end, saved_epoch=end.epoch - 1)


def _save(run: _TrainingRun, state: _RunState, done_epoch: int) -> None:
    """Write the checkpoint after ``done_epoch``, with what a resume needs (optimizer, schedule, RNG states)."""
    accuracy = next((r.test_top1 for r in reversed(state.history) if r.test_top1 is not None), None)
    run.family.save(
        run.output, run.model, epoch=done_epoch, accuracy=accuracy,
        training=run.training_args | {"epochs": state.epochs}, run=run.run_facts, optimizer=run.optimizer,
        scheduler_state={"epochs": state.epochs, "step": state.step, "history": [asdict(r) for r in state.history]},
        extra={"rng_state": torch.get_rng_state(), "generator_state": run.generator.get_state()},
    )


def _train_result(run: _TrainingRun, start: _RunState, end: _RunState, resumed_from: int | None, seconds: float,
                  cpu_seconds: float) -> TrainResult:
    """The run's summary from its fixed parts and where it started and ended."""
    config, splits = run.config, run.splits
    return TrainResult(
        checkpoint=str(run.output), model=config.model, img_size=run.model.config.img_size,
        keep_rate=config.keep_rate, train_dir=str(splits.train_dir),
        test_dir=str(splits.test_dir) if splits.test_dir else None, train_images=len(splits.train),
        test_images=splits.test_images, skipped=splits.skipped, epochs=end.epochs,
        epochs_run=end.epoch - start.epoch, resumed_from_epoch=resumed_from, steps=end.step, seconds=seconds,
        cpu_seconds=cpu_seconds, precision=run.precision, device=str(run.device),
        test_top1=end.history[-1].test_top1 if end.history else None, history=end.history,
        settings=config.to_dict(),
    )


def _check_output_and_resume(output: Path, resume: bool, init: Path | None) -> tuple[Path, dict[str, Any] | None]:
    """Everything about the checkpoint paths that can be refused before a single image is read:
    (the output, the run's state when resuming)."""
    output = check_output_path(output)
    refuse_overwriting_inputs([output], [init])
    if resume and not output.is_file():
        raise ConfigError(f"--resume needs an existing checkpoint at {output}; none is there.")
    if not resume and output.exists():
        raise ConfigError(f"{output} exists; pass --resume to continue that run, or choose another -o.")
    if init is not None and not resume:
        check_checkpoint_file(init)  # a wrong file is found now, not after the split is decoded
    return output, (read_training_state(output) if resume else None)


def _refuse_classes_without_images(split, class_names, train_dir: Path) -> None:
    """Every class needs readable images: a class without any cannot be learnt, yet the run would report
    its accuracy as if it could (its folder exists, so the class count is right)."""
    present = set(split.labels.unique().tolist())
    empty = [name for label, name in enumerate(class_names) if label not in present]
    if empty:
        raise ClcaDeployError(
            f"class folder(s) {empty[:5]}{' ...' if len(empty) > 5 else ''} in {train_dir} have no readable images "
            "(all were skipped); add images or remove the folder(s)."
        )


def _epochs_for_budget(budget: float, first_epoch: float, train_images: int, test_images: int, evaluations: int) -> int:
    # An evaluation is a forward pass only: about a third of a training step per image.
    eval_cost = first_epoch * test_images / max(1, train_images) / 3.0
    usable = budget * 0.97 - evaluations * eval_cost
    return max(1, math.floor(usable / first_epoch))


def _bar(enabled: bool, total: int, desc: str):
    # Shown only on a terminal (clca_deploy.progress): in a log, the per-epoch lines say the same.
    from clca_deploy.progress import progress_bar

    return progress_bar(total, desc, "batch", enabled)

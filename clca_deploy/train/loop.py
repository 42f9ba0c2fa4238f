"""The training loop: AdamW, warm-up + cosine, label smoothing, periodic evaluation, resumable.

The same loop trains every family; what differs (model, init, checkpoint format) comes from
``clca_deploy.train.family``: CLCA models, or ILA / GLSim (``ila_…`` / ``glsim_…`` names).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from clca_deploy.artifacts import check_output_path, refuse_overwriting_inputs
from clca_deploy.data import PreprocessConfig, open_dataset
from clca_deploy.errors import ClcaDeployError, ConfigError
from clca_deploy.model.checkpoint import check_checkpoint_file
from clca_deploy.train.checkpoint import read_training_state
from clca_deploy.train.config import TrainConfig
from clca_deploy.train.data import read_resized_split
from clca_deploy.train.evaluate import eval_tensors, evaluate
from clca_deploy.train.family import family_for, param_groups
from clca_deploy.train.precision import resolve_device, resolve_precision
from clca_deploy.train.schedule import evaluation_epochs
from clca_deploy.train.stepper import Stepper

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
    init_settings: Mapping[str, Any] | None = None,
    log: Callable[[str], None] = print,
    progress: bool = True,
) -> TrainResult:
    """Train (or fine-tune) a CLCA, ILA or GLSim model on an ImageFolder split; writes an official-format checkpoint.

    ``init_settings``: the train.py args of an ``init`` checkpoint that lacks them (a bare state dict).
    """
    output, state = _check_output_and_resume(output, resume, init)
    family = family_for(config, init, resume=resume, init_settings=init_settings)
    train_dir, test_dir = resolve_splits(data, test)
    train_set = open_dataset(train_dir)
    if train_set.class_names is None:
        raise ClcaDeployError(f"{train_dir} is not an ImageFolder split (<dir>/<class>/<image>); cannot train on it.")
    class_names = train_set.class_names
    if len(class_names) < 2:
        raise ConfigError(
            f"{train_dir} has {len(class_names)} class folder ({', '.join(class_names)}): a classifier needs at least two "
            "classes, one per subfolder (<dir>/<class>/<image>); with one, every image is 'right' and nothing is learnt."
        )
    torch.manual_seed(config.seed)  # the model's own initialisers draw from the global generator
    model = family.build(class_names)
    model_settings = model.config
    device = resolve_device(config.device)
    precision = resolve_precision(config.precision, device.type)
    preprocess = PreprocessConfig.from_dict(model_settings.preprocess_settings())  # the family's eval transform

    log(f"train    {train_dir}: {len(train_set)} images, {len(class_names)} classes")
    split = read_resized_split(train_set, family.train_resize_size(model))
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

    generator = torch.Generator().manual_seed(config.seed)
    family.initialise(model, generator, log)
    model.to(device).train()

    optimizer = torch.optim.AdamW(param_groups(model, config.weight_decay, family.no_decay), lr=config.base_lr)
    steps_per_epoch = len(split) // config.batch_size
    if steps_per_epoch < 1:
        raise ConfigError(f"{len(split)} training images are fewer than one batch of {config.batch_size}; lower --batch-size.")
    epochs = config.epochs
    start_epoch, step, resumed_from = 0, 0, None
    history: list[EpochRecord] = []
    if state is not None:
        family.check_resumable(state, model)
        model.load_state_dict(family.resume_weights(state, model), strict=True)
        optimizer.load_state_dict(state["optimizer"])
        schedule = state["lr_scheduler"]
        epochs, step = int(schedule["epochs"]), int(schedule["step"])
        start_epoch = resumed_from = family.next_epoch(state)
        history = [EpochRecord(**r) for r in schedule.get("history", [])]
        if "rng_state" in state:
            torch.set_rng_state(state["rng_state"])
            generator.set_state(state["generator_state"])
        log(f"resume   {output} after epoch {resumed_from} of {epochs}")
    stepper = Stepper(model, optimizer, config, split, preprocess, device, precision, generator)

    training_args = {
        "dataset_name": train_dir.parent.name if train_dir.name == "train" else train_dir.name,
        "lr": config.base_lr, "min_lr": config.min_lr, "warmup_lr": config.warmup_lr,
        "warmup_epochs": config.warmup_epochs, "weight_decay": config.weight_decay, "opt": "adamw",
        "sched": "cosine", "ls": config.label_smoothing, "batch_size": config.batch_size,
        "seed": config.seed, "pretrained": config.pretrained, "augment": config.augment,
        "drop": 0.0, "drop_path": 0.0,
    }
    run_facts = {  # what the ILA/GLSim config records besides the training arguments
        "train_images": len(split), "test_images": 0 if eval_labels is None else len(eval_labels),
        "device": str(device), "precision": precision, "steps_per_epoch": steps_per_epoch,
        "results_dir": str(output.parent), "run_name": output.stem,
    }
    budget = None if config.minutes is None else config.minutes * 60.0
    wall_start, cpu_start = time.perf_counter(), time.process_time()
    last_save = wall_start
    saved_epoch = start_epoch - 1

    def save(done_epoch: int) -> None:
        nonlocal saved_epoch
        accuracy = next((r.test_top1 for r in reversed(history) if r.test_top1 is not None), None)
        family.save(
            output, model, epoch=done_epoch, accuracy=accuracy, training=training_args | {"epochs": epochs},
            run=run_facts, optimizer=optimizer,
            scheduler_state={"epochs": epochs, "step": step, "history": [asdict(r) for r in history]},
            extra={"rng_state": torch.get_rng_state(), "generator_state": generator.get_state()},
        )
        saved_epoch = done_epoch

    epoch = start_epoch
    evals = evaluation_epochs(epochs, config.evaluations) if epochs else frozenset()
    while epochs is None or epoch < epochs:
        if budget is not None and epochs is not None and history and epoch > start_epoch:
            elapsed = time.perf_counter() - wall_start
            if elapsed + history[-1].seconds > budget * 1.05:
                log(f"budget   {config.minutes} min reached after epoch {epoch}; stopping early")
                break
        epoch_start = time.perf_counter()
        bar = _bar(progress, steps_per_epoch, f"epoch {epoch + 1}/{epochs or '?'}")
        loss, lr, step = stepper.run_epoch(epoch, step, epochs, bar)
        seconds = time.perf_counter() - epoch_start
        if epochs is None:
            epochs = _epochs_for_budget(budget, seconds, len(split), 0 if eval_labels is None else len(eval_labels),
                                        config.evaluations)
            evals = evaluation_epochs(epochs, config.evaluations)
            log(f"budget   {config.minutes} min: first epoch took {seconds:.1f} s, so {epochs} epochs")
        top1 = None
        if eval_images is not None and (epoch in evals or epoch == epochs - 1):
            top1 = evaluate(model, eval_images, eval_labels, device)
        history.append(EpochRecord(epoch + 1, loss, lr, seconds, top1))
        log(f"epoch    {epoch + 1}/{epochs}: loss {loss:.4f}, lr {lr:.2e}, {seconds:.1f} s"
            + (f", test top-1 {top1:.2f}%" if top1 is not None else ""))
        now = time.perf_counter()
        last = epoch == epochs - 1
        if last or now - last_save >= SAVE_INTERVAL_SECONDS:
            save(epoch)
            last_save = now
        epoch += 1
    if epoch > start_epoch and saved_epoch != epoch - 1:
        # Stopped early by the time budget: evaluate and save the weights we have.
        if eval_images is not None and history[-1].test_top1 is None:
            top1 = evaluate(model, eval_images, eval_labels, device)
            history[-1] = EpochRecord(**{**asdict(history[-1]), "test_top1": top1})
        save(epoch - 1)
    seconds = time.perf_counter() - wall_start
    final_top1 = history[-1].test_top1 if history else None
    log(f"saved    {output} ({'test top-1 %.2f%%' % final_top1 if final_top1 is not None else 'no test split'}, "
        f"{seconds / 60:.1f} min)")
    return TrainResult(
        checkpoint=str(output), model=config.model, img_size=model_settings.img_size, keep_rate=config.keep_rate,
        train_dir=str(train_dir), test_dir=str(test_dir) if test_dir else None, train_images=len(split),
        test_images=0 if eval_labels is None else len(eval_labels), skipped=tuple(skipped), epochs=epochs,
        epochs_run=epoch - start_epoch, resumed_from_epoch=resumed_from, steps=step, seconds=seconds,
        cpu_seconds=time.process_time() - cpu_start, precision=precision, device=str(device), test_top1=final_top1,
        history=tuple(history), settings=config.to_dict(),
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
    import sys

    # A bar redrawn into a log file is noise; the per-epoch lines say the same there.
    if not enabled or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="batch", leave=False)

"""Dataset readers (ImageFolder tree, official UFGIR CSV split, flat folder) and eval batches."""

from __future__ import annotations

import csv as csv_module
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from clca_deploy.data.images import DEFAULT_MAX_PIXELS, ImageReadError, load_image
from clca_deploy.data.preprocess import PreprocessConfig, preprocess_into
from clca_deploy.data.scan import (
    IMAGE_EXTENSIONS, SkippedImage, file_identity, find_images, left_out_summary, list_folder, scan_folder,
)
from clca_deploy.errors import ClcaDeployError, ConfigError

# Folder names that mean "a dataset root holding splits", not "a class".
SPLIT_NAMES = ("train", "test", "val", "valid", "validation", "trainval", "train_val")
KINDS = ("imagefolder", "csv", "flat")
LAYOUTS_HELP = (
    "accepted layouts: an ImageFolder split (<path>/<class>/<image>), a flat folder of images "
    "(<path>/<image>, unlabelled), or an official CSV split (--csv <file> with header class_id,dir, "
    "images at <path>/<image_folder>/<dir>)"
)


@dataclass(frozen=True)
class ImageRecord:
    """One image file and its 0-based class index (None when unlabelled); ``size`` when a scan knows it."""

    path: Path
    label: int | None
    size: int | None = None  # bytes, from the folder scan's stat; None: the reader looks the file up


@dataclass(frozen=True)
class ImageDataset:
    """An ordered list of image records; ``class_names[label]`` names a class when known."""

    records: tuple[ImageRecord, ...]
    class_names: tuple[str, ...] | None
    root: Path
    kind: str
    # Files the folder scan left out (a GIF, a broken or looping link...); readers list them
    # first among their own skipped files, so that nothing disappears without a word.
    skipped: tuple[SkippedImage, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"dataset kind must be one of {KINDS}, got {self.kind!r}.")

    def __len__(self) -> int:
        return len(self.records)

    @property
    def labelled(self) -> bool:
        return bool(self.records) and all(record.label is not None for record in self.records)


def open_dataset(path: str | os.PathLike, csv: str | None = None, image_folder: str | None = None) -> ImageDataset:
    """The dataset at ``path``: an official CSV split when ``csv`` is given, else an ImageFolder or flat folder."""
    root = Path(path).expanduser()
    if not root.exists():
        raise ClcaDeployError(f"dataset path {root} does not exist; {LAYOUTS_HELP}.")
    if not root.is_dir():
        raise ClcaDeployError(f"dataset path {root} is not a folder; {LAYOUTS_HELP}.")
    if csv is not None:
        return _open_csv(root, Path(csv).expanduser(), image_folder or ".")
    if image_folder is not None:
        raise ConfigError("image_folder only applies to a CSV split; pass csv too, or drop image_folder.")
    return _open_folder(root)


def open_image_list(inputs: Sequence[str | os.PathLike]) -> ImageDataset:
    """Image files and folders (searched recursively) as one unlabelled dataset, each file looked up once:
    what `predict` classifies. Files left out of the folders are named in ``skipped``."""
    scan = find_images(inputs)
    records = tuple(ImageRecord(found.path, None, found.size) for found in scan.images)
    root = Path(os.path.commonpath([os.path.abspath(found.path) for found in scan.images]))
    return ImageDataset(records, None, root, "flat", scan.skipped)


def image_paths(inputs: Sequence[str | os.PathLike]) -> list[Path]:
    """The image files ``open_image_list`` would read, in order."""
    return [record.path for record in open_image_list(inputs).records]


def _open_folder(root: Path) -> ImageDataset:
    top = list_folder(root)
    subfolders = [folder.name for folder in top.subfolders]
    parents = (file_identity(os.stat(root)),)
    class_scans = {name: scan_folder(root / name, parents) for name in subfolders}
    classes = [name for name in subfolders if class_scans[name].images]
    # Files left out anywhere, top level first: a flat folder's subfolders hold nothing read, but
    # what they hold that is not an image is named as well.
    skipped = top.skipped + tuple(skip for name in subfolders for skip in class_scans[name].skipped)

    splits = [name for name in subfolders if name.lower() in SPLIT_NAMES and _has_image_subfolders(root / name)]
    if splits:
        raise ClcaDeployError(
            f"{root} holds split folders ({', '.join(splits)}), not classes; pass the split folder itself, "
            f"e.g. {root / splits[0]}."
        )
    if classes and top.images:
        raise ClcaDeployError(
            f"{root} mixes {len(top.images)} images at its top level with class subfolders; "
            f"move them into a class folder or point at a folder with only one layout ({LAYOUTS_HELP})."
        )
    if classes:
        empty = [name for name in subfolders if not class_scans[name].images]
        if empty:
            # Dropping them would shift every later label index against a model trained with them.
            raise ClcaDeployError(
                f"class folder(s) {empty} in {root} contain no images{_left_out(class_scans[empty[0]].skipped)}; "
                "remove them or add images, as every subfolder is a class and its sorted position is its label."
            )
        records = tuple(
            ImageRecord(found.path, label, found.size) for label, name in enumerate(subfolders) for found in class_scans[name].images
        )
        return ImageDataset(records, tuple(subfolders), root, "imagefolder", skipped)
    if top.images:
        return ImageDataset(tuple(ImageRecord(found.path, None, found.size) for found in top.images), None, root, "flat", skipped)
    raise ClcaDeployError(
        f"no images ({', '.join(IMAGE_EXTENSIONS)}) found in {root} or its subfolders{_left_out(skipped)}; {LAYOUTS_HELP}."
    )


def _left_out(skipped: tuple[SkippedImage, ...]) -> str:
    return f" ({left_out_summary(skipped)})" if skipped else ""


def _has_image_subfolders(folder: Path) -> bool:
    return any(scan_folder(sub).images for sub in list_folder(folder).subfolders)


def _open_csv(root: Path, csv_path: Path, image_folder: str) -> ImageDataset:
    csv_file = csv_path if csv_path.is_absolute() else root / csv_path
    if not csv_file.is_file():
        raise ClcaDeployError(f"CSV split {csv_file} not found (a relative csv is taken relative to {root}).")
    image_root = root / image_folder
    if not image_root.is_dir():
        raise ClcaDeployError(f"image folder {image_root} does not exist; check image_folder (default '.').")
    try:
        with csv_file.open(newline="", encoding="utf-8-sig") as handle:
            rows = list(csv_module.reader(handle))
    except (OSError, UnicodeDecodeError, csv_module.Error) as exc:
        raise ClcaDeployError(f"cannot read CSV split {csv_file}: {exc}") from exc
    if not rows:
        raise ClcaDeployError(f"CSV split {csv_file} is empty; expected a header class_id,dir.")
    header = [cell.strip() for cell in rows[0]]
    if "class_id" not in header or "dir" not in header:
        raise ClcaDeployError(f"CSV split {csv_file} has header {header}; expected columns class_id,dir.")
    id_col, dir_col = header.index("class_id"), header.index("dir")

    records = []
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) <= max(id_col, dir_col):
            raise ClcaDeployError(f"{csv_file} line {line}: expected class_id,dir, got {row}.")
        label_text, relative = row[id_col].strip(), row[dir_col].strip()
        try:
            label = int(label_text)
        except ValueError:
            raise ClcaDeployError(f"{csv_file} line {line}: class_id {label_text!r} is not an integer.") from None
        if label < 0:
            raise ClcaDeployError(f"{csv_file} line {line}: class_id {label} is negative; ids are 0-based.")
        records.append(ImageRecord(image_root / relative, label))
    if not records:
        raise ClcaDeployError(f"CSV split {csv_file} lists no images.")
    if not any(record.path.is_file() for record in records):
        raise ClcaDeployError(
            f"none of the {len(records)} images listed in {csv_file} exist under {image_root} "
            f"(e.g. {records[0].path}); check image_folder."
        )
    return ImageDataset(tuple(records), None, root, "csv")


@dataclass(frozen=True, eq=False)
class Batch:
    """Preprocessed images [b, 3, S, S] float32, their int64 labels (None if unlabelled) and files."""

    images: np.ndarray
    labels: np.ndarray | None
    paths: tuple[Path, ...]

    def __len__(self) -> int:
        return len(self.paths)


@dataclass
class BatchReader:
    """Iterates a dataset in preprocessed batches; ``skipped`` lists unreadable files after iteration.

    ``limit`` caps the number of images yielded (unreadable files do not count towards it).
    """

    dataset: ImageDataset
    config: PreprocessConfig
    batch_size: int
    limit: int | None = None
    progress: bool = False
    max_pixels: int = DEFAULT_MAX_PIXELS
    skipped: list[SkippedImage] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ConfigError(f"batch_size must be a positive integer, got {self.batch_size!r}.")
        if self.limit is not None and (isinstance(self.limit, bool) or not isinstance(self.limit, int) or self.limit < 1):
            raise ConfigError(f"limit must be a positive integer or None, got {self.limit!r}.")

    @property
    def total(self) -> int:
        """Images the iteration aims for: all records, or ``limit`` if smaller."""
        return len(self.dataset) if self.limit is None else min(self.limit, len(self.dataset))

    def __iter__(self) -> Iterator[Batch]:
        self.skipped = list(self.dataset.skipped)
        bar = self._progress_bar()
        size = self.config.img_size
        labelled = self.dataset.labelled
        buffer = np.empty((self.batch_size, 3, size, size), dtype=np.float32)
        paths: list[Path] = []
        labels: list[int] = []
        read = 0
        try:
            for record in self.dataset.records:
                if read >= self.total:
                    break
                try:
                    image = load_image(record.path, max_pixels=self.max_pixels, size=record.size)
                except ImageReadError as exc:
                    self.skipped.append(SkippedImage(record.path, exc.reason))
                    if bar is not None:
                        bar.set_postfix(skipped=len(self.skipped))
                    continue
                preprocess_into(image, self.config, buffer[len(paths)])
                paths.append(record.path)
                labels.append(record.label if labelled else -1)
                read += 1
                if bar is not None:
                    bar.update(1)
                if len(paths) == self.batch_size:
                    yield self._batch(buffer, paths, labels, labelled)
                    paths, labels = [], []
            if paths:
                yield self._batch(buffer, paths, labels, labelled)
        finally:
            if bar is not None:
                bar.close()
        if read == 0:
            first = "; ".join(f"{s.path.name}: {s.reason}" for s in self.skipped[:3])
            raise ClcaDeployError(
                f"no image of {self.dataset.root} could be read ({len(self.skipped)} skipped"
                + (f"; first: {first})" if first else ")")
            )

    @staticmethod
    def _batch(buffer: np.ndarray, paths: list[Path], labels: list[int], labelled: bool) -> Batch:
        count = len(paths)
        # A copy: the buffer is reused for the next batch while the caller may keep this one.
        images = buffer[:count].copy()
        return Batch(images, np.asarray(labels, dtype=np.int64) if labelled else None, tuple(paths))

    def _progress_bar(self):
        if not self.progress:
            return None
        from clca_deploy.progress import progress_bar

        return progress_bar(self.total, self.dataset.root.name or str(self.dataset.root), "img")


def iter_batches(
    dataset: ImageDataset,
    config: PreprocessConfig,
    batch_size: int,
    limit: int | None = None,
    progress: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> BatchReader:
    """Preprocessed batches of ``dataset``; read ``.skipped`` on the result after iterating."""
    return BatchReader(dataset, config, batch_size, limit=limit, progress=progress, max_pixels=max_pixels)

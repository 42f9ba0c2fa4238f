"""Finding image files in folders, and naming every file left out with why.

A GIF, a broken link or a link loop named ``x.jpg`` is not silently dropped: it lands in the
same ``skipped`` list as an unreadable JPEG, which `predict`, `bench` and `calibrate` print.
Hidden entries (``.DS_Store``, macOS ``._x.jpg`` AppleDouble files, ``.git``) are not data and
are left out without a word, as torchvision's ImageFolder users expect.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from clca_deploy.errors import ClcaDeployError

# The extensions torchvision's ImageFolder reads that Pillow decodes as the official eval does.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class SkippedImage:
    """A file left out of the batches, and why."""

    path: Path
    reason: str


@dataclass(frozen=True)
class ImageFile:
    """An image file a scan found, and its size from the scan's one stat, so a reader need not stat it
    again; None for a name given directly that is no regular file (the reader then says why)."""

    path: Path
    size: int | None


@dataclass(frozen=True)
class FolderListing:
    """One folder's entries: image files, subfolders (links to folders followed), and what was left out."""

    images: tuple[ImageFile, ...]
    subfolders: tuple[Path, ...]
    skipped: tuple[SkippedImage, ...]


@dataclass(frozen=True)
class ImageScan:
    """Image files found, in order, and every non-hidden file left out with why."""

    images: tuple[ImageFile, ...]
    skipped: tuple[SkippedImage, ...]


def is_image_file(name: str | os.PathLike) -> bool:
    """True for a non-hidden file name with a known image extension (case-insensitive)."""
    base = os.path.basename(os.fspath(name))
    return not base.startswith(".") and base.lower().endswith(IMAGE_EXTENSIONS)


def file_identity(info: os.stat_result) -> tuple[int, int]:
    """(device, inode): what a folder is, whichever link or path led to it."""
    return info.st_dev, info.st_ino


def left_out_summary(skipped: Sequence[SkippedImage]) -> str:
    """E.g. '2 files left out, e.g. leaf.gif: unsupported image format .gif (...)'; '' when nothing was."""
    if not skipped:
        return ""
    files = "1 file" if len(skipped) == 1 else f"{len(skipped)} files"
    return f"{files} left out, e.g. {skipped[0].path.name}: {skipped[0].reason}"


def list_folder(folder: Path, parents: Iterable[tuple[int, int]] = ()) -> FolderListing:
    """The entries of ``folder``, sorted by name; ``parents`` are the (device, inode) of the folders
    above it, so that a link back to one of them is named as a loop instead of followed forever."""
    try:
        entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
        here = file_identity(os.stat(folder))
    except OSError as exc:
        return FolderListing((), (), (SkippedImage(Path(folder), f"cannot list folder ({exc.strerror or exc})"),))
    above = {*parents, here}
    images, subfolders, skipped = [], [], []
    for entry in entries:
        if entry.name.startswith("."):
            continue
        path = Path(entry.path)
        try:
            target = os.stat(path)  # follows links: a link is what it points at
        except OSError as exc:
            skipped.append(SkippedImage(path, _unreachable_reason(path, exc)))
            continue
        if stat.S_ISDIR(target.st_mode):
            if file_identity(target) in above:
                skipped.append(SkippedImage(path, f"symlink loop: leads back to its own parent folder {os.path.realpath(path)}"))
            else:
                subfolders.append(path)
        elif not stat.S_ISREG(target.st_mode):
            skipped.append(SkippedImage(path, "not a regular file (a device, socket or pipe)"))
        elif is_image_file(entry.name):
            images.append(ImageFile(path, target.st_size))
        else:
            skipped.append(SkippedImage(path, _format_reason(path)))
    return FolderListing(tuple(images), tuple(subfolders), tuple(skipped))


def _unreachable_reason(path: Path, exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return f"symlink loop: {path.name} resolves through links back to itself"
    if exc.errno == errno.ENOENT and path.is_symlink():
        return f"broken symlink: its target {os.readlink(path)} does not exist"
    return f"cannot access ({exc.strerror or exc})"


def _format_reason(path: Path) -> str:
    from PIL import Image  # its table of formats, only once a file needs a reason

    suffix = path.suffix.lower()
    readable = " ".join(IMAGE_EXTENSIONS)
    if suffix in Image.registered_extensions():
        # GIF, ICO, PPM... Pillow could decode them, but the official eval (torchvision's
        # ImageFolder) never reads them: taking them here would change what a split holds.
        return f"unsupported image format {suffix}; convert it to one of {readable}"
    return f"not an image file ({suffix or 'no extension'}); images are read from {readable}"


def scan_folder(folder: Path, parents: Iterable[tuple[int, int]] = ()) -> ImageScan:
    """Image files anywhere under ``folder`` in torchvision ImageFolder's order (sorted walk, sorted
    names; links to folders followed, loops named instead), and every file left out with why."""
    found: list[tuple[str, FolderListing]] = []
    pending = [(Path(folder), frozenset(parents))]
    while pending:
        current, above = pending.pop()
        listing = list_folder(current, above)
        found.append((str(current), listing))
        try:
            here = file_identity(os.stat(current))
        except OSError:
            continue  # list_folder named it
        pending.extend((sub, above | {here}) for sub in listing.subfolders)
    found.sort(key=lambda item: item[0])  # os.walk's tuples sorted: by folder path
    return ImageScan(
        tuple(path for _, listing in found for path in listing.images),
        tuple(skip for _, listing in found for skip in listing.skipped),
    )


def find_images(inputs: Sequence[str | os.PathLike]) -> ImageScan:
    """Files as given and image files under folders (sorted, as ``scan_folder`` finds them), with every
    file left out named; an error if none. One stat per input and per file found."""
    images: list[ImageFile] = []
    skipped: list[SkippedImage] = []
    for item in map(Path, inputs):
        try:
            info = os.stat(item)
        except OSError:
            if not os.path.lexists(item):
                raise ClcaDeployError(f"{item} does not exist.") from None
            images.append(ImageFile(item, None))  # a broken link, a loop: the reader says why
            continue
        if stat.S_ISDIR(info.st_mode):
            scan = scan_folder(item)
            images.extend(sorted(scan.images, key=lambda found: found.path))
            skipped.extend(scan.skipped)
        else:
            images.append(ImageFile(item, info.st_size if stat.S_ISREG(info.st_mode) else None))
    if not images:
        left_out = f"; {left_out_summary(skipped)}" if skipped else ""
        raise ClcaDeployError(f"no image files in {', '.join(map(str, inputs))} (looked for {', '.join(IMAGE_EXTENSIONS)}){left_out}.")
    return ImageScan(tuple(images), tuple(skipped))

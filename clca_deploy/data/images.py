"""Reading one image file into an RGB PIL image, with every failure as one clear ImageReadError."""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from clca_deploy.errors import ClcaDeployError

# The largest image read unless a caller says otherwise: a 600-dpi A4 leaf scan is 35 MP, so 40 MP
# takes every real scan, while decoding (15-20 ms per megapixel for a PNG on one core) stays under a
# second per image. Pillow's own default (89 MP) let a 9000x9000 PNG of 240 KB cost 1.2 s to decode.
DEFAULT_MAX_PIXELS = 40_000_000
# Pillow refuses images over twice its Image.MAX_IMAGE_PIXELS default (DecompressionBombError) whatever
# limit is set here, so a larger limit would be a promise this module cannot keep.
PIXEL_LIMIT_CEILING = 2 * 89_478_485


class ImageReadError(ClcaDeployError):
    """An image file that cannot be read: missing, empty, not an image, truncated, too large..."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        self.path = Path(path)
        # One line, so that a skipped-file list and the CLI stay readable.
        self.reason = " ".join(str(reason).split())
        super().__init__(f"cannot read image {self.path}: {self.reason}")


def load_image(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS, size: int | None = None) -> Image.Image:
    """The image at ``path`` fully decoded, EXIF orientation applied, converted to 8-bit RGB.

    Images with more than ``max_pixels`` pixels are refused before decoding. Pillow keeps its
    own hard ceiling (twice ``PIL.Image.MAX_IMAGE_PIXELS``) for limits set above it. ``size`` is the
    file's size where a folder scan already looked it up (a regular file), so it is not looked up again.
    """
    path = Path(path)
    if size is None:
        _check_file(path)
    elif size == 0:
        raise ImageReadError(path, "file is empty (0 bytes)")
    return _decode(path, path, max_pixels)


def decode_image(data: bytes, source: str = "<bytes>", max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Encoded image bytes (JPEG, PNG, ...) decoded exactly as ``load_image`` decodes a file;
    ``source`` names the image in errors (a request id, an upload's name)."""
    return _decode(io.BytesIO(_encoded(data, source)), source, max_pixels)


def declared_size(data: bytes, source: str = "<bytes>") -> tuple[int, int]:
    """(width, height) that encoded image bytes declare in their header, read without decoding a pixel:
    what a server sums over a request to bound its decode work before doing any."""
    with _image_errors(source), _open(io.BytesIO(_encoded(data, source))) as image:
        return image.size


def _encoded(data: bytes, source: str) -> bytes:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ImageReadError(source, f"expected encoded image bytes, got {type(data).__name__}")
    if len(data) == 0:
        raise ImageReadError(source, "no data (0 bytes)")
    return bytes(data)


@contextlib.contextmanager
def _open(file: Path | io.BytesIO) -> Iterator[Image.Image]:
    with warnings.catch_warnings():
        # Our own limit replaces Pillow's warning-level one.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with Image.open(file) as image:  # reads the header only
            yield image


def _decode(file: Path | io.BytesIO, source: str | os.PathLike, max_pixels: int) -> Image.Image:
    with _image_errors(source), _open(file) as image:
        pixels = image.width * image.height
        if pixels > max_pixels:
            raise ImageReadError(
                source,
                f"{image.width}x{image.height} = {pixels} pixels exceeds the limit of {max_pixels} "
                "(decompression-bomb guard; raise max_pixels if the file is trusted)",
            )
        # Decode now, inside the error mapping: truncated or corrupt data fails here, not later.
        image.load()
        oriented = ImageOps.exif_transpose(image)
        return to_rgb(oriented, source)


@contextlib.contextmanager
def _image_errors(source: str | os.PathLike) -> Iterator[None]:
    """Every failure of Pillow on ``source`` as one ImageReadError."""
    try:
        yield
    except ImageReadError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageReadError(source, f"decompression-bomb guard: {exc}") from exc
    except UnidentifiedImageError as exc:
        raise ImageReadError(source, "not a recognised image format") from exc
    except FileNotFoundError as exc:
        raise ImageReadError(source, "file not found") from exc
    except PermissionError as exc:
        raise ImageReadError(source, "permission denied") from exc
    except OSError as exc:
        raise ImageReadError(source, f"truncated or corrupt image data ({exc})") from exc
    except Exception as exc:  # noqa: BLE001 - broken files make Pillow's decoders raise almost anything
        raise ImageReadError(source, f"corrupt image data ({type(exc).__name__}: {exc})") from exc


def _check_file(path: Path) -> None:
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise ImageReadError(path, "file not found") from None
    except OSError as exc:
        raise ImageReadError(path, f"cannot access file ({exc.strerror or exc})") from None
    if path.is_dir():
        raise ImageReadError(path, "is a directory, not an image file")
    if stat.st_size == 0:
        raise ImageReadError(path, "file is empty (0 bytes)")


def to_rgb(image: Image.Image, path: str | os.PathLike = "<image>") -> Image.Image:
    """``image`` as a new 8-bit RGB image; 16-bit grayscale is scaled to 8 bits, not clipped."""
    mode = image.mode
    if mode.startswith("I;16") or mode == "I":
        # Pillow's convert() clips these at 255; 16-bit PNG/TIFF data spans 0..65535.
        # Mode "I" is how Pillow reads 16-bit grayscale from several formats, so it is taken as 16-bit too.
        values = np.asarray(image).astype(np.int64)
        gray = ((np.clip(values, 0, 65535) + 128) // 257).astype(np.uint8)  # round(v * 255 / 65535)
        return Image.fromarray(np.stack([gray] * 3, axis=-1), mode="RGB")
    if mode == "F":
        raise ImageReadError(path, "32-bit float images (mode F) have no defined 8-bit range; convert it to 8 or 16 bits")
    if mode == "RGB":
        return image.copy()
    try:
        # Palette and alpha images drop the alpha channel as the official eval's .convert('RGB') does.
        return image.convert("RGB")
    except ValueError as exc:
        raise ImageReadError(path, f"unsupported image mode {mode!r} ({exc})") from exc

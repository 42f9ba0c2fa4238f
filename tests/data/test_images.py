"""load_image: every mode becomes 8-bit RGB, every bad file one clear ImageReadError."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from clca_deploy.data import ImageReadError, decode_image, load_image, to_rgb
from clca_deploy.errors import ClcaDeployError
from tests.conftest import LEAVES_DIR, require_shared

RED, BLUE = (255, 0, 0), (0, 0, 255)


def leaf_bytes() -> bytes:
    return require_shared(LEAVES_DIR / "test" / "Acer" / "l2nr023.jpg").read_bytes()


def read_error(path, **kwargs) -> ImageReadError:
    with pytest.raises(ImageReadError) as info:
        load_image(path, **kwargs)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    assert isinstance(info.value, ClcaDeployError)
    return info.value


def test_real_leaf_loads_as_rgb():
    path = require_shared(LEAVES_DIR / "test" / "Acer" / "l2nr023.jpg")
    image = load_image(path)
    assert image.mode == "RGB" and image.size == (427, 700)
    with Image.open(path) as reference:
        np.testing.assert_array_equal(np.asarray(image), np.asarray(reference.convert("RGB")))


def test_image_is_fully_decoded_and_detached_from_the_file(tmp_path):
    path = tmp_path / "leaf.jpg"
    path.write_bytes(leaf_bytes())
    image = load_image(path)
    path.unlink()
    assert np.asarray(image).shape == (700, 427, 3)


def test_truncated_jpeg(tmp_path):
    data = leaf_bytes()
    path = tmp_path / "truncated.jpg"
    path.write_bytes(data[: len(data) // 2])
    assert "truncated" in read_error(path).reason


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.jpg"
    path.touch()
    assert read_error(path).reason == "file is empty (0 bytes)"


def test_text_file_named_jpg(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("this is not an image\n")
    assert read_error(path).reason == "not a recognised image format"


def test_missing_file_and_directory(tmp_path):
    assert read_error(tmp_path / "nowhere.png").reason == "file not found"
    assert "directory" in read_error(tmp_path).reason


def test_decompression_bomb_guard(tmp_path):
    path = tmp_path / "big.png"
    Image.new("RGB", (100, 80), RED).save(path)
    error = read_error(path, max_pixels=7_999)
    assert "100x80 = 8000 pixels exceeds the limit of 7999" in error.reason
    assert load_image(path, max_pixels=8_000).size == (100, 80)


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path):
    values = np.linspace(0, 65535, 64 * 32).round().astype(np.uint16).reshape(32, 64)
    path = tmp_path / "depth16.png"
    Image.fromarray(values).save(path)
    with Image.open(path) as raw:
        assert raw.mode in ("I;16", "I"), "the fixture must really be 16-bit"
    rgb = np.asarray(load_image(path))
    expected = np.round(values / 257.0).astype(np.uint8)
    assert rgb.shape == (32, 64, 3)
    for channel in range(3):
        np.testing.assert_array_equal(rgb[..., channel], expected)
    assert rgb.min() == 0 and rgb.max() == 255 and len(np.unique(rgb)) > 200


@pytest.mark.parametrize("dtype", ["<u2", ">u2", "<i4"])
def test_to_rgb_scales_16_bit_modes(dtype):
    values = np.array([[0, 128, 129, 32896, 65535]], dtype=dtype)
    image = Image.fromarray(values)
    assert image.mode in ("I;16", "I;16B", "I")
    np.testing.assert_array_equal(np.asarray(to_rgb(image))[0, :, 0], [0, 0, 1, 128, 255])


def test_cmyk_jpeg(tmp_path):
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (32, 24), (0, 255, 255, 0)).save(path, quality=95)  # pure red in CMYK
    with Image.open(path) as raw:
        assert raw.mode == "CMYK"
    image = load_image(path)
    assert image.mode == "RGB" and image.size == (32, 24)
    np.testing.assert_allclose(np.asarray(image).reshape(-1, 3).mean(axis=0), RED, atol=3)


def test_palette_png_with_transparency(tmp_path):
    palette = Image.new("P", (4, 2))
    palette.putpalette([*RED, *BLUE] + [0] * 762)
    palette.putdata([0, 1, 0, 1, 1, 1, 0, 0])
    path = tmp_path / "palette.png"
    palette.save(path, transparency=0)
    with Image.open(path) as raw:
        assert raw.mode == "P" and "transparency" in raw.info
    pixels = np.asarray(load_image(path))
    # Like the official .convert('RGB'): the transparent index keeps its palette colour.
    assert pixels[0, 0].tolist() == list(RED) and pixels[0, 1].tolist() == list(BLUE)
    assert pixels[1].tolist() == [list(BLUE), list(BLUE), list(RED), list(RED)]


@pytest.mark.parametrize("mode,colour,expected", [("L", 77, (77, 77, 77)), ("LA", (90, 0), (90, 90, 90)), ("RGBA", (1, 2, 3, 0), (1, 2, 3)), ("1", 1, (255, 255, 255))])
def test_other_modes(tmp_path, mode, colour, expected):
    path = tmp_path / f"image_{mode}.png"
    Image.new(mode, (5, 3), colour).save(path)
    image = load_image(path)
    assert image.mode == "RGB"
    assert np.asarray(image)[1, 2].tolist() == list(expected)


def test_float_tiff_is_unsupported(tmp_path):
    path = tmp_path / "float.tif"
    Image.new("F", (4, 4), 0.5).save(path)
    assert "mode F" in read_error(path).reason


def test_exif_orientation_is_applied(tmp_path):
    # Stored 40 wide x 20 high: left half red, right half blue.
    stored = Image.new("RGB", (40, 20), BLUE)
    stored.paste(RED, (0, 0, 20, 20))
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    path = tmp_path / "rotated.jpg"
    stored.save(path, exif=exif, quality=95)
    image = load_image(path)
    assert image.size == (20, 40)
    pixels = np.asarray(image).astype(int)
    # Rotated clockwise, the stored left (red) half is on top.
    assert np.abs(pixels[5, 10] - RED).max() < 20
    assert np.abs(pixels[35, 10] - BLUE).max() < 20


def test_decode_image_equals_load_image_and_names_its_source(tmp_path):
    """What a server receives as bytes decodes exactly as the same file read from disk."""
    data = leaf_bytes()
    path = tmp_path / "leaf.jpg"
    path.write_bytes(data)
    np.testing.assert_array_equal(np.asarray(decode_image(data)), np.asarray(load_image(path)))
    for bad, reason in ((b"", "no data"), (b"hello", "not a recognised image format"), (data[:2000], "truncated")):
        with pytest.raises(ImageReadError, match=reason) as info:
            decode_image(bad, source="<request 7>")
        assert "<request 7>" in str(info.value)
    with pytest.raises(ImageReadError, match="expected encoded image bytes, got str"):
        decode_image("leaf.jpg")
    with pytest.raises(ImageReadError, match="exceeds the limit"):
        decode_image(data, max_pixels=1000)


def test_default_limit_takes_a_600_dpi_a4_scan_and_refuses_a_9000_pixel_square():
    from clca_deploy.data.images import DEFAULT_MAX_PIXELS, PIXEL_LIMIT_CEILING

    assert 4960 * 7016 <= DEFAULT_MAX_PIXELS < 9000 * 9000
    assert DEFAULT_MAX_PIXELS < PIXEL_LIMIT_CEILING


def declaring_png(width: int, height: int) -> bytes:
    """A 1x1 PNG whose header declares ``width`` x ``height``: small, and impossible to decode."""
    import io
    import zlib

    buffer = io.BytesIO()
    Image.new("L", (1, 1)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    data[16:24] = width.to_bytes(4, "big") + height.to_bytes(4, "big")  # IHDR's width and height
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")  # and its CRC, so the header stays valid
    return bytes(data)


def test_declared_size_reads_the_header_without_decoding():
    from clca_deploy.data.images import declared_size

    data = declaring_png(9000, 9000)
    assert declared_size(data, source="<request image 1>") == (9000, 9000)
    # The same bytes cannot be decoded: declared_size never tried.
    with pytest.raises(ImageReadError, match="truncated|corrupt"):
        decode_image(data, max_pixels=10**8)
    # And the limit refuses it from the header, before decoding.
    with pytest.raises(ImageReadError, match="9000x9000 = 81000000 pixels exceeds the limit of 40000000"):
        decode_image(data)
    for bad, reason in ((b"", "no data"), (b"hello", "not a recognised image format"), ("x.png", "expected encoded image bytes")):
        with pytest.raises(ImageReadError, match=reason) as info:
            declared_size(bad, source="<request image 1>")
        assert "<request image 1>" in str(info.value) and "\n" not in str(info.value)

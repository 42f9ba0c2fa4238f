"""The eval preprocessing equals the official torchvision transform, bit for bit."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from clca_deploy.data import PreprocessConfig, load_image, preprocess, preprocess_batch
from clca_deploy.data.preprocess import center_crop_box
from clca_deploy.errors import ConfigError
from tests.conftest import GOLDEN_DIR, LEAVES_DIR, SHARED, require_shared

GOLDEN = "evit_tiny_clca_k0.1_224"


def leaf_paths(count: int) -> list:
    """A few real leaf images from different classes, in a fixed order."""
    test_dir = require_shared(LEAVES_DIR / "test")
    return [sorted(folder.glob("*.jpg"))[0] for folder in sorted(test_dir.iterdir())[:count]]


def torchvision_eval(config: PreprocessConfig):
    from torchvision import transforms
    from torchvision.transforms import InterpolationMode

    return transforms.Compose(
        [
            transforms.Resize((config.resize_size, config.resize_size), interpolation=InterpolationMode.BICUBIC),
            transforms.CenterCrop(config.img_size),
            transforms.ToTensor(),
            transforms.Normalize(config.mean, config.std),
        ]
    )


def test_golden_input_is_reproduced():
    meta = json.loads(require_shared(GOLDEN_DIR / f"{GOLDEN}.json").read_text())
    expected = np.load(GOLDEN_DIR / meta["io"])["input"]
    images = [load_image(require_shared(SHARED / name)) for name in meta["input_images"]]
    got = preprocess_batch(images, PreprocessConfig.for_size(meta["img_size"]))
    assert got.shape == expected.shape == (2, 3, 224, 224)
    assert got.dtype == np.float32
    max_error = float(np.abs(got - expected).max())
    assert max_error <= 1e-6, f"max abs error {max_error}"


@pytest.mark.parametrize(
    "config",
    [
        PreprocessConfig.for_size(224),
        PreprocessConfig.for_size(448),
        # Odd margins: 29 / 2 = 14.5 and 31 / 2 = 15.5 check the crop offset's round-half-to-even.
        PreprocessConfig(img_size=227, resize_size=256),
        PreprocessConfig(img_size=225, resize_size=256),
        PreprocessConfig(img_size=64, resize_size=64),
    ],
    ids=lambda c: f"{c.img_size}from{c.resize_size}",
)
def test_matches_torchvision_on_leaves(config):
    reference = torchvision_eval(config)
    for path in leaf_paths(3):
        image = load_image(path)
        expected = reference(image).numpy()
        got = preprocess(image, config)
        assert got.shape == (3, config.img_size, config.img_size) and got.dtype == np.float32
        assert float(np.abs(got - expected).max()) <= 1e-6, path


@pytest.mark.parametrize("size,crop,offset", [(256, 224, 16), (512, 448, 32), (256, 227, 14), (256, 225, 16), (9, 4, 2)])
def test_center_crop_offset_rounds_like_torchvision(size, crop, offset):
    assert center_crop_box(size, crop) == (offset, offset, offset + crop, offset + crop)


def test_normalisation_of_a_solid_colour():
    config = PreprocessConfig(img_size=8, resize_size=10)
    out = preprocess(Image.new("RGB", (31, 17), (255, 0, 128)), config)
    expected = (np.array([1.0, 0.0, 128 / 255]) - np.array(config.mean)) / np.array(config.std)
    np.testing.assert_allclose(out, np.broadcast_to(expected[:, None, None], out.shape), atol=1e-6)


def test_non_rgb_input_is_converted_and_batch_stacks():
    config = PreprocessConfig(img_size=16)
    gray = Image.linear_gradient("L").resize((40, 30))
    colour = Image.new("RGB", (20, 50), (10, 200, 30))
    batch = preprocess_batch([gray, colour], config)
    assert batch.shape == (2, 3, 16, 16)
    np.testing.assert_array_equal(batch[0], preprocess(gray.convert("RGB"), config))
    np.testing.assert_array_equal(batch[1], preprocess(colour, config))
    assert not np.array_equal(batch[0][0], batch[0][0][::-1]), "the gradient must survive"


def test_config_defaults_and_round_trip():
    assert PreprocessConfig.for_size(448).resize_size == 512
    assert PreprocessConfig.for_size(224).resize_size == 256
    config = PreprocessConfig.for_size(448)
    assert (config.interpolation, config.mean, config.std) == ("bicubic", (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    data = config.to_dict()
    assert set(data) == {"img_size", "resize_size", "interpolation", "mean", "std"}
    assert json.loads(json.dumps(data)) == data
    assert PreprocessConfig.from_dict(json.loads(json.dumps(data))) == config
    custom = PreprocessConfig(img_size=96, resize_size=100, interpolation="bilinear", mean=[0.5] * 3, std=(0.5, 0.5, 0.5))
    assert custom.mean == (0.5, 0.5, 0.5)
    assert PreprocessConfig.from_dict(custom.to_dict()) == custom
    assert PreprocessConfig.from_dict({"img_size": 224}) == PreprocessConfig.for_size(224)


@pytest.mark.parametrize(
    "data,message",
    [
        ({"img_size": 0}, "img_size must be a positive integer"),
        ({"img_size": "224"}, "img_size must be a positive integer"),
        ({"img_size": True}, "img_size must be a positive integer"),
        ({"img_size": 224, "resize_size": 200}, "resize_size must be an integer >= img_size"),
        ({"img_size": 224, "resize_size": 256.0}, "resize_size must be an integer"),
        ({"img_size": 224, "interpolation": "cubic"}, "unknown interpolation 'cubic'"),
        ({"img_size": 224, "mean": [0.5, 0.5]}, "mean must be 3 numbers"),
        ({"img_size": 224, "mean": "0.5"}, "mean must be 3 numbers"),
        ({"img_size": 224, "std": [0.2, 0.0, 0.2]}, "std must be finite positive"),
        ({"img_size": 224, "std": [0.2, float("nan"), 0.2]}, "std must be finite positive"),
        ({"img_size": 224, "crop_pct": 0.9}, r"unknown preprocessing setting\(s\) \['crop_pct'\]"),
        ({"resize_size": 256}, "no 'img_size'"),
        ([224], "must be a mapping"),
    ],
)
def test_from_dict_rejects_bad_values(data, message):
    with pytest.raises(ConfigError, match=message):
        PreprocessConfig.from_dict(data)


def test_library_imports_neither_torch_nor_torchvision():
    code = "import sys, clca_deploy.data; print(sorted(m for m in ('torch', 'torchvision') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"

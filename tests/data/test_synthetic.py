"""The synthetic cultivar generator: deterministic, ImageFolder-shaped, atomic, and fine-grained
(the cultivars are separable by their traits together, not by any one trait or by raw pixels)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from clca_deploy.data import open_dataset
from clca_deploy.data.synthetic import (
    TRAIT_NAMES, SyntheticLeafConfig, cultivar_means, sample_traits, write_synthetic_dataset,
)
from clca_deploy.data.synthetic import dataset as synthetic_dataset
from clca_deploy.data.synthetic.traits import TRAIT_RANGES
from clca_deploy.errors import ConfigError

SMALL = SyntheticLeafConfig(num_cultivars=3, train_per_class=4, test_per_class=2, image_size=64, seed=5)


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*.jpg"))}


def test_same_config_gives_identical_files_and_another_seed_does_not(tmp_path):
    a = write_synthetic_dataset(tmp_path / "a", SMALL)
    b = write_synthetic_dataset(tmp_path / "b", SMALL)
    c = write_synthetic_dataset(tmp_path / "c", SyntheticLeafConfig(**{**SMALL.__dict__, "seed": 6}))
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    assert a.content_sha256 == b.content_sha256 != c.content_sha256
    assert set(_files(tmp_path / "a")) == set(_files(tmp_path / "c"))


def test_layout_is_an_imagefolder_split_with_a_description(tmp_path):
    info = write_synthetic_dataset(tmp_path / "leaves", SMALL)
    train, test = open_dataset(tmp_path / "leaves" / "train"), open_dataset(tmp_path / "leaves" / "test")
    assert train.class_names == test.class_names == info.class_names
    assert list(info.class_names) == sorted(info.class_names) and info.num_classes == 3
    assert (len(train), len(test)) == (info.train_images, info.test_images) == (12, 6)
    image = Image.open(train.records[0].path)
    assert image.size == (64, 64) and image.mode == "RGB"
    description = json.loads((tmp_path / "leaves" / "synthetic.json").read_text())
    assert description["config"] == SMALL.to_dict()
    assert len(description["images"]) == 18 and set(TRAIT_NAMES) <= set(description["images"][0])


def test_existing_dataset_is_reused_and_other_folders_are_never_touched(tmp_path):
    write_synthetic_dataset(tmp_path / "leaves", SMALL)
    again = write_synthetic_dataset(tmp_path / "leaves", SMALL)
    assert again.reused and again.train_images == 12
    with pytest.raises(ConfigError, match="other settings"):
        write_synthetic_dataset(tmp_path / "leaves", SyntheticLeafConfig(**{**SMALL.__dict__, "seed": 9}))
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="not a synthetic leaf dataset"):
        write_synthetic_dataset(mine, SMALL)
    assert (mine / "notes.txt").read_text() == "keep me"


def test_an_interrupted_run_leaves_no_partial_dataset(tmp_path, monkeypatch):
    calls = {"n": 0}
    real = synthetic_dataset.render_leaf

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(synthetic_dataset, "render_leaf", failing)
    with pytest.raises(KeyboardInterrupt):
        write_synthetic_dataset(tmp_path / "leaves", SMALL)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("bad", [{"num_cultivars": 1}, {"train_per_class": 0}, {"image_size": 16}, {"difficulty": 0.0}])
def test_bad_settings_are_refused(bad):
    with pytest.raises(ConfigError):
        SyntheticLeafConfig(**bad)


def _nearest_mean_accuracy(train_x, train_y, test_x, test_y) -> float:
    means = np.stack([train_x[train_y == c].mean(0) for c in np.unique(train_y)])
    predicted = ((test_x[:, None, :] - means[None]) ** 2).sum(-1).argmin(1)
    return float((predicted == test_y).mean())


def test_cultivars_differ_in_the_combination_of_traits_not_in_one():
    means = cultivar_means(6, 1.0, seed=0)
    spread = np.array([TRAIT_RANGES[n][1] for n in TRAIT_NAMES])
    samples = {split: ([], []) for split in (0, 1)}
    for label, mean in enumerate(means):
        for index in range(150):
            for split in (0, 1):
                traits = sample_traits(mean, np.random.default_rng([split, label, index]))
                samples[split][0].append(traits.as_vector() / spread)
                samples[split][1].append(label)
    (train_x, train_y), (test_x, test_y) = [tuple(map(np.array, samples[s])) for s in (0, 1)]
    all_traits = _nearest_mean_accuracy(train_x, train_y, test_x, test_y)
    single = [_nearest_mean_accuracy(train_x[:, [t]], train_y, test_x[:, [t]], test_y) for t in range(len(TRAIT_NAMES))]
    assert all_traits > 0.85  # the signal is there ...
    assert max(single) < 0.55  # ... but no single trait gives it away (chance is 1/6)


def test_raw_pixels_do_not_give_the_cultivar_away(tmp_path):
    config = SyntheticLeafConfig(num_cultivars=4, train_per_class=30, test_per_class=15, image_size=64, seed=2)
    write_synthetic_dataset(tmp_path / "leaves", config)

    def pixels(split):
        dataset = open_dataset(tmp_path / "leaves" / split)
        x = np.stack([np.asarray(Image.open(r.path).resize((16, 16)), dtype=np.float32).ravel() for r in dataset.records])
        return x, np.array([r.label for r in dataset.records])

    accuracy = _nearest_mean_accuracy(*pixels("train"), *pixels("test"))
    assert accuracy < 0.6  # 4 classes: chance is 0.25

"""The synthetic cultivar generator: deterministic, ImageFolder-shaped, atomic, careful with existing
folders, and fine-grained (the cultivars are told apart by their traits together, not by any one
trait, and not by raw pixels)."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
from PIL import Image

from clca_deploy.data import open_dataset
from clca_deploy.data.synthetic import (
    TRAIT_NAMES,
    TRAIT_SPECS,
    SyntheticLeafConfig,
    make_cultivars,
    read_description,
    render_leaf,
    sample_leaf_traits,
    sample_nuisance,
    standardise,
    write_synthetic_dataset,
)
from clca_deploy.data.synthetic import dataset as synthetic_dataset
from clca_deploy.errors import ConfigError

SMALL = SyntheticLeafConfig(num_cultivars=3, train_per_class=4, test_per_class=2, image_size=64, seed=5)


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_config_gives_identical_files_and_another_seed_does_not(tmp_path):
    a = write_synthetic_dataset(tmp_path / "a", SMALL)
    b = write_synthetic_dataset(tmp_path / "b", SMALL)
    c = write_synthetic_dataset(tmp_path / "c", dataclasses.replace(SMALL, seed=6))
    files_a, files_c = _files(tmp_path / "a"), _files(tmp_path / "c")
    assert files_a == _files(tmp_path / "b")  # synthetic.json included: it holds no timestamps
    assert a.content_sha256 == b.content_sha256 != c.content_sha256
    assert set(files_a) == set(files_c)
    assert all(files_a[name] != files_c[name] for name in files_a if name.endswith(".jpg"))


def test_an_image_depends_on_where_it_goes_not_on_what_else_is_generated(tmp_path):
    write_synthetic_dataset(tmp_path / "few", dataclasses.replace(SMALL, train_per_class=2, test_per_class=1))
    write_synthetic_dataset(tmp_path / "many", SMALL)
    few, many = _files(tmp_path / "few"), _files(tmp_path / "many")
    images = [name for name in few if name.endswith(".jpg")]
    assert len(images) == 9 and all(few[name] == many[name] for name in images)


def test_layout_is_an_imagefolder_split_with_a_description(tmp_path):
    info = write_synthetic_dataset(tmp_path / "leaves", SMALL)
    assert not info.reused and info.root == tmp_path / "leaves"
    train, test = open_dataset(info.train_dir), open_dataset(info.test_dir)
    assert train.class_names == test.class_names == info.class_names
    assert list(info.class_names) == sorted(info.class_names) and info.num_classes == 3
    assert (len(train), len(test)) == (info.train_images, info.test_images) == (12, 6)
    assert [r.label for r in train.records] == [0] * 4 + [1] * 4 + [2] * 4
    with Image.open(train.records[0].path) as image:
        assert (image.format, image.size, image.mode) == ("JPEG", (64, 64), "RGB")

    description = read_description(tmp_path / "leaves")
    assert description["config"] == SMALL.to_dict()
    assert [c["name"] for c in description["cultivars"]] == list(info.class_names)
    assert set(description["cultivars"][0]["trait_means"]) == set(TRAIT_NAMES)
    assert description["content_sha256"] == info.content_sha256
    records = description["images"]
    assert len(records) == 18 and set(records[0]["traits"]) == set(TRAIT_NAMES)
    assert {r["path"] for r in records} == {p.relative_to(tmp_path / "leaves").as_posix()
                                            for p in (tmp_path / "leaves").rglob("*.jpg")}
    json.dumps(info.to_dict())  # the returned info is JSON-able


def test_a_matching_dataset_is_reused_and_anything_else_is_refused_untouched(tmp_path):
    root = tmp_path / "leaves"
    write_synthetic_dataset(root, SMALL)
    stamps = {p: p.stat().st_mtime_ns for p in root.rglob("*")}
    again = write_synthetic_dataset(root, SMALL)
    assert again.reused and again.train_images == 12
    assert stamps == {p: p.stat().st_mtime_ns for p in root.rglob("*")}

    with pytest.raises(ConfigError, match=r"other settings \(seed 5 -> 9\)"):
        write_synthetic_dataset(root, dataclasses.replace(SMALL, seed=9))
    first = sorted(root.rglob("*.jpg"))[0]
    first.write_bytes(first.read_bytes()[:-10])
    with pytest.raises(ConfigError, match="changed since they were generated"):
        write_synthetic_dataset(root, SMALL)

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="not a synthetic leaf dataset.*choose a new folder"):
        write_synthetic_dataset(mine, SMALL)
    assert [p.name for p in mine.iterdir()] == ["notes.txt"] and (mine / "notes.txt").read_text() == "keep me"
    with pytest.raises(ConfigError, match="is a file"):
        write_synthetic_dataset(mine / "notes.txt", SMALL)
    (mine / "synthetic.json").write_text('{"config": {"seed": 5}}')  # e.g. an older generator's dataset
    with pytest.raises(ConfigError, match="not made by this version of the synthetic leaf generator"):
        write_synthetic_dataset(mine, SMALL)
    (mine / "synthetic.json").write_text("{not json")
    with pytest.raises(ConfigError, match="unreadable"):
        write_synthetic_dataset(mine, SMALL)
    assert (mine / "notes.txt").read_text() == "keep me"


def test_an_empty_folder_or_missing_parents_are_fine(tmp_path):
    (tmp_path / "empty").mkdir()
    assert write_synthetic_dataset(tmp_path / "empty", SMALL).train_images == 12
    assert write_synthetic_dataset(tmp_path / "new" / "deeper", SMALL).test_images == 6


def test_an_interrupted_run_leaves_no_partial_dataset(tmp_path, monkeypatch):
    calls = {"n": 0}
    real = synthetic_dataset.render_leaf

    def interrupted_at_the_fifth_image(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(synthetic_dataset, "render_leaf", interrupted_at_the_fifth_image)
    with pytest.raises(KeyboardInterrupt):
        write_synthetic_dataset(tmp_path / "leaves", SMALL)
    assert list(tmp_path.iterdir()) == []


def test_a_dataset_finished_meanwhile_by_another_process_is_reused(tmp_path, monkeypatch):
    real = synthetic_dataset._generate
    state = {"raced": False}

    def other_process_finishes_first(folder, config):
        if not state["raced"]:
            state["raced"] = True
            write_synthetic_dataset(tmp_path / "leaves", config)
        return real(folder, config)

    monkeypatch.setattr(synthetic_dataset, "_generate", other_process_finishes_first)
    info = write_synthetic_dataset(tmp_path / "leaves", SMALL)
    assert state["raced"] and info.reused
    assert [p.name for p in tmp_path.iterdir()] == ["leaves"]  # no partial folder left behind


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"num_cultivars": 1}, "num_cultivars must be between 2 and 26"),
        ({"num_cultivars": 27}, "num_cultivars"),
        ({"num_cultivars": True}, "num_cultivars must be an integer"),
        ({"train_per_class": 0}, "train_per_class must be >= 1"),
        ({"train_per_class": 2.5}, "train_per_class must be an integer"),
        ({"test_per_class": 0}, "test_per_class"),
        ({"image_size": 16}, "image_size must be between 32 and 1024"),
        ({"seed": -1}, "seed must be >= 0"),
        ({"difficulty": 0.0}, r"difficulty must be in \(0, 2\]"),
        ({"difficulty": 2.5}, "difficulty"),
        ({"difficulty": math.nan}, "difficulty must be a number"),
        ({"difficulty": "1"}, "difficulty must be a number"),
        ({"difficulty": True}, "difficulty must be a number"),
    ],
)
def test_bad_settings_are_refused_with_a_clear_message(bad, message):
    with pytest.raises(ConfigError, match=message):
        SyntheticLeafConfig(**bad)


def test_every_trait_changes_the_drawing():
    cultivar = make_cultivars(SyntheticLeafConfig())[0]
    traits = sample_leaf_traits(cultivar, np.random.default_rng(0))
    nuisance = dataclasses.replace(sample_nuisance(np.random.default_rng(1)), tilt=0.0, blur=0.0, noise=0.0)

    def draw(leaf):
        return np.asarray(render_leaf(leaf, nuisance, 128, np.random.default_rng(2)), dtype=np.float32)

    base = draw(traits)
    for spec in TRAIT_SPECS:
        bumped = dataclasses.replace(traits, **{spec.name: getattr(traits, spec.name) + 2 * spec.within})
        assert np.abs(draw(bumped) - base).mean() > 0.2, spec.name
    wider = dataclasses.replace(traits, aspect=traits.aspect - 0.3)
    assert (draw(wider).mean(-1) < 150).sum() > (base.mean(-1) < 150).sum()  # a wider blade covers more paper


def _nearest_mean_accuracy(train_x, train_y, test_x, test_y) -> float:
    means = np.stack([train_x[train_y == c].mean(0) for c in np.unique(train_y)])
    predicted = ((test_x[:, None, :] - means[None]) ** 2).sum(-1).argmin(1)
    return float((predicted == test_y).mean())


def _trait_samples(config: SyntheticLeafConfig, per_class: int, stream: int):
    x, y = [], []
    for cultivar in make_cultivars(config):
        for index in range(per_class):
            traits = sample_leaf_traits(cultivar, np.random.default_rng([stream, cultivar.label, index]))
            x.append(standardise(traits.as_array()))
            y.append(cultivar.label)
    return np.array(x), np.array(y)


def test_cultivars_differ_in_the_combination_of_traits_not_in_one():
    config = SyntheticLeafConfig()
    (train_x, train_y), (test_x, test_y) = _trait_samples(config, 150, 0), _trait_samples(config, 150, 1)
    together = _nearest_mean_accuracy(train_x, train_y, test_x, test_y)
    single = [_nearest_mean_accuracy(train_x[:, [t]], train_y, test_x[:, [t]], test_y) for t in range(len(TRAIT_NAMES))]
    assert together > 0.9  # the signal is there ...
    assert max(single) < 0.55  # ... but no single trait gives it away (chance is 1/6)
    harder = SyntheticLeafConfig(difficulty=0.4)
    assert _nearest_mean_accuracy(*_trait_samples(harder, 150, 0), *_trait_samples(harder, 150, 1)) < together - 0.2


def test_the_recorded_traits_tell_the_cultivars_apart_but_raw_pixels_do_not(tmp_path):
    config = SyntheticLeafConfig(train_per_class=30, test_per_class=15, image_size=64, seed=2)
    write_synthetic_dataset(tmp_path / "leaves", config)
    records = read_description(tmp_path / "leaves")["images"]

    def pixels(split):
        dataset = open_dataset(tmp_path / "leaves" / split)
        x = [np.asarray(Image.open(r.path).resize((16, 16), Image.Resampling.BOX), np.float32).ravel()
             for r in dataset.records]
        return np.stack(x), np.array([r.label for r in dataset.records])

    def traits(split):
        rows = [r for r in records if r["split"] == split]
        x = standardise(np.array([[r["traits"][name] for name in TRAIT_NAMES] for r in rows]))
        return x, np.array([r["label"] for r in rows])

    assert _nearest_mean_accuracy(*pixels("train"), *pixels("test")) < 0.45  # 6 classes: chance is 0.17
    assert _nearest_mean_accuracy(*traits("train"), *traits("test")) > 0.85


def test_the_generator_constants_agree_with_each_other():
    from clca_deploy.data.synthetic.config import MAX_CULTIVARS
    from clca_deploy.data.synthetic.traits import CULTIVAR_NAMES, TRAIT_NAMES, TRAIT_SPECS

    # One name per possible cultivar, sorted: folder order is class order.
    assert len(CULTIVAR_NAMES) == MAX_CULTIVARS and list(CULTIVAR_NAMES) == sorted(CULTIVAR_NAMES)
    # LeafTraits' fields and the trait specs describe the same traits in the same order.
    assert TRAIT_NAMES == tuple(spec.name for spec in TRAIT_SPECS)

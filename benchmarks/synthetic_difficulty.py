"""How hard the synthetic cultivar task is: nearest-class-mean accuracy on raw pixels, on each
true trait alone and on all true traits together, per difficulty.

    python benchmarks/synthetic_difficulty.py --out benchmarks/results/synthetic_difficulty.json
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from clca_deploy.artifacts import write_json
from clca_deploy.data.synthetic import TRAIT_NAMES, SyntheticLeafConfig, read_description, standardise, write_synthetic_dataset


def nearest_mean_accuracy(train_x, train_y, test_x, test_y) -> float:
    means = np.stack([train_x[train_y == c].mean(0) for c in np.unique(train_y)])
    predicted = ((test_x[:, None, :] - means[None]) ** 2).sum(-1).argmin(1)
    return float((predicted == test_y).mean())


def measure(root: Path, pixel_sizes: tuple[int, ...]) -> dict:
    images = read_description(root)["images"]
    split = {name: [i for i in images if i["split"] == name] for name in ("train", "test")}
    labels = {name: np.array([i["label"] for i in rows]) for name, rows in split.items()}
    traits = {name: standardise(np.array([[i["traits"][t] for t in TRAIT_NAMES] for i in rows])) for name, rows in split.items()}
    result = {"chance": 1.0 / len(np.unique(labels["train"]))}
    for size in pixel_sizes:
        pixels = {
            name: np.stack([np.asarray(Image.open(root / i["path"]).resize((size, size)), np.float32).ravel() for i in rows])
            for name, rows in split.items()
        }
        result[f"raw_pixels_{size}px"] = nearest_mean_accuracy(pixels["train"], labels["train"], pixels["test"], labels["test"])
    single = {
        name: nearest_mean_accuracy(traits["train"][:, [k]], labels["train"], traits["test"][:, [k]], labels["test"])
        for k, name in enumerate(TRAIT_NAMES)
    }
    result["best_single_trait"] = max(single.values())
    result["single_traits"] = single
    result["all_traits"] = nearest_mean_accuracy(traits["train"], labels["train"], traits["test"], labels["test"])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--difficulty", type=float, nargs="+", default=[1.0, 2.0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/synthetic_difficulty.json"))
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for difficulty in args.difficulty:
            config = SyntheticLeafConfig(difficulty=difficulty)
            root = Path(tmp) / f"d{difficulty:g}"
            write_synthetic_dataset(root, config)
            row = {"config": config.to_dict(), **measure(root, (16, 32))}
            rows.append(row)
            print(f"difficulty {difficulty:g}: " + ", ".join(
                f"{k} {v:.3f}" for k, v in row.items() if isinstance(v, float)))
    write_json(args.out, {"benchmark": "synthetic_difficulty", "version": 1, "classifier": "nearest class mean",
                          "rows": rows})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

"""A worked example of bringing your own model: a small MLP on scikit-learn's iris flowers.

    PYTHONPATH=examples lambdaforge train --recipe iris_recipe:IrisRecipe --out runs/iris
    lambdaforge quantize --model runs/iris --out runs/iris-int8
    lambdaforge serve --model runs/iris-int8

A recipe says four things: how to build the module, how to read a dataset from a channel folder,
what the inputs look like (with example inputs for export), and how to score it.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from lambdaforge.artifact.manifest import InputLimits, Preprocessing, TensorSpec
from lambdaforge.recipes.base import (
    Arrays,
    Dataset,
    Hyperparameters,
    Recipe,
    content_version,
    data_files,
    read_csv_rows,
    split_rows,
)
from lambdaforge.recipes.errors import DataError

if TYPE_CHECKING:
    import torch

FEATURES = ("sepal_length", "sepal_width", "petal_length", "petal_width")
LABELS = ("setosa", "versicolor", "virginica")


class IrisRecipe(Recipe):
    name: ClassVar[str] = "iris"
    # the common knobs' defaults for this recipe, plus its own (`hidden`); `--hp hidden=32` overrides
    defaults: ClassVar[dict[str, Any]] = {"epochs": 60, "batch_size": 16, "lr": 1e-2, "hidden": 16}

    def load_dataset(self, channel: Path, hp: Hyperparameters) -> Dataset:
        files = data_files(channel, self.data_suffixes)
        rows = read_csv_rows(files, (*FEATURES, "species"))
        x = np.empty((len(rows), 4), dtype=np.float32)
        y = np.empty(len(rows), dtype=np.int64)
        for i, (path, line, row) in enumerate(rows):
            try:
                x[i] = [float(row[f]) for f in FEATURES]
                y[i] = LABELS.index(row["species"])
            except ValueError as exc:  # a number that is not one, or an unknown species
                raise DataError(f"{path}:{line}: {exc}") from exc
        train, test = split_rows(list(range(len(rows))), y.tolist(), [None] * len(rows), seed=hp.seed)
        return Dataset(train_inputs={"features": x[train]}, train_labels=y[train],
                       test_inputs={"features": x[test]}, test_labels=y[test], labels=LABELS,
                       version=hp.dataset_version or content_version(files))

    def write_sample_data(self, out_dir: Path) -> Path:
        from sklearn.datasets import load_iris

        iris = load_iris()
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / "iris.csv"
        with path.open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow([*FEATURES, "species"])
            for values, target in zip(iris.data, iris.target, strict=True):
                writer.writerow([*values, LABELS[target]])
        return path

    def build_model(self, num_labels: int, hp: Hyperparameters) -> torch.nn.Module:
        from torch import nn

        hidden = int(hp.get("hidden"))
        return nn.Sequential(nn.Linear(4, hidden), nn.ReLU(), nn.Linear(hidden, num_labels))

    def input_specs(self) -> tuple[TensorSpec, ...]:
        return (TensorSpec(name="features", dtype="float32", shape=("batch", 4)),)

    def preprocessing(self) -> Preprocessing:
        return Preprocessing(kind="tensor")

    def limits(self) -> InputLimits:
        return InputLimits(max_batch=128, value_min=0.0, value_max=20.0)

    def example_inputs(self, batch: int, seed: int, *, sequence: int | None = None) -> Arrays:
        rng = np.random.default_rng(seed)
        return {"features": rng.uniform(0.1, 8.0, size=(batch, 4)).astype(np.float32)}

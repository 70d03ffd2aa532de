"""`digits`: a small CNN on scikit-learn's 8x8 handwritten digits (the data ships with scikit-learn).

Data format: CSV with a `label` column (0-9) and 64 pixel columns `p0`..`p63` (values 0-16),
optionally a `split` column (train/test). The model scales pixels itself, so a request sends
raw pixel values and the runtime needs no preprocessing code.
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
from lambdaforge.recipes.declared import DIGITS
from lambdaforge.recipes.errors import DataError
from lambdaforge.recipes.hparams import Bounds

if TYPE_CHECKING:
    import torch

PIXELS = [f"p{i}" for i in range(64)]
LABELS = tuple(str(i) for i in range(10))


def _build(num_labels: int, dropout: float) -> torch.nn.Module:
    import torch
    from torch import nn

    class DigitsCNN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(),
                nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(),
                nn.MaxPool2d(2),
                nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(),
            )
            self.head = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(64 * 4 * 4, 128), nn.ReLU(),
                                      nn.Linear(128, num_labels))

        def forward(self, pixels: torch.Tensor) -> torch.Tensor:
            return self.head(self.features(pixels / 16.0))

    torch.manual_seed(0)
    return DigitsCNN()


class DigitsRecipe(Recipe):
    name: ClassVar[str] = "digits"
    min_metric: ClassVar[float] = 0.9  # it reaches ~0.99 in 12 epochs; chance is 0.1
    data_suffixes: ClassVar[tuple[str, ...]] = (".csv",)
    defaults: ClassVar[dict[str, Any]] = DIGITS.defaults  # declared where the trigger reads them (no torch)
    bounds: ClassVar[dict[str, Bounds]] = DIGITS.bounds

    def load_dataset(self, channel: Path, hp: Hyperparameters) -> Dataset:
        files = data_files(channel, self.data_suffixes)
        rows = read_csv_rows(files, ("label", *PIXELS))
        pixels = np.empty((len(rows), 64), dtype=np.float32)
        labels = np.empty(len(rows), dtype=np.int64)
        splits: list[str | None] = []
        for i, (path, line, row) in enumerate(rows):
            try:
                pixels[i] = [float(row[p]) for p in PIXELS]
                label = int(row["label"])
            except (TypeError, ValueError) as exc:
                raise DataError(f"{path}:{line}: a value is not a number ({exc})") from exc
            if label not in range(10):
                raise DataError(f"{path}:{line}: label {label} is not a digit 0-9")
            if not np.all(np.isfinite(pixels[i])) or pixels[i].min() < 0 or pixels[i].max() > 16:
                raise DataError(f"{path}:{line}: pixel values must be between 0 and 16")
            labels[i] = label
            split = row.get("split") or None
            if split not in (None, "train", "test"):
                raise DataError(f"{path}:{line}: split must be 'train' or 'test', not {split!r}")
            splits.append(split)
        if len(set(labels.tolist())) < 2:
            raise DataError(f"{files[0]}: the data has fewer than two classes")
        train, test = split_rows(list(range(len(rows))), labels.tolist(), splits, seed=hp.seed)
        images = pixels.reshape(-1, 1, 8, 8)
        return Dataset(
            train_inputs={"pixels": images[train]}, train_labels=labels[train],
            test_inputs={"pixels": images[test]}, test_labels=labels[test],
            labels=LABELS, version=hp.dataset_version or content_version(files),
        )

    def write_sample_data(self, out_dir: Path) -> Path:
        from sklearn.datasets import load_digits

        digits = load_digits()
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / "digits.csv"
        with path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["label", *PIXELS])
            for image, label in zip(digits.data, digits.target, strict=True):
                writer.writerow([int(label), *(int(v) for v in image)])
        return path

    def build_model(self, num_labels: int, hp: Hyperparameters) -> torch.nn.Module:
        return _build(num_labels, float(hp.get("dropout")))

    def augment(self, inputs: list[torch.Tensor], generator: torch.Generator,
                hp: Hyperparameters) -> list[torch.Tensor]:
        """Shift each image by up to one pixel; handwriting is rarely centred the same way twice."""
        import torch

        (pixels,) = inputs
        if not hp.get("augment"):
            return inputs
        padded = torch.nn.functional.pad(pixels, (1, 1, 1, 1))
        shifts = torch.randint(0, 3, (pixels.shape[0], 2), generator=generator)
        out = torch.empty_like(pixels)
        for i, (dy, dx) in enumerate(shifts.tolist()):
            out[i] = padded[i, :, dy:dy + 8, dx:dx + 8]
        return [out]

    def input_specs(self) -> tuple[TensorSpec, ...]:
        return (TensorSpec(name="pixels", dtype="float32", shape=("batch", 1, 8, 8)),)

    def preprocessing(self) -> Preprocessing:
        return Preprocessing(kind="tensor")

    def limits(self) -> InputLimits:
        return InputLimits(max_batch=64, value_min=0.0, value_max=16.0)

    def example_inputs(self, batch: int, seed: int, *, sequence: int | None = None) -> Arrays:
        rng = np.random.default_rng(seed)
        return {"pixels": np.round(rng.uniform(0, 16, size=(batch, 1, 8, 8))).astype(np.float32)}



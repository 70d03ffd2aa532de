"""The recipe interface: what a user writes to bring their own model.

A recipe builds the torch module, reads its dataset from a channel folder, says what the
model's inputs look like (for export, validation and serving) and how to score it. The
training harness, export, quantization and serving are generic over it.
"""

from __future__ import annotations

import csv
import hashlib
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from lambdaforge.artifact.manifest import InputLimits, Preprocessing, TensorSpec
from lambdaforge.recipes.errors import DataError
from lambdaforge.recipes.hparams import Bounds, Hyperparameters

if TYPE_CHECKING:
    import torch

Arrays = dict[str, np.ndarray]


@dataclass(frozen=True)
class Dataset:
    """A recipe's data, already turned into model inputs (numpy, so it can be saved as is)."""

    train_inputs: Arrays
    train_labels: np.ndarray
    test_inputs: Arrays
    test_labels: np.ndarray
    labels: tuple[str, ...]
    version: str

    def __post_init__(self) -> None:
        for split, inputs, labels in (("train", self.train_inputs, self.train_labels),
                                      ("test", self.test_inputs, self.test_labels)):
            if len(labels) == 0:
                raise DataError(f"the {split} split is empty")
            for name, arr in inputs.items():
                if len(arr) != len(labels):
                    raise DataError(f"{split} input {name} has {len(arr)} rows but {len(labels)} labels")


class Recipe(ABC):
    """Subclass this, set `name`, and register it (entry point `lambdaforge.recipes` or `module:Class`)."""

    name: ClassVar[str]
    data_suffixes: ClassVar[tuple[str, ...]] = (".csv",)
    #: Overrides of the common hyperparameters and the recipe's own ones, with their defaults.
    defaults: ClassVar[dict[str, Any]] = {}
    #: Ranges of the recipe's own numeric hyperparameters (the common ones have theirs: COMMON_BOUNDS).
    bounds: ClassVar[dict[str, Bounds]] = {}

    # --- data
    @abstractmethod
    def load_dataset(self, channel: Path, hp: Hyperparameters) -> Dataset:
        """Read the training channel folder (every file with an allowed suffix) into a Dataset."""

    @abstractmethod
    def write_sample_data(self, out_dir: Path) -> Path:
        """Write the dataset that ships with the recipe (for demos and tests); returns the file."""

    # --- model
    @abstractmethod
    def build_model(self, num_labels: int, hp: Hyperparameters) -> torch.nn.Module:
        """A module whose forward takes the inputs in `input_specs` order and returns logits."""

    @abstractmethod
    def input_specs(self) -> tuple[TensorSpec, ...]:
        """Model inputs with symbolic dims ('batch', 'sequence') for the dynamic axes."""

    @abstractmethod
    def preprocessing(self) -> Preprocessing:
        """How the runtime turns a request into inputs (tensor as is, or tokenized text)."""

    def limits(self) -> InputLimits:
        return InputLimits()

    def assets(self) -> dict[str, Path]:
        """Files to copy into the model directory (name there -> source), e.g. tokenizer.json."""
        return {}

    @abstractmethod
    def example_inputs(self, batch: int, seed: int, *, sequence: int | None = None) -> Arrays:
        """Valid random inputs of the given batch (and sequence) size, for export and parity checks."""

    def augment(self, inputs: list[torch.Tensor], generator: torch.Generator,
                hp: Hyperparameters) -> list[torch.Tensor]:
        """Training-time augmentation of one batch (inputs in `input_specs` order); none by default."""
        return inputs

    def trainable_parameters(self, model: torch.nn.Module) -> Iterator[torch.nn.Parameter]:
        return (p for p in model.parameters() if p.requires_grad)

    # --- scoring
    primary_metric: ClassVar[str] = "accuracy"
    #: The pipeline never promotes a model below this (MIN_ACCURACY can only raise it). Not 0: a model
    #: trained on broken data (shuffled labels, a diverged run) must fail somewhere even on the first run.
    min_metric: ClassVar[float] = 0.5

    def metric(self, logits: np.ndarray, labels: np.ndarray) -> float:
        """Higher is better; the quantization gate compares this between fp32 and INT8."""
        return float((np.argmax(logits, axis=-1) == labels).mean())


# --- helpers recipes share


def data_files(channel: Path, suffixes: tuple[str, ...]) -> list[Path]:
    """The dataset files in a channel folder (or the channel itself if it is a file)."""
    channel = Path(channel)
    if channel.is_file():
        files = [channel]
    elif channel.is_dir():
        files = sorted(p for p in channel.rglob("*") if p.is_file() and not p.name.startswith((".", "_")))
    else:
        raise DataError(f"{channel}: the data channel does not exist")
    bad = [p for p in files if p.suffix.lower() not in suffixes]
    if bad:
        raise DataError(f"{bad[0]}: unsupported file type (expected {', '.join(suffixes)})")
    if not files:
        raise DataError(f"{channel}: no data files (expected {', '.join(suffixes)})")
    return files


def content_version(files: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def read_csv_rows(files: list[Path], required: tuple[str, ...]) -> list[tuple[Path, int, dict[str, str]]]:
    """Rows of every CSV file, each with its file and line for error messages."""
    rows: list[tuple[Path, int, dict[str, str]]] = []
    for path in files:
        try:
            with path.open(newline="", encoding="utf-8") as fh:
                reader = csv.DictReader(fh)
                header = reader.fieldnames or []
                missing = [c for c in required if c not in header]
                if missing:
                    raise DataError(f"{path}: missing column(s) {', '.join(missing)} (header is {header})")
                for row in reader:
                    if None in row:  # more cells than header columns
                        raise DataError(f"{path}:{reader.line_num}: more values than columns in the header")
                    rows.append((path, reader.line_num, row))
        except UnicodeDecodeError as exc:
            raise DataError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
        except csv.Error as exc:
            raise DataError(f"{path}: not valid CSV ({exc})") from exc
    if not rows:
        raise DataError(f"{files[0]}: no rows")
    return rows


def split_rows(rows: list[Any], labels: list[Any], splits: list[str | None], test_fraction: float = 0.2,
               seed: int = 0) -> tuple[list[int], list[int]]:
    """Indices of train and test rows: the file's `split` column when given, else a fixed stratified split."""
    if all(s is not None for s in splits):
        train = [i for i, s in enumerate(splits) if s == "train"]
        test = [i for i, s in enumerate(splits) if s == "test"]
        return train, test
    from sklearn.model_selection import train_test_split

    idx = list(range(len(rows)))
    try:
        train, test = train_test_split(idx, test_size=test_fraction, random_state=seed, stratify=labels)
    except ValueError as exc:
        raise DataError(f"cannot make a stratified train/test split: {exc}") from exc
    return sorted(train), sorted(test)

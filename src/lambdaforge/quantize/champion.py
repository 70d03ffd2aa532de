"""Champion/challenger: the model alias `live` serves, scored beside the candidate on two row sets.

Against fp32 alone, a model trained on bad data (shuffled labels, a broken learning rate) passes:
it only has to match itself. So every candidate, the fp32 fallback included, is also scored
against what serves now, with onnxruntime (the quantize function has no torch), on the same rows:
the candidate's own held-out rows, and the live model's. The candidate's rows come from the upload
(which may choose its own test split), so they cannot be trusted alone: labels swapped consistently
in train and test, or training rows copied into the test split, make the candidate look better than
live there. The live model's rows were gated when it went live, and travel in its verified directory.

A candidate whose contract differs from live's (labels, inputs, tokenizer, primary metric) cannot be
compared at all, and is refused unless the operator opts in (ALLOW_CONTRACT_CHANGE).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lambdaforge.artifact.manifest import Manifest
from lambdaforge.artifact.modeldir import ModelDir
from lambdaforge.onnxsession import open_session, predict_batched
from lambdaforge.quantize.errors import QuantizationError

Arrays = dict[str, np.ndarray]


@dataclass(frozen=True)
class LiveModel:
    """The live model's verified directory and the name it answers with (e.g. `digits-v3`)."""

    model_dir: ModelDir
    name: str


@dataclass(frozen=True)
class LiveGate:
    """What a pipeline run adds to the fp32 gate: the live model (None before the first promotion)
    and where the floor came from, for the report."""

    live: LiveModel | None
    floor_source: str = ""
    allow_contract_change: bool = False  # ship a model whose contract differs from live's (floor only)


@dataclass(frozen=True)
class LiveScore:
    """The live model on one row set: its metric and its predictions in the candidate's label indices."""

    name: str
    metric: float
    pred: np.ndarray

    def delta(self, metric: float) -> float:
        return metric - self.metric

    def agreement(self, pred: np.ndarray) -> float:
        return float((pred == self.pred).mean())


def _specs(manifest: Manifest) -> list[tuple[str, str, tuple[object, ...]]]:
    return sorted((s.name, s.dtype, tuple(s.shape)) for s in manifest.inputs)


def _tokenizer_sha(manifest: Manifest) -> str | None:
    name = manifest.preprocessing.tokenizer
    return manifest.files.get(name) if name else None


def incomparable(candidate: Manifest, live: Manifest) -> str | None:
    """Why the live model cannot be scored on the candidate's rows; None when it can.

    Equal label sets are compared by label name (the order may differ). A different label set (or
    inputs, tokenizer, primary metric) is a new contract: the gate refuses it unless the operator
    opted in (`LiveGate.allow_contract_change`), and then only the floor applies.
    """
    if live.recipe != candidate.recipe:
        return f"the live model is for recipe {live.recipe!r}, the candidate for {candidate.recipe!r}"
    if live.primary_metric != candidate.primary_metric:
        return f"the primary metrics differ (live {live.primary_metric!r}, candidate {candidate.primary_metric!r})"
    if sorted(live.labels) != sorted(candidate.labels):
        added, removed = sorted(set(candidate.labels) - set(live.labels)), \
            sorted(set(live.labels) - set(candidate.labels))
        return f"the label set differs from live: added {added}, removed {removed}" + \
            ("" if added or removed else f" (labels {list(candidate.labels)}, live {list(live.labels)})")
    if _specs(live) != _specs(candidate):
        return "the model inputs differ (names, dtypes or shapes)"
    pre_live, pre_cand = live.preprocessing, candidate.preprocessing
    if (pre_live.kind, pre_live.max_tokens, _tokenizer_sha(live)) != \
            (pre_cand.kind, pre_cand.max_tokens, _tokenizer_sha(candidate)):
        return "the preprocessing differs (tokenizer or token limit), so the held-out inputs mean different things"
    return None


def contract_refusal(live_name: str, why: str) -> str:
    """The gate's reason for refusing a candidate whose contract differs from live's."""
    return (f"not comparable with the live model {live_name}: {why}; a model with a new contract must be promoted "
            "deliberately (set ALLOW_CONTRACT_CHANGE=true, template parameter AllowContractChange)")


@dataclass(frozen=True)
class Holdout:
    """The live model's own held-out rows, labels in the candidate's indices, and the live model's score there.

    These rows are the trusted ones: the uploader of the candidate did not choose them."""

    inputs: Arrays
    labels: np.ndarray
    live: LiveScore

    @property
    def rows(self) -> str:
        return f"the live model {self.live.name}'s {len(self.labels)} held-out rows"


def to_candidate_labels(live: LiveModel, candidate: Manifest, labels: np.ndarray) -> np.ndarray:
    """The live model's eval labels (indices into its labels) as indices into the candidate's, matched by name."""
    names = live.model_dir.manifest.labels
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer) or \
            (labels.size and (labels.min() < 0 or labels.max() >= len(names))):
        raise QuantizationError(f"the live model {live.name}'s held-out labels are not indices into its "
                                f"{len(names)} labels (shape {labels.shape}, dtype {labels.dtype})")
    index = {label: i for i, label in enumerate(candidate.labels)}
    return np.array([index[label] for label in names], dtype=np.int64)[labels]


def score_live(live: LiveModel, candidate: Manifest, inputs: Arrays, labels: np.ndarray,
               rows: str = "the candidate's held-out rows") -> LiveScore:
    """Run the live model on held-out inputs (`rows` names them); the caller checked `incomparable` first."""
    manifest = live.model_dir.manifest
    session = open_session(live.model_dir.model_path, error=QuantizationError, what="the live model")
    try:
        logits = predict_batched(session, inputs)
    except Exception as exc:
        raise QuantizationError(f"the live model {live.name} cannot run on {rows}: "
                                f"{type(exc).__name__}: {exc}") from exc
    if logits.ndim != 2 or logits.shape[-1] != len(manifest.labels):
        raise QuantizationError(f"the live model {live.name} answers shape {logits.shape}, "
                                f"not (rows, {len(manifest.labels)} labels)")
    index = {label: i for i, label in enumerate(candidate.labels)}
    to_candidate = np.array([index[label] for label in manifest.labels])
    pred = to_candidate[logits.argmax(-1)]
    return LiveScore(name=live.name, metric=float((pred == labels).mean()), pred=pred)

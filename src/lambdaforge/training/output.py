"""The end of training: the model directory every later stage reads.

Weights (safetensors), model.onnx (fp32, parity-checked), eval and calibration samples,
the recipe's assets, and manifest.json with a sha256 of each file.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lambdaforge.artifact.builder import ModelDirBuilder
from lambdaforge.artifact.manifest import Manifest, TensorSpec, TrainingInfo
from lambdaforge.artifact.modeldir import ModelDir
from lambdaforge.export import ExportError, ParityReport, check_parity, export_onnx
from lambdaforge.onnxsession import open_session, predict_batched
from lambdaforge.recipes.base import Arrays, Dataset, Recipe
from lambdaforge.recipes.hparams import Hyperparameters
from lambdaforge.training.metrics import metric_line

if TYPE_CHECKING:
    import torch

CALIBRATION_ROWS = 128


@dataclass(frozen=True)
class RunInfo:
    """How the model was trained, for the manifest's `training` section."""

    job_name: str
    torch_metric: float
    device: str
    world_size: int
    steps: int
    seconds: float


def onnx_metric(onnx_path: Path, recipe: Recipe, inputs: Arrays, labels: np.ndarray) -> float:
    session = open_session(onnx_path, error=ExportError, threads=0, what="the exported model")
    return recipe.metric(predict_batched(session, inputs), labels)


def _export(builder: ModelDirBuilder, model: torch.nn.Module, recipe: Recipe) -> ParityReport:
    from safetensors.torch import save_file

    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(builder.path("model.safetensors")))
    t0 = time.time()
    onnx_path = export_onnx(model, recipe, builder.path("model.onnx"))
    parity = check_parity(model, onnx_path, recipe)
    print(metric_line(export_seconds=round(time.time() - t0, 1), parity_max_abs_diff=parity.max_abs_diff), flush=True)
    return parity


def _save_npz(path: Path, arrays: dict[str, Any]) -> None:
    np.savez_compressed(path, **arrays)


def _write_samples(builder: ModelDirBuilder, data: Dataset, seed: int) -> None:
    """The held-out set (the quantization gate's yardstick) and calibration rows from the training split."""
    _save_npz(builder.path("eval.npz"), {"labels": data.test_labels, **data.test_inputs})
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(data.train_labels), size=min(CALIBRATION_ROWS, len(data.train_labels)),
                              replace=False))
    _save_npz(builder.path("calibration.npz"),
              {"labels": data.train_labels[pick], **{k: v[pick] for k, v in data.train_inputs.items()}})


def write_model_dir(out: Path, *, model: torch.nn.Module, recipe: Recipe, data: Dataset, hp: Hyperparameters,
                    run: RunInfo) -> ModelDir:
    import torch

    builder = ModelDirBuilder(out)
    model = model.cpu().float().eval()
    parity = _export(builder, model, recipe)
    _write_samples(builder, data, hp.seed)
    builder.add_all(recipe.assets())
    onnx_value = onnx_metric(out / "model.onnx", recipe, data.test_inputs, data.test_labels)
    metric = recipe.primary_metric
    return builder.finish(Manifest(
        recipe=recipe.name,
        inputs=recipe.input_specs(),
        outputs=(TensorSpec(name="logits", dtype="float32", shape=("batch", len(data.labels))),),
        labels=data.labels,
        preprocessing=recipe.preprocessing(),
        limits=recipe.limits(),
        primary_metric=metric,
        metrics={
            metric: round(onnx_value, 6),
            f"torch_{metric}": round(run.torch_metric, 6),
            "parity_max_abs_diff": parity.max_abs_diff,
            "test_rows": float(len(data.test_labels)),
            "train_rows": float(len(data.train_labels)),
        },
        weights_file="model.safetensors",
        eval_file="eval.npz",
        calibration_file="calibration.npz",
        assets=tuple(recipe.assets()),
        training=TrainingInfo(
            recipe=recipe.name, job_name=run.job_name, dataset_version=data.version,
            hyperparameters=hp.recorded(), device=run.device, world_size=run.world_size, steps=run.steps,
            epochs=hp.epochs, seconds=round(run.seconds, 2), torch_version=torch.__version__,
        ),
    ))

"""The end of training: the model directory every later stage reads.

Weights (safetensors), model.onnx (fp32, parity-checked), eval and calibration samples,
the recipe's assets, and manifest.json with a sha256 of each file.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lambdaforge.artifact.manifest import Manifest, TensorSpec, TrainingInfo
from lambdaforge.artifact.modeldir import write_manifest
from lambdaforge.export import check_parity, export_onnx
from lambdaforge.recipes.base import Arrays, Dataset, Hyperparameters, Recipe

if TYPE_CHECKING:
    import torch

CALIBRATION_ROWS = 128


def _save_npz(path: Path, arrays: dict[str, Any]) -> None:
    np.savez_compressed(path, **arrays)


def onnx_metric(onnx_path: Path, recipe: Recipe, inputs: Arrays, labels: np.ndarray, batch: int = 64) -> float:
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    names = [s.name for s in recipe.input_specs()]
    logits = [session.run(None, {n: inputs[n][i:i + batch] for n in names})[0] for i in range(0, len(labels), batch)]
    return recipe.metric(np.concatenate(logits), labels)


def write_model_dir(out: Path, *, model: torch.nn.Module, recipe: Recipe, data: Dataset, hp: Hyperparameters,
                    job_name: str, torch_metric: float, device: str, world_size: int, steps: int,
                    seconds: float) -> Manifest:
    import torch
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    model = model.cpu().float().eval()
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / "model.safetensors"))

    t0 = time.time()
    export_onnx(model, recipe, out / "model.onnx")
    parity = check_parity(model, out / "model.onnx", recipe)
    print(f"[lambdaforge] exported model.onnx in {time.time() - t0:.1f}s "
          f"parity_max_abs_diff={parity.max_abs_diff:.3g}", flush=True)

    _save_npz(out / "eval.npz", {"labels": data.test_labels, **data.test_inputs})
    rng = np.random.default_rng(hp.seed)
    pick = np.sort(rng.choice(len(data.train_labels), size=min(CALIBRATION_ROWS, len(data.train_labels)),
                              replace=False))
    _save_npz(out / "calibration.npz",
              {"labels": data.train_labels[pick], **{k: v[pick] for k, v in data.train_inputs.items()}})
    for name, src in recipe.assets().items():
        shutil.copyfile(src, out / name)

    onnx_value = onnx_metric(out / "model.onnx", recipe, data.test_inputs, data.test_labels)
    metric = recipe.primary_metric
    manifest = Manifest(
        recipe=recipe.name,
        inputs=recipe.input_specs(),
        outputs=(TensorSpec(name="logits", dtype="float32", shape=("batch", len(data.labels))),),
        labels=data.labels,
        preprocessing=recipe.preprocessing(),
        limits=recipe.limits(),
        primary_metric=metric,
        metrics={
            metric: round(onnx_value, 6),
            f"torch_{metric}": round(torch_metric, 6),
            "parity_max_abs_diff": parity.max_abs_diff,
            "test_rows": float(len(data.test_labels)),
            "train_rows": float(len(data.train_labels)),
        },
        weights_file="model.safetensors",
        eval_file="eval.npz",
        calibration_file="calibration.npz",
        assets=tuple(recipe.assets()),
        training=TrainingInfo(
            recipe=recipe.name, job_name=job_name, dataset_version=data.version,
            hyperparameters={"epochs": hp.epochs, "batch_size": hp.batch_size, "lr": hp.lr, "seed": hp.seed,
                             **hp.extra},
            device=device, world_size=world_size, steps=steps, epochs=hp.epochs, seconds=round(seconds, 2),
            torch_version=torch.__version__,
        ),
    )
    return write_manifest(out, manifest)

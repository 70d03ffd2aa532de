"""Re-export a trained model directory from its weights (e.g. for another opset)."""

from __future__ import annotations

import shutil
from pathlib import Path

from lambdaforge.artifact.manifest import Manifest
from lambdaforge.artifact.modeldir import open_model_dir, write_manifest
from lambdaforge.export.errors import ExportError
from lambdaforge.export.onnx_export import ParityReport, check_parity, export_onnx
from lambdaforge.recipes import get_recipe
from lambdaforge.training.hparams import parse_hyperparameters


def reexport(model_dir: Path, out: Path, *, opset: int) -> tuple[Manifest, ParityReport]:
    from safetensors.torch import load_file

    md = open_model_dir(model_dir)
    manifest = md.manifest
    if not manifest.weights_file:
        raise ExportError(f"{md.path}: no weights in this model directory (a quantized one?); export needs them")
    recipe = get_recipe(manifest.recipe)
    known = set(recipe.defaults) | {"epochs", "batch_size", "lr", "seed"}
    hp = parse_hyperparameters(recipe, {k: v for k, v in manifest.training.hyperparameters.items() if k in known})
    model = recipe.build_model(len(manifest.labels), hp)
    try:
        model.load_state_dict(load_file(str(md.file(manifest.weights_file))))
    except RuntimeError as exc:
        raise ExportError(f"{md.file(manifest.weights_file)}: weights do not fit recipe {recipe.name!r}: {exc}") \
            from exc
    out.mkdir(parents=True, exist_ok=True)
    for rel in manifest.files:
        if rel != manifest.model_file:
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(md.path / rel, out / rel)
    export_onnx(model, recipe, out / manifest.model_file, opset=opset)
    parity = check_parity(model, out / manifest.model_file, recipe)
    metrics = {**manifest.metrics, "parity_max_abs_diff": parity.max_abs_diff}
    return write_manifest(out, manifest.model_copy(update={"metrics": metrics})), parity

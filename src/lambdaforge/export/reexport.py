"""Re-export a trained model directory from its weights (e.g. for another opset)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lambdaforge.artifact.builder import ModelDirBuilder
from lambdaforge.artifact.modeldir import ModelDir
from lambdaforge.export.errors import ExportError
from lambdaforge.export.onnx_export import ParityReport, check_parity, export_onnx
from lambdaforge.recipes import get_recipe
from lambdaforge.recipes.hparams import from_recorded


@dataclass(frozen=True)
class Reexported:
    model_dir: ModelDir
    parity: ParityReport


def reexport(md: ModelDir, out: Path, *, opset: int | None = None) -> Reexported:
    """A new model directory with model.onnx exported again from the weights of a verified one."""
    from safetensors.torch import load_file

    manifest = md.manifest
    if not manifest.weights_file:
        raise ExportError(f"{md.path}: no weights in this model directory (a quantized one?); export needs them")
    recipe = get_recipe(manifest.recipe)
    model = recipe.build_model(len(manifest.labels), from_recorded(recipe, manifest.training.hyperparameters))
    try:
        model.load_state_dict(load_file(str(md.file(manifest.weights_file))))
    except RuntimeError as exc:
        raise ExportError(f"{md.file(manifest.weights_file)}: weights do not fit recipe {recipe.name!r}: {exc}") \
            from exc
    builder = ModelDirBuilder(out)
    builder.carry(md, [rel for rel in manifest.files if rel != manifest.model_file])
    onnx_path = export_onnx(model, recipe, builder.path(manifest.model_file), opset=opset)
    parity = check_parity(model, onnx_path, recipe)
    metrics = {**manifest.metrics, "parity_max_abs_diff": parity.max_abs_diff}
    return Reexported(builder.finish(manifest.model_copy(update={"metrics": metrics})), parity)

"""Export with the dynamo exporter and check parity against PyTorch on fresh shapes.

Parity is a gate, not a warning: an ONNX model that does not match its PyTorch source is
never written out as a model directory.

A model built on a Hugging Face BERT-family encoder is exported with the TorchScript exporter
instead: onnxruntime's transformer optimizer matches its attention subgraph (one fused Attention
per layer) and not the dynamo exporter's. Its geometry goes into the ONNX file's metadata
(`FUSION_KEY`), so quantization, which has no torch, can run the fusions.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from lambdaforge.artifact.manifest import TensorSpec
from lambdaforge.export.errors import ExportError, ParityError
from lambdaforge.onnxsession import open_session
from lambdaforge.recipes.base import Arrays, Recipe

if TYPE_CHECKING:
    import torch

DEFAULT_OPSET = 18
EXPORT_BATCH = 2
EXPORT_SEQUENCE = 16
# Shapes other than the export's, so a graph specialised to the example shape fails here.
PARITY_SHAPES: tuple[tuple[int, int], ...] = ((1, 9), (3, 37), (7, 5))
_DIM_RANGES = {"batch": (1, 4096), "sequence": (2, 512)}
TORCHSCRIPT_MAX_OPSET = 17  # what onnxruntime's fusions are tested with
FUSION_KEY = "lambdaforge.fusion"  # ONNX metadata: {"model_type", "num_heads", "hidden_size", "layers"}
# Encoders whose attention onnxruntime's optimizer fuses (onnxruntime.transformers model types).
FUSABLE_ENCODERS = ("bert",)


@dataclass(frozen=True)
class ParityReport:
    max_abs_diff: float
    max_rel_diff: float
    argmax_agreement: float
    shapes: tuple[tuple[int, ...], ...]
    atol: float
    rtol: float


def _dynamic_shapes(specs: tuple[TensorSpec, ...]) -> tuple[dict[int, object], ...]:
    from torch.export import Dim

    dims = {name: Dim(name, min=lo, max=hi) for name, (lo, hi) in _DIM_RANGES.items()}
    return tuple({i: dims[d] for i, d in enumerate(spec.shape) if isinstance(d, str)} for spec in specs)


def _tensors(inputs: Arrays, specs: tuple[TensorSpec, ...]) -> tuple[torch.Tensor, ...]:
    import torch

    return tuple(torch.from_numpy(np.ascontiguousarray(inputs[s.name])) for s in specs)


def fusion_geometry(model: torch.nn.Module) -> dict[str, object] | None:
    """The transformer geometry onnxruntime's optimizer needs, when `model` holds a fusable HF encoder."""
    for module in model.modules():
        config = getattr(module, "config", None)
        kind = getattr(config, "model_type", None)
        if kind in FUSABLE_ENCODERS:
            return {"model_type": kind, "num_heads": int(config.num_attention_heads),  # type: ignore[union-attr]
                    "hidden_size": int(config.hidden_size),  # type: ignore[union-attr]
                    "layers": int(config.num_hidden_layers)}  # type: ignore[union-attr]
    return None


def export_onnx(model: torch.nn.Module, recipe: Recipe, out_path: Path, *, opset: int | None = None) -> Path:
    """Write `out_path` as one self-contained ONNX file with dynamic batch (and sequence) axes, at `opset`
    (None: DEFAULT_OPSET, or TORCHSCRIPT_MAX_OPSET for an encoder)."""
    import torch

    specs = recipe.input_specs()
    model = model.eval()
    example = recipe.example_inputs(EXPORT_BATCH, seed=0, sequence=EXPORT_SEQUENCE)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    geometry = fusion_geometry(model)
    exporter = "torchscript" if geometry else "dynamo"
    if geometry and opset is not None and opset > TORCHSCRIPT_MAX_OPSET:
        raise ExportError(f"opset {opset}: recipe {recipe.name!r} has a {geometry['model_type']} encoder, exported "
                          f"with the TorchScript exporter so onnxruntime can fuse its attention; its opset is at "
                          f"most {TORCHSCRIPT_MAX_OPSET}")
    opset = opset or (TORCHSCRIPT_MAX_OPSET if geometry else DEFAULT_OPSET)
    names = [s.name for s in specs]
    sink = io.StringIO()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(sink), torch.no_grad():
            warnings.simplefilter("ignore")
            logging.getLogger("torch.onnx").setLevel(logging.ERROR)
            if geometry:
                axes: dict[str, dict[int, str]] = {
                    s.name: {i: d for i, d in enumerate(s.shape) if isinstance(d, str)} for s in specs}
                axes["logits"] = {0: "batch"}
                torch.onnx.export(
                    model, _tensors(example, specs), str(out_path), dynamo=False, input_names=names,
                    output_names=["logits"], dynamic_axes=axes,
                    opset_version=opset, do_constant_folding=True,
                )
            else:
                torch.onnx.export(
                    model,
                    _tensors(example, specs),
                    str(out_path),
                    dynamo=True,
                    input_names=names,
                    output_names=["logits"],
                    dynamic_shapes=_dynamic_shapes(specs),
                    opset_version=opset,
                    external_data=False,
                    optimize=True,
                    verbose=False,
                )
    except Exception as exc:
        raise ExportError(f"torch.onnx.export ({exporter}) failed for recipe {recipe.name!r}: {exc}") from exc
    if not out_path.is_file():
        raise ExportError(f"{out_path}: the exporter reported success but wrote no file")
    _strip_value_info(out_path, geometry)
    return out_path


def _strip_value_info(path: Path, geometry: dict[str, object] | None = None) -> None:
    """Drop intermediate shape annotations (onnxruntime's quantizer re-infers them and trips over stale
    ones) and record the encoder geometry for the fusions."""
    import onnx

    model = onnx.load(str(path))
    if len(model.graph.value_info) or geometry:
        del model.graph.value_info[:]
        if geometry:
            onnx.helper.set_model_props(model, {FUSION_KEY: json.dumps(geometry, sort_keys=True)})
        onnx.save(model, str(path))


def check_parity(model: torch.nn.Module, onnx_path: Path, recipe: Recipe, *, atol: float = 1e-4,
                 rtol: float = 1e-3, shapes: tuple[tuple[int, int], ...] = PARITY_SHAPES) -> ParityReport:
    """Run PyTorch and onnxruntime on fresh random inputs; raise ParityError beyond tolerance."""
    import torch

    specs = recipe.input_specs()
    session = open_session(onnx_path, error=ExportError, what="the exported model")
    model = model.eval()
    worst_abs = worst_rel = 0.0
    agree = total = 0
    seen: list[tuple[int, ...]] = []
    for i, (batch, seq) in enumerate(shapes):
        inputs = recipe.example_inputs(batch, seed=1000 + i, sequence=seq)
        with torch.no_grad():
            ref = model(*_tensors(inputs, specs)).float().cpu().numpy()
        got = session.run(None, {s.name: inputs[s.name] for s in specs})[0]
        shape = tuple(inputs[specs[0].name].shape)
        seen.append(shape)
        if got.shape != ref.shape:
            raise ParityError(f"{onnx_path}: ONNX output shape {got.shape} != PyTorch {ref.shape} for input {shape}")
        diff = np.abs(got - ref)
        abs_diff = float(diff.max())
        rel_diff = float((diff / (np.abs(ref) + 1e-12)).max())
        worst_abs, worst_rel = max(worst_abs, abs_diff), max(worst_rel, rel_diff)
        agree += int((got.argmax(-1) == ref.argmax(-1)).sum())
        total += ref.shape[0]
        bound = atol + rtol * float(np.abs(ref).max())
        if not np.isfinite(got).all() or abs_diff > bound:
            raise ParityError(
                f"{onnx_path}: ONNX differs from PyTorch on input shape {shape}: max |diff| {abs_diff:.3g} "
                f"> allowed {bound:.3g} (atol {atol:g} + rtol {rtol:g} x max |ref| {float(np.abs(ref).max()):.3g}); "
                f"max relative diff {rel_diff:.3g}"
            )
    return ParityReport(max_abs_diff=worst_abs, max_rel_diff=worst_rel, argmax_agreement=agree / max(total, 1),
                        shapes=tuple(seen), atol=atol, rtol=rtol)


def onnx_opset(path: Path) -> int:
    """The default-domain opset a written ONNX file declares."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return next((int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)

"""Export parity as a hard gate, and quantization behind the accuracy gate."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from lambdaforge.artifact import ChecksumMismatchError, open_model_dir
from lambdaforge.export import ExportError, ParityError, check_parity, export_onnx
from lambdaforge.quantize import QuantizationError, from_mode, quantize_model_dir
from lambdaforge.recipes import get_recipe
from lambdaforge.recipes.hparams import parse_hyperparameters


def test_parity_failure_stops_with_the_numbers(tmp_path: Path) -> None:
    import torch

    recipe = get_recipe("digits")
    model = recipe.build_model(10, parse_hyperparameters(recipe, {}))
    path = export_onnx(model, recipe, tmp_path / "model.onnx")
    assert check_parity(model, path, recipe).max_abs_diff < 1e-4
    with torch.no_grad():  # the torch model changes after export: the ONNX file is stale
        model.head[-1].bias += 0.5
    with pytest.raises(ParityError) as err:
        check_parity(model, path, recipe)
    message = str(err.value)
    assert "max |diff|" in message and "allowed" in message and "input shape (1, 1, 8, 8)" in message


def test_the_exported_graph_has_dynamic_axes(text_model: Path) -> None:
    import onnx

    graph = onnx.load(str(text_model / "model.onnx")).graph
    dims = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in graph.input}
    assert dims["input_ids"][0] == dims["attention_mask"][0] == "batch"
    assert dims["input_ids"][1] == dims["attention_mask"][1] == "sequence"


def test_auto_quantization_of_digits_passes_the_gate(digits_model: Path, digits_int8: Path) -> None:
    report = json.loads((digits_int8 / "quantization_report.json").read_text())
    assert report["gate_passed"] is True
    names = {c["name"] for c in report["candidates"]}
    assert {"dynamic", "static"} <= names
    chosen = report["chosen"]
    assert chosen in names | {"fp32"}
    _never_measurably_slower_than_fp32(report)
    md = open_model_dir(digits_int8)
    assert md.manifest.quantization is not None and md.manifest.quantization.chosen == chosen
    fp32 = open_model_dir(digits_model).manifest.metrics["accuracy"]
    assert fp32 - md.manifest.metrics["accuracy"] <= 0.005
    if chosen != "fp32":
        assert (digits_int8 / "model.onnx").stat().st_size < (digits_model / "model.onnx").stat().st_size
    assert "model.safetensors" not in md.manifest.files  # the served directory carries no torch weights
    assert (digits_int8 / "quantization_report.md").read_text().startswith("# Quantization report: digits")


def _never_measurably_slower_than_fp32(report: dict[str, Any]) -> None:
    """auto's promise: what ships is not measurably slower than fp32; fp32 ships only when every passing INT8
    model is (its interval wholly above fp32's)."""
    fp32 = report["fp32"]
    passing = [c for c in report["candidates"] if c["passed"]]
    assert fp32["latency_ms_lo"] <= fp32["latency_ms_p50"] <= fp32["latency_ms_hi"]
    for c in report["candidates"]:
        if c["latency_ms_p50"] is not None:
            assert c["latency_ms_lo"] <= c["latency_ms_p50"] <= c["latency_ms_hi"], c
    if report["chosen"] == "fp32":
        assert all(c["latency_ms_lo"] > fp32["latency_ms_hi"] for c in passing), report["gate_reason"]
    else:
        chosen = next(c for c in report["candidates"] if c["name"] == report["chosen"])
        assert chosen["latency_ms_lo"] <= fp32["latency_ms_hi"], report["gate_reason"]


def test_minilm_fuses_to_one_attention_per_layer(text_model: Path, tmp_path: Path) -> None:
    from lambdaforge.quantize import engine

    src = open_model_dir(text_model).model_path
    geometry = engine.fusion_geometry(src)
    assert geometry == {"model_type": "bert", "num_heads": 12, "hidden_size": 384, "layers": 6}
    fused = engine.op_counts(engine.fuse_transformer(src, tmp_path / "fused.onnx", geometry))
    assert fused.get("Attention") == 6 and fused.get("Gelu") == 6 and fused.get("EmbedLayerNormalization") == 1, fused
    # onnxruntime's slower kernels are left out (lambdaforge.onnxsession.SLOW_FUSIONS)
    assert "SkipLayerNormalization" not in fused and "BiasGelu" not in fused, fused


def test_a_3_layer_encoder_exports_and_fuses_3_layers(tmp_path: Path) -> None:
    """`encoder_layers=3` keeps MiniLM's first 3 layers: the export records them and the fusions find 3."""
    from lambdaforge.export.onnx_export import onnx_opset
    from lambdaforge.quantize import engine

    recipe = get_recipe("text")
    model = recipe.build_model(4, parse_hyperparameters(recipe, {"encoder_layers": 3}))
    path = export_onnx(model, recipe, tmp_path / "model.onnx")
    assert check_parity(model, path, recipe).argmax_agreement == 1.0
    assert onnx_opset(path) == 17
    geometry = engine.fusion_geometry(path)
    assert geometry is not None and geometry["layers"] == 3
    fused = engine.op_counts(engine.fuse_transformer(path, tmp_path / "fused.onnx", geometry))
    assert fused.get("Attention") == 3 and fused.get("Gelu") == 3, fused
    with pytest.raises(ExportError, match=r"opset 18.*at most 17"):
        export_onnx(model, recipe, tmp_path / "o18.onnx", opset=18)


def test_text_int8_loses_at_most_one_point(text_model: Path, text_int8: Path) -> None:
    fp32 = open_model_dir(text_model).manifest.metrics["accuracy"]
    md = open_model_dir(text_int8)
    assert fp32 >= 0.9
    assert fp32 - md.manifest.metrics["accuracy"] <= 0.01
    quant = md.manifest.quantization
    assert quant is not None and quant.host_isa and quant.scheme
    report = json.loads((text_int8 / "quantization_report.json").read_text())
    _never_measurably_slower_than_fp32(report)
    by_name = {c["name"]: c for c in report["candidates"]}
    # the fused graphs compete, checked against the export; the fused fp32 graph keeps one Attention per layer
    assert by_name["fp32-fused"]["passed"] and by_name["fp32-fused"]["fused_ops"]["Attention"] == 6
    assert by_name["dynamic-fused"]["fused_ops"].get("QAttention") == 6, by_name["dynamic-fused"]
    rows = report["eval_rows"]
    for c in report["candidates"]:  # what passed gives fp32's top-1 on all but 2 % of the rows (one at least)
        if c["passed"]:
            assert round((1 - c["agreement"]) * rows) <= max(1, int(0.02 * rows)), c
    for c in report["candidates"]:  # every INT8 graph was compared on both kernel paths and bounded
        if c["mode"] in ("dynamic", "static") and c["metric"] is not None:
            assert c["exact_agreement"] == 1.0 and c["saturation"].startswith("cannot"), c
            assert -1.0 <= c["cosine_min"] <= c["cosine_mean"] <= 1.0 + 1e-9
    assert md.manifest.preprocessing.tokenizer == "tokenizer.json" and "tokenizer.json" in md.manifest.files


def test_a_failed_gate_writes_the_report_but_no_model(digits_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    report = quantize_model_dir(open_model_dir(digits_model), out, from_mode("static", min_metric=1.0)).report
    assert report.gate_passed is False and report.chosen == "none"
    assert "below the floor" in report.gate_reason
    assert (out / "quantization_report.json").is_file()
    assert not (out / "model.onnx").exists() and not (out / "manifest.json").exists()


def test_a_corrupted_source_is_refused(digits_model: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(digits_model, src)
    with (src / "model.onnx").open("r+b") as fh:
        fh.seek(100)
        byte = fh.read(1)
        fh.seek(100)
        fh.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(ChecksumMismatchError):
        quantize_model_dir(open_model_dir(src), tmp_path / "out")


def test_quantization_never_writes_into_a_non_empty_directory(digits_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("user data")
    with pytest.raises(QuantizationError, match="not empty"):
        quantize_model_dir(open_model_dir(digits_model), out)
    assert (out / "keep.txt").read_text() == "user data"

"""Running onnxruntime's quantizers and measuring candidates on the artifact's samples."""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from lambdaforge.quantize.config import DynamicQuantConfig, StaticQuantConfig

Arrays = dict[str, np.ndarray]


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """onnxruntime.quantization logs advice through the root logger; keep our output readable."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)


def _qtype(name: str) -> Any:
    from onnxruntime.quantization import QuantType

    return QuantType.QInt8 if name == "int8" else QuantType.QUInt8


def fuse_transformer(src: Path, dst: Path) -> Path:
    """onnxruntime's transformer graph fusions (LayerNorm, Gelu, attention where the pattern matches)."""
    from onnxruntime.transformers import optimizer

    with _quiet():
        model = optimizer.optimize_model(str(src), model_type="bert", num_heads=0, hidden_size=0, opt_level=1)
        model.save_model_to_file(str(dst))
    return dst


def quantize_dynamic(src: Path, dst: Path, cfg: DynamicQuantConfig) -> Path:
    import onnx
    from onnxruntime.quantization import quantize_dynamic as ort_quantize_dynamic

    with _quiet():
        ort_quantize_dynamic(
            str(src), str(dst), per_channel=cfg.per_channel, weight_type=_qtype(cfg.weight_type),
            op_types_to_quantize=list(cfg.op_types) or None, nodes_to_exclude=list(cfg.nodes_to_exclude) or None,
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    return dst


class _Reader:
    """onnxruntime's CalibrationDataReader protocol over the calibration samples, one row at a time."""

    def __init__(self, inputs: Arrays, rows: int) -> None:
        n = len(next(iter(inputs.values())))
        self._rows = iter([{k: v[i:i + 1] for k, v in inputs.items()} for i in range(min(rows, n))])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._rows, None)

    def rewind(self) -> None:  # part of the protocol; not needed for one pass
        return None


def quantize_static(src: Path, dst: Path, cfg: StaticQuantConfig, calibration: Arrays) -> Path:
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat
    from onnxruntime.quantization import quantize_static as ort_quantize_static

    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}
    reader = _Reader(calibration, cfg.calibration_rows)
    CalibrationDataReader.register(_Reader)
    with _quiet():
        ort_quantize_static(
            str(src), str(dst), reader, quant_format=QuantFormat.QDQ, per_channel=cfg.per_channel,
            activation_type=_qtype(cfg.activation_type), weight_type=_qtype(cfg.weight_type),
            op_types_to_quantize=list(cfg.op_types) or None, nodes_to_exclude=list(cfg.nodes_to_exclude) or None,
            calibrate_method=methods[cfg.calibration_method],
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    return dst


def quantizable_nodes(path: Path) -> list[str]:
    """Names of nodes the quantizers would touch, in graph order (for excluding the sensitive ones)."""
    import onnx

    model = onnx.load(str(path))
    kinds = {"Conv", "MatMul", "Gemm", "Attention"}
    return [n.name for n in model.graph.node if n.op_type in kinds and n.name]


def sensitive_nodes(path: Path) -> tuple[str, ...]:
    """The first and last quantizable nodes: the input projection and the classifier head,
    where INT8 error hurts most and saves least."""
    nodes = quantizable_nodes(path)
    if len(nodes) <= 2:
        return tuple(nodes)
    return (nodes[0], nodes[-1])

"""INT8 quantization with onnxruntime, behind an accuracy gate against the fp32 model."""

from lambdaforge.quantize.api import Quantized, quantize_model_dir
from lambdaforge.quantize.champion import LiveGate, LiveModel
from lambdaforge.quantize.config import (
    MODES,
    PRESETS,
    AccuracyGate,
    DynamicQuantConfig,
    QuantizeConfig,
    StaticQuantConfig,
    from_mode,
    preset,
)
from lambdaforge.quantize.errors import QuantConfigError, QuantizationError
from lambdaforge.quantize.report import CandidateResult, LiveComparison, QuantizationReport

__all__ = [
    "MODES",
    "PRESETS",
    "AccuracyGate",
    "CandidateResult",
    "DynamicQuantConfig",
    "LiveComparison",
    "LiveGate",
    "LiveModel",
    "QuantConfigError",
    "QuantizationError",
    "QuantizationReport",
    "QuantizeConfig",
    "Quantized",
    "StaticQuantConfig",
    "from_mode",
    "preset",
    "quantize_model_dir",
]

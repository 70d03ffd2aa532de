"""ONNX export (dynamo exporter) with a parity gate against the PyTorch source model."""

from lambdaforge.export.errors import ExportError, ParityError
from lambdaforge.export.onnx_export import ParityReport, check_parity, export_onnx

__all__ = ["ExportError", "ParityError", "ParityReport", "check_parity", "export_onnx"]

"""Errors of the ONNX export."""

from __future__ import annotations

from lambdaforge.errors import LambdaforgeError


class ExportError(LambdaforgeError):
    """torch.onnx.export failed or produced an unusable graph."""


class ParityError(ExportError):
    """The ONNX model's outputs differ from PyTorch's beyond tolerance; the message has the numbers."""

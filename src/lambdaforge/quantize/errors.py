"""Errors of quantization."""

from __future__ import annotations

from lambdaforge.errors import LambdaforgeError


class QuantizationError(LambdaforgeError):
    """Quantization could not run (bad config, unreadable model, missing samples)."""


class QuantConfigError(QuantizationError):
    """A quantization config value is out of range or inconsistent."""

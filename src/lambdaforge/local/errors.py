"""Errors of the local cloud."""

from __future__ import annotations

from lambdaforge.errors import LambdaforgeError


class LocalCloudError(LambdaforgeError):
    """The embedded cloud or a local executor cannot do what was asked."""


class TemplateError(LocalCloudError):
    """template.yaml cannot be read, translated, or resolved locally."""


class FunctionError(LocalCloudError):
    """The function returned an error (API Gateway answers 500)."""

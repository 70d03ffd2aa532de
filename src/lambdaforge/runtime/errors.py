"""Errors of the inference runtime. InvalidInputError maps to HTTP 422 naming the field."""

from __future__ import annotations

from lambdaforge.errors import LambdaforgeError


class RuntimeModelError(LambdaforgeError):
    """The model cannot be found, downloaded, verified or loaded."""


class ModelNotReadyError(RuntimeModelError):
    """No model is configured or promoted yet (HTTP 503, not a crash)."""


class InvalidInputError(LambdaforgeError):
    """A request's input does not fit the model; `field` says where (e.g. instances[2])."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason

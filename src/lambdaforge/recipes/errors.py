"""Errors of recipes and their datasets."""

from __future__ import annotations

from lambdaforge.errors import LambdaforgeError


class RecipeError(LambdaforgeError):
    """A recipe cannot be found or is not a valid recipe."""


class DataError(LambdaforgeError):
    """A dataset file is missing, malformed or unusable; the message names the file (and line)."""


class HyperparameterError(LambdaforgeError):
    """A hyperparameter is unknown or has a value of the wrong type."""

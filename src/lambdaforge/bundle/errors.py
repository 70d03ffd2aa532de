"""Errors of image building and payload measuring."""

from __future__ import annotations

from lambdaforge.errors import LambdaforgeError


class BundleError(LambdaforgeError):
    """A build context or payload cannot be made."""

"""Errors of the cloud commands: each names the problem and the fix."""

from __future__ import annotations

from lambdaforge.errors import LambdaforgeError


class CloudError(LambdaforgeError):
    """A cloud operation cannot proceed."""


class StackNotFoundError(CloudError):
    """The stack (or the local cloud) cannot be found."""


class PreflightError(CloudError):
    """A deploy precondition does not hold; the message says how to fix it."""

"""The root of every error lambdaforge raises on purpose.

Each capability has its own `errors.py` with subclasses; callers that only want to tell
"our error, with a message meant for a person" from a bug catch `LambdaforgeError`.
"""

from __future__ import annotations


class LambdaforgeError(Exception):
    """An expected failure with a message meant for a person (no traceback needed)."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} ({self.hint})"


class ConfigurationError(LambdaforgeError):
    """An environment variable or setting has a value lambdaforge cannot use."""


class ProjectError(LambdaforgeError):
    """The project's files (template.yaml, functions/) cannot be found or read."""


class S3TransferError(LambdaforgeError):
    """An S3 URI, prefix or transfer is not what was expected (no objects, too large, not s3://)."""


class UnsafeKeyError(S3TransferError):
    """An object key would land outside the destination folder (`..`, absolute, backslash)."""


class NoObjectsError(S3TransferError):
    """An s3:// prefix that should hold objects holds none."""


class ObjectExistsError(S3TransferError):
    """An upload that may only write new keys found one already there (versions are never overwritten)."""

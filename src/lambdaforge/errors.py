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

"""Errors of the training harness (their message becomes SageMaker's FailureReason)."""

from __future__ import annotations

from lambdaforge.errors import LambdaforgeError


class TrainingError(LambdaforgeError):
    """Training cannot start or cannot finish."""


class CheckpointError(TrainingError):
    """A checkpoint cannot be written or read."""


class InterruptedTrainingError(TrainingError):
    """SIGTERM arrived (spot reclaim, stop); a checkpoint was saved so a rerun resumes."""

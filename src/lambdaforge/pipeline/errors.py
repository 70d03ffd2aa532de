"""Errors of the retraining pipeline's steps. The workflow's Catch records their message."""

from __future__ import annotations

from lambdaforge.errors import LambdaforgeError


class PipelineError(LambdaforgeError):
    """A pipeline step cannot do its work."""


class UploadRejectedError(PipelineError):
    """An upload does not follow the data convention (recipe, suffix, size); no run starts."""


class ArtifactTooLargeError(PipelineError):
    """The training artifact is larger than the quantize step accepts."""


class CanaryFailedError(PipelineError):
    """A canary alarm fired during rollout; traffic went back to the previous version."""


class PromotionError(PipelineError):
    """The inference function or its alias is not in a state promotion can act on."""

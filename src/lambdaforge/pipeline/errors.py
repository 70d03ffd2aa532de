"""Errors of the retraining pipeline's steps. The workflow's Catch records their message."""

from __future__ import annotations

from lambdaforge.errors import LambdaforgeError


class PipelineError(LambdaforgeError):
    """A pipeline step cannot do its work."""


class UploadRejectedError(PipelineError):
    """An upload does not follow the data convention (recipe, suffix, size); no run starts."""


class ArtifactTooLargeError(PipelineError):
    """The training artifact is larger than the quantize step accepts."""


class EphemeralStorageError(ArtifactTooLargeError):
    """The artifact, unpacked, and the step's outputs would not fit in the function's /tmp (its
    EphemeralStorage); refused before extracting, rather than failing half way with a full disk."""


class CanaryFailedError(PipelineError):
    """A canary alarm fired during rollout; traffic went back to the previous version."""


class CanaryNotSettledError(PipelineError):
    """Finalize was asked before the canary window and the metrics' settle time had passed: CloudWatch may
    not show the window's last minutes yet, so no decision is taken from it (the rollout is aborted)."""


class PromotionError(PipelineError):
    """The inference function or its alias is not in a state promotion can act on."""


class LiveModelError(PipelineError):
    """The registry's live model cannot be fetched or verified, so a candidate cannot be compared with it.

    The step fails rather than skip the comparison: a gate that opens when its reference is missing is no gate."""


class SmokeCheckFailedError(PipelineError):
    """The new version answered its model's own sample request wrongly before any traffic moved to it:
    the rollout stops with alias `live` as it was."""

"""What the workflow sends each step and what the steps answer: one pydantic model per payload.

The infra tests check that every Task's Payload in the state machine has exactly these fields.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

_NAME = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,79}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class QuantizeRequest(_Strict):
    recipe: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,39}$")
    execution: str = Field(pattern=_NAME)
    training_job: str = Field(min_length=1, max_length=63)
    model_artifact: str = Field(pattern=r"^s3://[^/]+/.+\.tar\.gz$")
    dataset_version: str = ""


class QuantizeResult(BaseModel):
    gate_passed: bool
    gate_reason: str
    report_uri: str
    version: int | None = None
    model_uri: str | None = None
    chosen: str | None = None
    metrics: dict[str, float] = Field(default_factory=dict)


class PromoteRequest(_Strict):
    action: Literal["canary", "finalize", "abort", "rollback", "restore"]
    recipe: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,39}$")
    version: int | None = Field(default=None, ge=1)
    execution: str = ""


class RunEnded(BaseModel):
    """EventBridge's "Step Functions Execution Status Change" detail, for a run that ended badly."""

    executionArn: str  # the event's own field names
    stateMachineArn: str
    name: str = Field(pattern=_NAME)
    status: Literal["FAILED", "TIMED_OUT", "ABORTED"]
    input: str | None = None


class ReleaseRequest(_Strict):
    action: Literal["release"]
    recipe: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,39}$")
    execution: str = Field(pattern=_NAME)
    status: Literal["SUCCEEDED", "FAILED"]

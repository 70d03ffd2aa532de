"""What a retraining run (one Step Functions execution) did, in a form any display can show."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class RunProgress:
    """How far a run got: reported while it runs."""

    execution: str
    status: str
    states: list[str]
    started: float  # time.time() when following began
    job: str | None = None  # the training job running now, with its latest metrics
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class RunResult:
    execution: str
    status: str
    states: list[str]
    error: str | None
    seconds: float

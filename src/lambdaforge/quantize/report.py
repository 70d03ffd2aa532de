"""The quantization report: every candidate with its size, latency and metric, and the choice."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field


class CandidateResult(BaseModel):
    name: str
    mode: str
    options: dict[str, Any] = Field(default_factory=dict)
    size_bytes: int | None = None
    latency_ms_p50: float | None = None
    metric: float | None = None
    agreement: float | None = None  # top-1 agreement with fp32 on the held-out set
    drop: float | None = None
    passed: bool = False
    reason: str = ""


class QuantizationReport(BaseModel):
    recipe: str
    primary_metric: str
    requested_mode: str
    gate: dict[str, float]
    source_sha256: str
    eval_rows: int
    fp32: CandidateResult
    candidates: list[CandidateResult]
    chosen: str
    fallback: bool
    gate_passed: bool
    gate_reason: str
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    @property
    def chosen_result(self) -> CandidateResult:
        if self.chosen == "fp32":
            return self.fp32
        return next(c for c in self.candidates if c.name == self.chosen)

    def to_markdown(self) -> str:
        m = self.primary_metric
        lines = [
            f"# Quantization report: {self.recipe}",
            "",
            f"- requested mode: `{self.requested_mode}`; chosen: **{self.chosen}**"
            + (" (fallback)" if self.fallback else ""),
            f"- gate: {'passed' if self.gate_passed else 'FAILED'}: {self.gate_reason}",
            f"- gate bounds: max drop {self.gate['max_drop'] * 100:.2f} points, floor {self.gate['min_metric']:.4f}",
            f"- held-out rows: {self.eval_rows}",
            "",
            f"| candidate | size (MB) | p50 latency (ms, batch 1, 1 thread) | {m} | agreement | drop (points) "
            "| passed | note |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for c in [self.fp32, *self.candidates]:
            size = f"{c.size_bytes / 1e6:.2f}" if c.size_bytes else "-"
            lat = f"{c.latency_ms_p50:.2f}" if c.latency_ms_p50 is not None else "-"
            met = f"{c.metric:.4f}" if c.metric is not None else "-"
            agr = f"{c.agreement:.4f}" if c.agreement is not None else "-"
            drop = f"{c.drop * 100:.2f}" if c.drop is not None else "-"
            lines.append(f"| {c.name} | {size} | {lat} | {met} | {agr} | {drop} | {'yes' if c.passed else 'no'} "
                         f"| {c.reason} |")
        return "\n".join(lines) + "\n"

"""The quantization report: every candidate with its size, latency and metric, and the choice."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

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
    live_delta: float | None = None  # metric minus the live model's, on the same rows (None: not compared)
    live_agreement: float | None = None  # top-1 agreement with the live model on the held-out set
    # the same on the live model's own held-out rows (the trusted ones: the upload did not choose them)
    live_rows_metric: float | None = None
    live_rows_delta: float | None = None
    live_rows_agreement: float | None = None
    passed: bool = False
    reason: str = ""


LiveStatus = Literal["compared", "no-live-model", "not-comparable", "not-checked"]


class LiveComparison(BaseModel):
    """The candidate beside the model alias `live` serves, scored on the candidate's held-out rows
    (`live_metric`, `candidate_metric`, `agreement`) and on the live model's (`*_on_live_rows`)."""

    status: LiveStatus
    note: str
    floor: float
    floor_source: str = ""
    live_version: str | None = None
    live_metric: float | None = None
    candidate: str | None = None  # the model shipped, or fp32 when none was
    candidate_metric: float | None = None
    agreement: float | None = None
    candidate_rows: int | None = None
    live_rows: int | None = None
    live_metric_on_live_rows: float | None = None
    candidate_metric_on_live_rows: float | None = None
    agreement_on_live_rows: float | None = None


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
    live: LiveComparison | None = None
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
            "| vs live (points) | agreement with live | vs live on live's rows (points) | passed | note |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for c in [self.fp32, *self.candidates]:
            size = f"{c.size_bytes / 1e6:.2f}" if c.size_bytes else "-"
            lat = f"{c.latency_ms_p50:.2f}" if c.latency_ms_p50 is not None else "-"
            met = f"{c.metric:.4f}" if c.metric is not None else "-"
            agr = f"{c.agreement:.4f}" if c.agreement is not None else "-"
            drop = f"{c.drop * 100:.2f}" if c.drop is not None else "-"
            vs_live = f"{c.live_delta * 100:+.2f}" if c.live_delta is not None else "-"
            agr_live = f"{c.live_agreement:.4f}" if c.live_agreement is not None else "-"
            vs_live_rows = f"{c.live_rows_delta * 100:+.2f}" if c.live_rows_delta is not None else "-"
            lines.append(f"| {c.name} | {size} | {lat} | {met} | {agr} | {drop} | {vs_live} | {agr_live} "
                         f"| {vs_live_rows} | {'yes' if c.passed else 'no'} | {c.reason} |")
        if self.live is not None:
            lines += ["", *self._live_markdown(self.live)]
        return "\n".join(lines) + "\n"

    def _live_markdown(self, live: LiveComparison) -> list[str]:
        m = self.primary_metric
        lines = ["## Against the live model", "", f"- {live.note}",
                 f"- floor: {live.floor:.4f}" + (f" ({live.floor_source})" if live.floor_source else "")]
        if live.status == "compared":
            cand, champ, agr = _f(live.candidate_metric), _f(live.live_metric), _f(live.agreement)
            cand_l, champ_l = _f(live.candidate_metric_on_live_rows), _f(live.live_metric_on_live_rows)
            agr_l = _f(live.agreement_on_live_rows)
            own = f"the candidate's {_n(live.candidate_rows)}rows"
            theirs = f"the live model's {_n(live.live_rows)}rows"
            lines += ["", f"| model | version | {m} on {own} | {m} on {theirs} | top-1 agreement with the other "
                          f"(on {own}) | top-1 agreement with the other (on {theirs}) |",
                      "|---|---|---|---|---|---|",
                      f"| candidate | {live.candidate} | {cand} | {cand_l} | {agr} | {agr_l} |",
                      f"| live | {live.live_version} | {champ} | {champ_l} | {agr} | {agr_l} |"]
        return lines


def _n(rows: int | None) -> str:
    return f"{rows} " if rows is not None else ""


def _f(value: float | None) -> str:
    return f"{value:.4f}" if value is not None else "-"

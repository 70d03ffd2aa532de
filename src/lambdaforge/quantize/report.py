"""The quantization report: every candidate with its size, latency and metric, and the choice."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field


class CandidateResult(BaseModel):
    name: str
    mode: str
    scheme: str = ""  # fp32, fp32-fused, u8s8-7bit, u8u8, ... (see quantize.config.scheme)
    options: dict[str, Any] = Field(default_factory=dict)
    size_bytes: int | None = None
    latency_ms_p50: float | None = None  # median of the interleaved rounds, batch 1, one thread
    latency_ms_lo: float | None = None  # the median's interval (the report's confidence)
    latency_ms_hi: float | None = None
    metric: float | None = None
    agreement: float | None = None  # top-1 agreement with fp32 on the held-out set
    cosine_mean: float | None = None  # cosine of the logits with fp32's, per held-out row: mean and minimum
    cosine_min: float | None = None
    exact_agreement: float | None = None  # top-1 agreement of the default and exact (U8U8) kernel paths
    exact_max_diff: float | None = None  # their largest logit difference
    # whether the exact path computes differently here at all: only on x86 without VNNI, for weights the
    # saturation bound does not clear (elsewhere both paths are one, and agreement is 1 by construction)
    exact_path_exercised: bool | None = None
    saturation: str | None = None  # whether U8S8 products can saturate int16 on x86 without VNNI
    fused_ops: dict[str, int] = Field(default_factory=dict)  # Attention, SkipLayerNormalization, ...
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
    host_isa: str = ""  # the CPU class that measured and chose (x86-avx2, x86-vnni, x86-amx, arm64-sdot, ...)
    timing: dict[str, float] = Field(default_factory=dict)  # rounds, block, confidence
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
            f"- gate bounds: max drop {self.gate['max_drop'] * 100:.2f} points, floor {self.gate['min_metric']:.4f}"
            + (f", top-1 agreement with fp32 at least {self.gate['min_agreement'] * 100:.2f} %"
               if "min_agreement" in self.gate else ""),
            f"- held-out rows: {self.eval_rows}",
            f"- host CPU class: {self.host_isa or '-'}; latency: median of {int(self.timing.get('rounds', 0))} "
            f"interleaved rounds of {int(self.timing.get('block', 0))} calls, "
            f"{self.timing.get('confidence', 0) * 100:.0f} % interval",
            "",
            f"| candidate | scheme | size (MB) | p50 latency [interval] (ms, batch 1, 1 thread) | {m} | agreement "
            "| logit cosine mean / min | exact-path agreement | fused ops | drop (points) "
            "| vs live (points) | agreement with live | vs live on live's rows (points) | passed | note |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for c in [self.fp32, *self.candidates]:
            size = f"{c.size_bytes / 1e6:.2f}" if c.size_bytes else "-"
            lat = f"{c.latency_ms_p50:.2f}" if c.latency_ms_p50 is not None else "-"
            if c.latency_ms_lo is not None and c.latency_ms_hi is not None:
                lat += f" [{c.latency_ms_lo:.2f}, {c.latency_ms_hi:.2f}]"
            cos = f"{c.cosine_mean:.5f} / {c.cosine_min:.5f}" if c.cosine_mean is not None and \
                c.cosine_min is not None else "-"
            exact = f"{c.exact_agreement:.4f}" if c.exact_agreement is not None else "-"
            fused = ", ".join(f"{k} {v}" for k, v in c.fused_ops.items()) or "-"
            met = f"{c.metric:.4f}" if c.metric is not None else "-"
            agr = f"{c.agreement:.4f}" if c.agreement is not None else "-"
            drop = f"{c.drop * 100:.2f}" if c.drop is not None else "-"
            vs_live = f"{c.live_delta * 100:+.2f}" if c.live_delta is not None else "-"
            agr_live = f"{c.live_agreement:.4f}" if c.live_agreement is not None else "-"
            vs_live_rows = f"{c.live_rows_delta * 100:+.2f}" if c.live_rows_delta is not None else "-"
            lines.append(f"| {c.name} | {c.scheme or '-'} | {size} | {lat} | {met} | {agr} | {cos} | {exact} | {fused} "
                         f"| {drop} | {vs_live} | {agr_live} "
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

"""Quantization configs: frozen dataclasses, validated on construction, with named presets.

`mode` picks the candidates: `dynamic` (INT8 weights, activations quantized at run time;
best for MatMul-heavy transformers), `static` (QDQ per-channel, calibrated on the
artifact's samples; best for conv nets), or `auto` (try them all, with the fused graphs of an
encoder and fp32 itself; keep the smallest that passes the gate and is not measurably slower
than the fastest; fall back to excluding sensitive nodes, then to fp32).

Weights are 7-bit by default (`reduce_range`): x86 CPUs without VNNI add u8 x s8 products in
saturating int16 pairs, which 8-bit weights can overflow and 7-bit ones cannot, so the model
computes the same on AVX2, VNNI, AMX and arm64 (`isa_robust` refuses a graph that could saturate).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

from lambdaforge.quantize.errors import QuantConfigError

Mode = Literal["auto", "dynamic", "static"]
MODES: tuple[Mode, ...] = ("auto", "dynamic", "static")
IntType = Literal["int8", "uint8"]


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise QuantConfigError(message)


@dataclass(frozen=True)
class DynamicQuantConfig:
    per_channel: bool = True
    weight_type: IntType = "int8"
    fuse: bool = False  # run onnxruntime's transformer fusions first (encoders the export marked fusable)
    reduce_range: bool = True  # 7-bit weights: no int16 saturation on x86 without VNNI
    op_types: tuple[str, ...] = ()  # empty: onnxruntime's defaults
    nodes_to_exclude: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check(self.weight_type in ("int8", "uint8"), f"weight_type must be int8 or uint8, not {self.weight_type!r}")


@dataclass(frozen=True)
class StaticQuantConfig:
    per_channel: bool = True
    calibration_method: Literal["minmax", "entropy", "percentile"] = "minmax"
    calibration_rows: int = 128
    activation_type: IntType = "uint8"
    weight_type: IntType = "int8"
    reduce_range: bool = True
    op_types: tuple[str, ...] = ()
    nodes_to_exclude: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check(self.calibration_method in ("minmax", "entropy", "percentile"),
               f"calibration_method must be minmax, entropy or percentile, not {self.calibration_method!r}")
        _check(1 <= self.calibration_rows <= 10_000, "calibration_rows must be between 1 and 10000")
        _check(self.activation_type in ("int8", "uint8"), "activation_type must be int8 or uint8")
        _check(self.weight_type in ("int8", "uint8"), "weight_type must be int8 or uint8")


@dataclass(frozen=True)
class AccuracyGate:
    """The quantized model may lose at most `max_drop` of the primary metric against fp32
    (0.005 is half a point of accuracy), must reach at least `min_metric`, and must give fp32's top-1 on at
    least `min_agreement` of the held-out rows: a model that flips more predictions is a different model,
    even when as many flip right as wrong (its accuracy can then look as good as fp32's, or better)."""

    max_drop: float = 0.005
    min_metric: float = 0.0
    min_agreement: float = 0.98

    def __post_init__(self) -> None:
        _check(0.0 <= self.max_drop <= 1.0, f"max_drop must be between 0 and 1, not {self.max_drop}")
        _check(0.0 <= self.min_metric <= 1.0, f"min_metric must be between 0 and 1, not {self.min_metric}")
        _check(0.0 <= self.min_agreement <= 1.0, f"min_agreement must be between 0 and 1, not {self.min_agreement}")

    def check_agreement(self, flips: int, rows: int) -> tuple[bool, str]:
        """Top-1 agreement with fp32 on the held-out rows, against `min_agreement`; one flipped row is always
        allowed, so that a small evaluation set (under 50 rows at 98 %) does not refuse every INT8 model."""
        agreement = 1.0 - flips / rows if rows else 1.0
        allowed = max(1, int((1.0 - self.min_agreement) * rows + 1e-9)) if self.min_agreement < 1.0 else 0
        if flips > allowed:
            return False, (f"top-1 agreement with fp32 {agreement * 100:.2f} % ({flips} of {rows} rows flipped) is "
                           f"below the allowed {self.min_agreement * 100:.2f} % ({allowed} rows)")
        return True, f"agreement with fp32 {agreement * 100:.2f} % (at least {self.min_agreement * 100:.2f} %)"

    def check(self, fp32_metric: float, metric: float) -> tuple[bool, str]:
        drop = fp32_metric - metric
        if metric < self.min_metric:
            return False, f"metric {metric:.4f} is below the floor {self.min_metric:.4f}"
        if drop > self.max_drop + 1e-9:
            return False, f"metric fell {drop * 100:.2f} points (allowed {self.max_drop * 100:.2f})"
        return True, f"metric {metric:.4f}, drop {drop * 100:.2f} points (allowed {self.max_drop * 100:.2f})"

    def check_live(self, live_metric: float, metric: float, live_name: str, rows: str = "") -> tuple[bool, str]:
        """The same `max_drop`, against the live model on the same rows (`rows` names them in the reason):
        a retrain may not make serving worse."""
        drop = live_metric - metric
        where = f" on {rows}" if rows else ""
        if drop > self.max_drop + 1e-9:
            return False, (f"metric {metric:.4f} is {drop * 100:.2f} points below the live model {live_name} "
                           f"({live_metric:.4f}; allowed {self.max_drop * 100:.2f}){where}")
        return True, f"live {live_name} {live_metric:.4f}, {-drop * 100:+.2f} points{where}"


@dataclass(frozen=True)
class QuantizeConfig:
    mode: Mode = "auto"
    dynamic: DynamicQuantConfig = field(default_factory=DynamicQuantConfig)
    static: StaticQuantConfig = field(default_factory=StaticQuantConfig)
    gate: AccuracyGate = field(default_factory=AccuracyGate)
    latency_runs: int = 30  # interleaved timing rounds (every candidate once per round)
    latency_block: int = 3  # calls per candidate per round; a round's sample is their mean
    confidence: float = 0.95  # of each candidate's latency interval (bootstrap of the median)
    fp32_fallback: bool = True
    isa_robust: bool = True  # refuse an INT8 graph whose U8S8 products could saturate on x86 without VNNI

    def __post_init__(self) -> None:
        _check(self.mode in MODES, f"mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        _check(3 <= self.latency_runs <= 10_000, "latency_runs must be between 3 and 10000")
        _check(1 <= self.latency_block <= 1_000, "latency_block must be between 1 and 1000")
        _check(0.5 <= self.confidence < 1.0, f"confidence must be in [0.5, 1), not {self.confidence}")

    def with_gate(self, *, max_drop: float | None = None, min_metric: float | None = None,
                  min_agreement: float | None = None) -> QuantizeConfig:
        gate = AccuracyGate(max_drop=self.gate.max_drop if max_drop is None else max_drop,
                            min_metric=self.gate.min_metric if min_metric is None else min_metric,
                            min_agreement=self.gate.min_agreement if min_agreement is None else min_agreement)
        return replace(self, gate=gate)


PRESETS: dict[str, QuantizeConfig] = {
    "auto": QuantizeConfig(),
    "transformer": QuantizeConfig(mode="dynamic", gate=AccuracyGate(max_drop=0.01)),
    "cnn": QuantizeConfig(mode="static"),
    "strict": QuantizeConfig(mode="auto", gate=AccuracyGate(max_drop=0.0), fp32_fallback=False),
    # full 8-bit weights: only for a fleet known to have VNNI (or arm64); the gate still compares kernel paths
    "vnni-only": QuantizeConfig(dynamic=DynamicQuantConfig(reduce_range=False),
                                static=StaticQuantConfig(reduce_range=False), isa_robust=False),
}


def scheme(cfg: DynamicQuantConfig | StaticQuantConfig) -> str:
    """How a candidate's integers meet: activations x weights, and 7-bit weights when reduce_range."""
    act = "u8" if isinstance(cfg, DynamicQuantConfig) else ("u8" if cfg.activation_type == "uint8" else "s8")
    weight = "s8" if cfg.weight_type == "int8" else "u8"
    return f"{act}{weight}" + ("-7bit" if cfg.reduce_range and weight == "s8" else "")


def preset(name: str) -> QuantizeConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise QuantConfigError(f"unknown quantization preset {name!r}; presets: {', '.join(PRESETS)}") from None


def from_mode(mode: str, *, max_drop: float | None = None, min_metric: float | None = None,
              min_agreement: float | None = None) -> QuantizeConfig:
    """The config the CLI and the quantize function build from their flags or environment."""
    _check(mode in MODES, f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    return QuantizeConfig(mode=mode).with_gate(  # type: ignore[arg-type]
        max_drop=max_drop, min_metric=min_metric, min_agreement=min_agreement)

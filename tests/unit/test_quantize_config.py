"""Quantization configs validate on construction; presets exist; the gate decides correctly."""

from __future__ import annotations

import pytest

from lambdaforge.quantize import (
    PRESETS,
    AccuracyGate,
    QuantConfigError,
    QuantizeConfig,
    StaticQuantConfig,
    from_mode,
    preset,
)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: QuantizeConfig(mode="fast"), "mode must be one of"),  # type: ignore[arg-type]
        (lambda: AccuracyGate(max_drop=-0.1), "max_drop must be between 0 and 1"),
        (lambda: AccuracyGate(min_metric=1.5), "min_metric must be between 0 and 1"),
        (lambda: StaticQuantConfig(calibration_rows=0), "calibration_rows"),
        (lambda: StaticQuantConfig(calibration_method="magic"), "calibration_method"),  # type: ignore[arg-type]
        (lambda: preset("nope"), "unknown quantization preset"),
        (lambda: from_mode("int4"), "mode must be one of"),
    ],
)
def test_invalid_configs_are_rejected(build: object, message: str) -> None:
    with pytest.raises(QuantConfigError, match=message):
        build()  # type: ignore[operator]


def test_gate_bounds() -> None:
    gate = AccuracyGate(max_drop=0.005, min_metric=0.9)
    assert gate.check(0.99, 0.986)[0] is True  # 0.4 points
    passed, reason = gate.check(0.99, 0.98)
    assert passed is False and "1.00 points" in reason
    passed, reason = gate.check(0.91, 0.89)
    assert passed is False and "below the floor" in reason


def test_presets_and_overrides() -> None:
    assert {"auto", "transformer", "cnn", "strict"} <= set(PRESETS)
    cfg = from_mode("static", max_drop=0.01, min_metric=0.5)
    assert (cfg.mode, cfg.gate.max_drop, cfg.gate.min_metric) == ("static", 0.01, 0.5)
    assert preset("cnn").with_gate(max_drop=0.02).gate.max_drop == 0.02

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
        (lambda: AccuracyGate(min_agreement=1.01), "min_agreement must be between 0 and 1"),
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


def test_the_gate_refuses_a_model_that_flips_too_many_predictions() -> None:
    """Agreement is its own bound: 10 flips in 480 rows can leave accuracy unchanged, or raise it."""
    gate = AccuracyGate()
    assert gate.min_agreement == 0.98
    passed, reason = gate.check_agreement(10, 480)
    assert passed is False and "97.92 %" in reason and "98.00 %" in reason and "(9 rows)" in reason
    assert gate.check_agreement(9, 480)[0] is True  # 98.125 %
    assert AccuracyGate(min_agreement=0.95).check_agreement(10, 480)[0] is True
    # one flip is always allowed (a 20-row set could otherwise refuse every INT8 model), two are not here
    assert gate.check_agreement(1, 20)[0] is True and gate.check_agreement(2, 20)[0] is False
    assert AccuracyGate(min_agreement=1.0).check_agreement(1, 480)[0] is False  # exact means exact


def test_presets_and_overrides() -> None:
    assert {"auto", "transformer", "cnn", "strict"} <= set(PRESETS)
    cfg = from_mode("static", max_drop=0.01, min_metric=0.5)
    assert (cfg.mode, cfg.gate.max_drop, cfg.gate.min_metric) == ("static", 0.01, 0.5)
    assert preset("cnn").with_gate(max_drop=0.02).gate.max_drop == 0.02
    assert from_mode("auto", min_agreement=0.9).gate.min_agreement == 0.9
    assert preset("transformer").with_gate(min_agreement=0.97).gate.max_drop == 0.01  # the rest kept

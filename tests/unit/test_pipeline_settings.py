"""Pipeline settings come from the variables the template sets, and a missing one is named as such."""

from __future__ import annotations

import pytest

from lambdaforge.pipeline.errors import PipelineError
from lambdaforge.pipeline.settings import PipelineSettings


def test_settings_read_the_template_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {"INFERENCE_FUNCTION_NAME": "lf-inference", "DATA_PREFIX": "incoming", "CANARY_PERCENT": "25",
                        "MAX_UPLOAD_BYTES": "100", "MAX_ACCURACY_DROP": "0.01", "CANARY_ALARMS": "a, b,,",
                        "CANARY_SECONDS": "60", "METRICS_SETTLE_SECONDS": "0",
                        "MIN_AGREEMENT": "0.95"}.items():
        monkeypatch.setenv(name, value)
    settings = PipelineSettings.from_env()
    assert settings.inference_function == "lf-inference" and settings.data_prefix == "incoming/"
    assert settings.canary_weight == 0.25 and settings.canary_alarms == ("a", "b")
    assert settings.max_upload_bytes == 100 and settings.max_accuracy_drop == 0.01
    assert settings.min_agreement == 0.95 and PipelineSettings().min_agreement == 0.98
    assert (settings.canary_seconds, settings.metrics_settle_seconds) == (60, 0)
    assert (PipelineSettings().canary_seconds, PipelineSettings().metrics_settle_seconds) == (300, 180)
    assert settings.inference_alias == "live" and settings.quant_mode == "auto"  # the defaults


@pytest.mark.parametrize(("field", "variable"), [("inference_function", "INFERENCE_FUNCTION_NAME"),
                                                 ("registry_table", "REGISTRY_TABLE"),
                                                 ("state_machine_arn", "STATE_MACHINE_ARN")])
def test_a_missing_setting_names_its_environment_variable(monkeypatch: pytest.MonkeyPatch, field: str,
                                                          variable: str) -> None:
    monkeypatch.delenv(variable, raising=False)
    with pytest.raises(PipelineError, match=f"environment variable {variable} is not set"):
        PipelineSettings.from_env().need(field)

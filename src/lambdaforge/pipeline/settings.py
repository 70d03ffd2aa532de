"""Pipeline settings: explicit value, then the environment the template gives each function, then default."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from lambdaforge import envvars
from lambdaforge.pipeline.errors import PipelineError


def _required(value: str | None, name: str) -> str:
    if not value:
        raise PipelineError(f"environment variable {name} is not set (the template sets it)")
    return value


@dataclass(frozen=True)
class PipelineSettings:
    data_bucket: str = ""
    artifacts_bucket: str = ""
    registry_table: str = ""
    idempotency_table: str = ""
    state_machine_arn: str = ""
    failure_topic_arn: str = ""
    data_prefix: str = "data/"
    max_upload_bytes: int = 1 << 30
    max_artifact_bytes: int = 2 << 30
    quant_mode: str = "auto"
    max_accuracy_drop: float = 0.005
    min_accuracy: float = 0.0
    inference_function: str = ""
    inference_alias: str = "live"
    canary_weight: float = 0.1
    canary_alarms: tuple[str, ...] = ()
    hyperparameters: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_env(cls, **explicit: Any) -> PipelineSettings:
        s = envvars.setting
        hps_raw = s(explicit.get("hyperparameters_json"), envvars.TRAINING_HYPERPARAMETERS, "{}")
        try:
            hps = json.loads(hps_raw) if isinstance(hps_raw, str) else dict(hps_raw)
        except json.JSONDecodeError as exc:
            raise PipelineError(f"{envvars.TRAINING_HYPERPARAMETERS} is not JSON: {exc}") from exc
        if not isinstance(hps, dict):
            raise PipelineError(f"{envvars.TRAINING_HYPERPARAMETERS} must be a JSON object")
        alarms = s(explicit.get("canary_alarms"), envvars.CANARY_ALARMS, "")
        percent = s(explicit.get("canary_percent"), envvars.CANARY_PERCENT, 10.0, float)
        if not 0.0 <= percent < 100.0:
            raise PipelineError(f"{envvars.CANARY_PERCENT} must be in [0, 100), got {percent}")
        weight = percent / 100.0
        prefix = s(explicit.get("data_prefix"), envvars.DATA_PREFIX, "data/")
        return cls(
            data_bucket=s(explicit.get("data_bucket"), envvars.DATA_BUCKET, ""),
            artifacts_bucket=s(explicit.get("artifacts_bucket"), envvars.ARTIFACTS_BUCKET, ""),
            registry_table=s(explicit.get("registry_table"), envvars.REGISTRY_TABLE, ""),
            idempotency_table=s(explicit.get("idempotency_table"), envvars.IDEMPOTENCY_TABLE, ""),
            state_machine_arn=s(explicit.get("state_machine_arn"), envvars.STATE_MACHINE_ARN, ""),
            failure_topic_arn=s(explicit.get("failure_topic_arn"), envvars.FAILURE_TOPIC_ARN, ""),
            data_prefix=prefix if prefix.endswith("/") else prefix + "/",
            max_upload_bytes=s(explicit.get("max_upload_bytes"), envvars.MAX_UPLOAD_BYTES, 1 << 30, int),
            max_artifact_bytes=s(explicit.get("max_artifact_bytes"), envvars.MAX_ARTIFACT_BYTES, 2 << 30, int),
            quant_mode=s(explicit.get("quant_mode"), envvars.QUANT_MODE, "auto"),
            max_accuracy_drop=s(explicit.get("max_accuracy_drop"), envvars.MAX_ACCURACY_DROP, 0.005, float),
            min_accuracy=s(explicit.get("min_accuracy"), envvars.MIN_ACCURACY, 0.0, float),
            inference_function=s(explicit.get("inference_function"), envvars.INFERENCE_FUNCTION, ""),
            inference_alias=s(explicit.get("inference_alias"), envvars.INFERENCE_ALIAS, "live"),
            canary_weight=weight,
            canary_alarms=tuple(a.strip() for a in alarms.split(",") if a.strip()),
            hyperparameters=hps,
        )

    def need(self, *names: str) -> None:
        for name in names:
            _required(getattr(self, name), name.upper())

"""Pipeline settings: explicit value, then the environment the template gives each function, then default."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lambdaforge import envvars
from lambdaforge.pipeline.errors import PipelineError

# Field -> the environment variable the template sets for it, and how its text is read. `need`
# names these variables, so a missing setting is reported by the name an operator can set.
_ENV: dict[str, tuple[str, Callable[[str], Any] | None]] = {
    "data_bucket": (envvars.DATA_BUCKET, None),
    "artifacts_bucket": (envvars.ARTIFACTS_BUCKET, None),
    "registry_table": (envvars.REGISTRY_TABLE, None),
    "idempotency_table": (envvars.IDEMPOTENCY_TABLE, None),
    "state_machine_arn": (envvars.STATE_MACHINE_ARN, None),
    "failure_topic_arn": (envvars.FAILURE_TOPIC_ARN, None),
    "data_prefix": (envvars.DATA_PREFIX, None),
    "max_upload_bytes": (envvars.MAX_UPLOAD_BYTES, int),
    "max_artifact_bytes": (envvars.MAX_ARTIFACT_BYTES, int),
    "ephemeral_storage_mb": (envvars.EPHEMERAL_STORAGE_MB, int),
    "quant_mode": (envvars.QUANT_MODE, None),
    "max_accuracy_drop": (envvars.MAX_ACCURACY_DROP, float),
    "min_accuracy": (envvars.MIN_ACCURACY, float),
    "min_agreement": (envvars.MIN_AGREEMENT, float),
    "allow_contract_change": (envvars.ALLOW_CONTRACT_CHANGE, envvars.flag),
    "inference_function": (envvars.INFERENCE_FUNCTION_NAME, None),
    "inference_alias": (envvars.INFERENCE_ALIAS, None),
    "promote_function": (envvars.PROMOTE_FUNCTION_NAME, None),
    "canary_seconds": (envvars.CANARY_SECONDS, int),
    "metrics_settle_seconds": (envvars.METRICS_SETTLE_SECONDS, int),
}


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
    ephemeral_storage_mb: int = 0  # 0: only what /tmp has free bounds a step
    quant_mode: str = "auto"
    max_accuracy_drop: float = 0.005
    min_accuracy: float = 0.5  # raises each recipe's own floor, never lowers it (quantize_step.recipe_floor)
    min_agreement: float = 0.98  # top-1 agreement of INT8 with fp32 on the held-out rows (the gate's)
    allow_contract_change: bool = False  # the gate refuses a candidate whose contract differs from live's
    inference_function: str = ""
    inference_alias: str = "live"
    promote_function: str = ""
    canary_weight: float = 0.1
    canary_alarms: tuple[str, ...] = ()
    # a canary is decided no sooner than canary_seconds + metrics_settle_seconds after it began (the
    # template's defaults): CloudWatch shows the window's last minutes only after that lag
    canary_seconds: int = 300
    metrics_settle_seconds: int = 180
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
        defaults = {f.name: f.default for f in dataclasses.fields(cls)}
        values = {name: s(explicit.get(name), var, defaults[name], cast) for name, (var, cast) in _ENV.items()}
        prefix = values["data_prefix"]
        values["data_prefix"] = prefix if prefix.endswith("/") else prefix + "/"
        return cls(**values, canary_weight=percent / 100.0,
                   canary_alarms=tuple(a.strip() for a in alarms.split(",") if a.strip()), hyperparameters=hps)

    def need(self, *names: str) -> None:
        """Raise unless these settings are set, naming their environment variables."""
        for name in names:
            if not getattr(self, name):
                raise PipelineError(f"environment variable {_ENV[name][0]} is not set (the template sets it)")

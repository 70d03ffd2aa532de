"""Every environment variable lambdaforge reads, in one place.

Resolution order everywhere: explicit argument, then environment variable, then default
(`setting()` below). The SageMaker names are SageMaker's contract, not ours.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

# --- SageMaker training contract (set by SageMaker; `lambdaforge train` and the local executor mimic it)
SM_MODEL_DIR = "SM_MODEL_DIR"
SM_CHANNEL_PREFIX = "SM_CHANNEL_"
SM_CHANNELS = "SM_CHANNELS"
SM_HPS = "SM_HPS"
SM_NUM_GPUS = "SM_NUM_GPUS"
SM_NUM_CPUS = "SM_NUM_CPUS"
SM_HOSTS = "SM_HOSTS"
SM_CURRENT_HOST = "SM_CURRENT_HOST"
SM_OUTPUT_DATA_DIR = "SM_OUTPUT_DATA_DIR"
SM_INPUT_CONFIG_DIR = "SM_INPUT_CONFIG_DIR"
SM_TRAINING_JOB_NAME = "TRAINING_JOB_NAME"  # set by SageMaker in every training container
# Where the /opt/ml tree lives (only changed by local runs and tests).
OPT_ML = "LAMBDAFORGE_OPT_ML"
CHECKPOINT_DIR = "LAMBDAFORGE_CHECKPOINT_DIR"

# --- torchrun
RANK = "RANK"
LOCAL_RANK = "LOCAL_RANK"
WORLD_SIZE = "WORLD_SIZE"
MASTER_ADDR = "MASTER_ADDR"
MASTER_PORT = "MASTER_PORT"

# --- inference runtime
MODEL_URI = "MODEL_URI"  # s3://bucket/prefix/ or a local directory; pins one model
MODEL_DIR = "MODEL_DIR"  # the model baked into the image
MODEL_VERSION = "MODEL_VERSION"
THREADS = "LAMBDAFORGE_THREADS"
CACHE_DIR = "LAMBDAFORGE_CACHE_DIR"
MAX_BODY_BYTES = "MAX_BODY_BYTES"
SKIP_PRELOAD = "LAMBDAFORGE_SKIP_PRELOAD"  # "1": load the model on the first request, not at init
LAMBDA_MEMORY_MB = "AWS_LAMBDA_FUNCTION_MEMORY_SIZE"
LAMBDA_FUNCTION_VERSION = "AWS_LAMBDA_FUNCTION_VERSION"  # set by Lambda: "$LATEST" or the published number

# --- pipeline (trigger, quantize, promote)
DATA_BUCKET = "DATA_BUCKET"
ARTIFACTS_BUCKET = "ARTIFACTS_BUCKET"
REGISTRY_TABLE = "REGISTRY_TABLE"
IDEMPOTENCY_TABLE = "IDEMPOTENCY_TABLE"
STATE_MACHINE_ARN = "STATE_MACHINE_ARN"
FAILURE_TOPIC_ARN = "FAILURE_TOPIC_ARN"
DATA_PREFIX = "DATA_PREFIX"
MAX_UPLOAD_BYTES = "MAX_UPLOAD_BYTES"
RECIPE = "RECIPE"
INFERENCE_FUNCTION_NAME = "INFERENCE_FUNCTION_NAME"
PROMOTE_FUNCTION_NAME = "PROMOTE_FUNCTION_NAME"
INFERENCE_ALIAS = "INFERENCE_ALIAS"
CANARY_PERCENT = "CANARY_PERCENT"
CANARY_ALARMS = "CANARY_ALARMS"
CANARY_SECONDS = "CANARY_SECONDS"  # how long the workflow waits on a canary (the template's CanarySeconds)
# how long it then waits for the window's metrics to reach CloudWatch (EMF extraction and alarm evaluation lag)
METRICS_SETTLE_SECONDS = "METRICS_SETTLE_SECONDS"
QUANT_MODE = "QUANT_MODE"
MAX_ACCURACY_DROP = "MAX_ACCURACY_DROP"
MIN_ACCURACY = "MIN_ACCURACY"
MIN_AGREEMENT = "MIN_AGREEMENT"  # least top-1 agreement of the shipped INT8 model with fp32 (the gate's)
# "true": a candidate whose contract differs from the live model's (labels, inputs, tokenizer, metric) may be
# promoted, on the floor alone; otherwise the gate refuses it. Set it for one deliberate run, then unset it.
ALLOW_CONTRACT_CHANGE = "ALLOW_CONTRACT_CHANGE"
MAX_ARTIFACT_BYTES = "MAX_ARTIFACT_BYTES"
# The function's EphemeralStorage in MB (the template sets it beside the property): /tmp is no bigger.
EPHEMERAL_STORAGE_MB = "EPHEMERAL_STORAGE_MB"
TRAINING_HYPERPARAMETERS = "TRAINING_HYPERPARAMETERS"

# --- AWS and the local cloud
AWS_REGION = "AWS_REGION"
AWS_DEFAULT_REGION = "AWS_DEFAULT_REGION"
AWS_ENDPOINT_URL = "AWS_ENDPOINT_URL"
MOTO_PORT = "MOTO_PORT"
HOME = "LAMBDAFORGE_HOME"
FUNCTIONS_DIR = "LAMBDAFORGE_FUNCTIONS_DIR"
PROJECT_ROOT = "LAMBDAFORGE_PROJECT_ROOT"
# A Python with the sagemaker-training toolkit (`make train-venv`): local jobs run through it, as in AWS.
TRAINING_CONTAINER = "LAMBDAFORGE_TRAINING_CONTAINER"

# --- CLI against the real cloud
STACK_NAME = "LAMBDAFORGE_STACK"
API_URL = "LAMBDAFORGE_API_URL"
API_TOKEN = "LAMBDAFORGE_API_TOKEN"  # noqa: S105 - the variable's name, not a token
SAGEMAKER_ROLE = "LAMBDAFORGE_SAGEMAKER_ROLE"


def setting(explicit: T | None, name: str, default: T, cast: Callable[[str], T] | None = None) -> T:
    """Explicit argument, then environment variable `name`, then `default`."""
    if explicit is not None:
        return explicit
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    if cast is None:
        return raw  # type: ignore[return-value]
    try:
        return cast(raw)
    except ValueError as exc:
        from lambdaforge.errors import ConfigurationError

        raise ConfigurationError(f"environment variable {name}={raw!r} is not valid: {exc}") from exc


def flag(raw: str) -> bool:
    """A boolean environment variable: true/false, 1/0, yes/no (any case); anything else is an error."""
    value = raw.strip().lower()
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no"):
        return False
    raise ValueError("expected true or false")


def region(explicit: str | None = None) -> str | None:
    """The AWS region the way boto3 would find it, without importing boto3."""
    return explicit or os.environ.get(AWS_REGION) or os.environ.get(AWS_DEFAULT_REGION)

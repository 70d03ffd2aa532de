"""The registry table's layout, written once: key formats, attribute names and status values.

One DynamoDB table (template.yaml: `pk` HASH, `sk` RANGE, both strings) holds, per recipe
(pk `recipe#<name>`):
- sk `state`: the catalogue's pointers (live, previous, candidate, history, next_version) and the
  run coordination (the lock `running`, the one coalesced `pending` dataset, `last_failure`);
- sk `version#<n>`, zero-padded so versions sort: a model version;
- sk `run#<execution>`: one retraining run in the run log.

The catalogue and the run coordination build their keys and expressions from these names, and the
workflow's DynamoDB tasks (infra/statemachine/retrain.asl.json) write the same layout:
tests/infra/test_registry_keys.py fails when the ASL uses a key or attribute this module lacks.
"""

from __future__ import annotations

from typing import Literal, get_args

# --- keys
PK = "pk"
SK = "sk"
PK_FORMAT = "recipe#{}"
STATE_SK = "state"
VERSION_SK_PREFIX = "version#"
VERSION_SK_FORMAT = VERSION_SK_PREFIX + "{:08d}"
RUN_SK_PREFIX = "run#"
RUN_SK_FORMAT = RUN_SK_PREFIX + "{}"

# --- the state item
LIVE = "live"
PREVIOUS = "previous"
CANDIDATE = "candidate"
HISTORY = "history"
NEXT_VERSION = "next_version"
RUNNING = "running"
RUNNING_ARN = "running_arn"
RUNNING_SINCE = "running_since"
PENDING = "pending"
NEWEST_STARTED = "newest_started"  # upload time of the newest dataset a run has started on
LAST_FAILURE = "last_failure"
UPDATED_AT = "updated_at"
STATE_ATTRIBUTES = frozenset({PK, SK, LIVE, PREVIOUS, CANDIDATE, HISTORY, NEXT_VERSION, RUNNING, RUNNING_ARN,
                              RUNNING_SINCE, PENDING, NEWEST_STARTED, LAST_FAILURE, UPDATED_AT})
FAILURE_FIELDS = frozenset({"execution", "error", "cause", "at"})  # the map in `last_failure`

# --- a version item (the fields of catalog.VersionRecord, plus the key)
STATUS = "status"
LAMBDA_VERSION = "lambda_version"
CANARY_STARTED_AT = "canary_started_at"  # when traffic first moved to it: the start of its canary's window
CANARY_EXECUTION = "canary_execution"  # the run that canary was; another run's canary starts a new window
VERSION_ATTRIBUTES = frozenset({PK, SK, "recipe", "version", "model_uri", STATUS, "report_uri", "metrics",
                                "quantization", "training_job", "dataset_version", "execution", LAMBDA_VERSION,
                                "created_at", CANARY_STARTED_AT, CANARY_EXECUTION})
VersionStatus = Literal["candidate", "live", "previous", "rolled-back"]
VERSION_STATUSES: tuple[str, ...] = get_args(VersionStatus)

# --- a run item
STARTED_AT = "started_at"
ENDED_AT = "ended_at"
ERROR = "error"
CAUSE = "cause"
DATASET = "dataset"
DATASET_VERSION = "dataset_version"
BEHIND = "behind"
UPLOAD_KEY = "key"
RUN_ATTRIBUTES = frozenset({PK, SK, STATUS, UPDATED_AT, STARTED_AT, ENDED_AT, ERROR, CAUSE, DATASET,
                            DATASET_VERSION, BEHIND, UPLOAD_KEY})
RunStatus = Literal["RUNNING", "QUEUED", "SUPERSEDED", "SUCCEEDED", "FAILED", "REJECTED"]
RUN_STATUSES: tuple[str, ...] = get_args(RunStatus)


def recipe_pk(recipe: str) -> str:
    return PK_FORMAT.format(recipe)


def state_key(recipe: str) -> dict[str, str]:
    return {PK: recipe_pk(recipe), SK: STATE_SK}


def version_key(recipe: str, version: int) -> dict[str, str]:
    return {PK: recipe_pk(recipe), SK: VERSION_SK_FORMAT.format(version)}


def run_key(recipe: str, execution: str) -> dict[str, str]:
    return {PK: recipe_pk(recipe), SK: RUN_SK_FORMAT.format(execution)}
